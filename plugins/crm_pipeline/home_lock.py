"""One run per state folder at a time: ``crm run`` and ``crm backfill`` hold an exclusive
lock on ``<home>/run.lock`` for the length of a run; a second run on the same home is
refused with one line that names the run in progress (date, since when, process).

The lock is an OS file lock (``fcntl.flock``): the kernel releases it when the process
ends, however it ends, so a killed or failed run never leaves the home unable to run.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Iterator

from crm_pipeline.liveness import now

LOCK_NAME = "run.lock"


class HomeBusy(RuntimeError):
    """Another process is running the pipeline on this home."""


def _holder(path: Path) -> str:
    try:
        held = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        held = {}
    if not held:
        return "a run is in progress"
    return (f"a run for {held.get('as_of')} is in progress since {held.get('started_at', '?')[:19].replace('T', ' ')} "
            f"UTC (PID {held.get('pid')} on {held.get('host')})")


@contextmanager
def one_run_per_home(home: Path, as_of: date) -> Iterator[None]:
    """Hold the home's run lock while the body runs; ``HomeBusy`` if another run holds it."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / LOCK_NAME
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HomeBusy(f"{_holder(path)} in {home}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"as_of": as_of.isoformat(), "started_at": now().isoformat(), "pid": os.getpid(),
                                 "host": socket.gethostname()}))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
    finally:
        handle.close()  # closing the file releases the lock
