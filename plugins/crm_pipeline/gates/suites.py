"""The suite files in ``expectations/``: where each one is, reading it as JSON, and a raw
entity's suite checked against the source contract before gate 1 uses it."""

from __future__ import annotations

import json
from pathlib import Path

from crm_pipeline.contract import Entity
from crm_pipeline.gates.results import GateError
from crm_pipeline.settings import EXPECTATIONS_DIR


def suite_path(name: str) -> Path:
    return EXPECTATIONS_DIR / f"{name}.json"


def load_suite_file(name: str) -> dict:
    path = suite_path(name)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GateError(f"suite file {path} is missing") from None
    except json.JSONDecodeError as exc:
        raise GateError(f"suite file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None


def raw_suite(entity: Entity) -> dict:
    """``raw_<entity>.json``, refused when its ``column_types`` differ from the contract."""
    spec = load_suite_file(f"raw_{entity.name}")
    types = spec.get("column_types") or {}
    if types != dict(entity.columns):
        raise GateError(
            f"suite file {suite_path('raw_' + entity.name)} lists column_types {types} but the source "
            f"contract says {dict(entity.columns)}: update the file with the contract"
        )
    return spec
