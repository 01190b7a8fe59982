"""The run clock: now in UTC, whether a day has ended (a run covers a whole day), and
whether a run recorded as running still has a live process (the rule that marks a run
*abandoned*: its process died, or it has not been seen for long), shared by the run
record, the DAG's first task and the command line."""

from __future__ import annotations

import os
import socket
from datetime import date, datetime, timedelta, timezone


def now() -> datetime:
    """Now in UTC, without a time zone (how the run record stores times)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def day_not_ended(day: date) -> str | None:
    """Why a run for ``day`` must wait (the day has not ended in UTC), or None."""
    moment = datetime.now(timezone.utc)
    if day < moment.date():
        return None
    return (f"{day} has not ended yet (it is {moment:%Y-%m-%d %H:%M} UTC): a run covers everything known by the "
            "end of its day")


#: a run on another machine (or whose process id is unknown) that has not been seen for
#: this long is taken as abandoned: no stage runs this long without the run being seen
ABANDONED_AFTER = timedelta(hours=12)
#: a run whose process on this machine is gone is abandoned once unseen for this long
#: (under a scheduler each task is its own process: the next one may not have started yet)
PROCESS_GONE_GRACE = timedelta(minutes=2)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def is_abandoned(status: str | None, pid: int | None, host: str | None, last_seen_at: datetime | None,
                 at: datetime | None = None) -> bool:
    """Whether a run recorded as running has lost its process: on this machine, its
    process is gone and it has not been seen for ``PROCESS_GONE_GRACE``; elsewhere (or
    with no process recorded) it has not been seen for ``ABANDONED_AFTER``."""
    if status != "running" or last_seen_at is None:
        return False
    unseen = (at or now()) - last_seen_at
    if pid is not None and host == socket.gethostname():
        return unseen > PROCESS_GONE_GRACE and not _process_alive(int(pid))
    return unseen > ABANDONED_AFTER


def abandoned_message(pid: int | None, host: str | None, last_seen_at: datetime) -> str:
    return (f"abandoned: its process (PID {pid} on {host}) ended without finishing the run; "
            f"last seen {last_seen_at:%Y-%m-%d %H:%M:%S} UTC")


