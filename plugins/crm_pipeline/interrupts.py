"""An interrupt asked of a night that runs in a long-lived process (the warm server).

A Ctrl-C raises KeyboardInterrupt wherever the night's main thread is; a library that
catches it there (inside an Airflow task's machinery, say) would let the night run on. So
the warm server also records the request here: the next stage to start stops the night
(``runs.stage``), and the server reports the night as interrupted whatever the command
returned. docs/design.md, "Warm nights".
"""

from __future__ import annotations

import threading

_requested = threading.Event()


def request() -> None:
    _requested.set()


def clear() -> None:
    _requested.clear()


def requested() -> bool:
    return _requested.is_set()


def check() -> None:
    """Stop here when an interrupt was asked: as Ctrl-C would."""
    if _requested.is_set():
        raise KeyboardInterrupt
