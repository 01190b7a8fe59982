"""In-process progress events: stages report start and end, the CLI shows them live.

Tasks of a DAG run inside ``crm run`` execute in the CLI's own process, so a listener set
here sees every stage. Under a scheduler there is no listener and emitting costs nothing.
"""

from __future__ import annotations

from typing import Callable

#: called with (stage, status, seconds, detail): status is running, ok, failed or retrying
Listener = Callable[[str, str, float | None, str | None], None]
_listener: Listener | None = None


def set_listener(listener: Listener | None) -> None:
    global _listener
    _listener = listener


def emit(stage: str, status: str, seconds: float | None = None, detail: str | None = None) -> None:
    if _listener is not None:
        try:
            _listener(stage, status, seconds, detail)
        except Exception:  # noqa: BLE001 - a display problem never fails a run
            pass
