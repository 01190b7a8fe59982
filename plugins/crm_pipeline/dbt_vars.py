"""The business numbers of ``dbt_project/dbt_project.yml``'s ``vars:`` for Python readers.

A rule such as "the large customer tiers" lives once, as a dbt var (docs/rules.md); the
report and the tests read it here instead of copying it."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import yaml

from crm_pipeline.settings import DBT_PROJECT_DIR


@lru_cache(maxsize=1)
def _project_vars() -> dict[str, Any]:
    with open(DBT_PROJECT_DIR / "dbt_project.yml", encoding="utf-8") as f:
        return dict((yaml.safe_load(f) or {}).get("vars") or {})


def dbt_var(name: str) -> Any:
    """The value of the dbt var ``name``; a KeyError names a var the project does not set."""
    values = _project_vars()
    if name not in values:
        raise KeyError(f"dbt_project.yml sets no var {name!r}")
    return values[name]
