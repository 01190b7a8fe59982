"""How an error is shown to a person: its first line.

Run records, stage summaries and the command line show one line per error; the full
trace stays in the log (and on screen with ``--debug``).
"""

from __future__ import annotations


def first_line(exc: BaseException, limit: int = 1500) -> str:
    """The first line of an error's message (its type's name when it has none), at most
    ``limit`` characters."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:limit]
