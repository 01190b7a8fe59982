"""An exception in one line, for failure sentences, run records and command-line errors,
and which errors are storage problems (a full disk, a damaged file) that no retry mends.

It imports nothing from the package, so any module of it can use it."""

from __future__ import annotations

import errno

#: words of the messages of SQLite, DuckDB, PostgreSQL and the OS for a full disk
_DISK_FULL = ("no space left on device", "database or disk is full", "disk is full", "could not extend file",
              "diskfull")
#: ... and for a file that is not what it should be
_DAMAGED = ("not a valid duckdb database", "database disk image is malformed", "file is not a database",
            "corrupt", "checksum mismatch", "invalid block")


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first non-blank line of ``exc``'s message, its runs of whitespace made one space
    (the exception's type name when the message is blank); longer than ``limit``
    characters, it is cut and ends with "…"."""
    lines = (" ".join(line.split()) for line in str(exc).splitlines())
    text = next((line for line in lines if line), "") or type(exc).__name__
    if limit is not None and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def storage_problem(exc: BaseException) -> str | None:
    """"disk_full" or "damaged" when ``exc`` (or an error it came from) says so, else None."""
    for error in _chain(exc):
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return "disk_full"
        text = f"{type(error).__name__}: {error}".lower()
        if any(words in text for words in _DISK_FULL):
            return "disk_full"
        if any(words in text for words in _DAMAGED):
            return "damaged"
    return None
