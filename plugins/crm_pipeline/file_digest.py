"""One md5 over a set of project files: what the seed state, the dbt docs and the macro
version each compare to know whether the project they were made from has changed.

Each file enters the digest as its path relative to ``root`` and its bytes, in sorted
order, after an optional ``salt`` (for example the dbt target), so a renamed, moved,
edited, added or removed file gives another digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def files_md5(root: Path, paths: Iterable[Path], salt: str = "") -> str:
    """md5 of ``salt`` and every regular file among ``paths`` (path under ``root`` and bytes)."""
    root = Path(root)
    digest = hashlib.md5(f"{salt}\0".encode() if salt else b"")
    for path in sorted(Path(p) for p in paths):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
