"""An exception in one line, for failure sentences, run records and command-line errors.

It imports nothing from the package, so any module of it can use it."""

from __future__ import annotations


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first non-blank line of ``exc``'s message, its runs of whitespace made one space
    (the exception's type name when the message is blank); longer than ``limit``
    characters, it is cut and ends with "…"."""
    lines = (" ".join(line.split()) for line in str(exc).splitlines())
    text = next((line for line in lines if line), "") or type(exc).__name__
    if limit is not None and len(text) > limit:
        return text[: limit - 1] + "…"
    return text
