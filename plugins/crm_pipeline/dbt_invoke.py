"""Running dbt in this process: the environment its profile reads, set for one invocation,
and the summary of what it reported (counts per status, one line per failed node).

Light on purpose (no dbt, no cosmos imported here): a module that only starts a dbt
invocation stays fast to load.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any, Iterator


@contextlib.contextmanager
def dbt_environment(env: dict[str, str]) -> Iterator[None]:
    """The variables profiles.yml reads, set for a dbt invocation in this process and put
    back afterwards."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def summarise_results(result: Any) -> tuple[dict[str, int], list[str]]:
    """Counts per status and one line per failed node, from a dbtRunnerResult."""
    counts: dict[str, int] = {}
    failures: list[str] = []
    run = getattr(result, "result", None)
    for node_result in getattr(run, "results", None) or []:
        status = str(getattr(node_result, "status", "unknown")).lower().split(".")[-1]
        counts[status] = counts.get(status, 0) + 1
        if status in ("error", "fail", "runtime error"):
            node = node_result.node
            where = f"{node.resource_type} {getattr(node, 'schema', '')}.{node.name}".replace(" .", " ")
            failures.append(f"{where}: {_first_cause(node_result.message) or status}")
    return counts, failures


def _first_cause(message: str | None) -> str:
    """The line of a dbt node's message that says what went wrong: dbt opens a model's
    error with "Runtime Error in model X (path)", and the database's words follow."""
    lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
    if len(lines) > 1 and re.match(r"^\w+ Error in \w+ ", lines[0]):
        return lines[1]
    return lines[0] if lines else ""
