"""What gate 1's row rules say: suite bounds resolved against the run date, the kind of
rule each expectation type is, the reason sentence for a broken rule, and a quarantined
row's key and original record."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from crm_pipeline.contract import Entity
from crm_pipeline.gates.coercion import SURROGATE_RE, is_null, jsonable
from crm_pipeline.gates.outliers import outlier_reason
from crm_pipeline.gates.results import GateError

_AS_OF_RE = re.compile(r"^\$as_of([+-]\d+)d$")


def resolve_bound(value: Any, logical: str | None, as_of: date) -> Any:
    """Suite-file bounds: numbers, ISO dates, or ``$as_of+Nd`` (a day relative to as_of).

    For timestamp columns a day bound means the whole day (its last instant)."""
    if isinstance(value, str) and logical in ("date", "timestamp"):
        relative = _AS_OF_RE.match(value.strip())
        if relative:
            day = as_of + timedelta(days=int(relative.group(1)))
        else:
            try:
                day = date.fromisoformat(value.strip())
            except ValueError:
                raise GateError(f"bound {value!r} is neither an ISO date nor $as_of+Nd") from None
        start = pd.Timestamp(day)
        return start if logical == "date" else start + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    return value


def _short(v: Any, limit: int = 60) -> str:
    if is_null(v) and not (isinstance(v, str) and v != ""):
        return "null"
    text = repr(v) if isinstance(v, str) else str(v)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.encode("unicode_escape").decode("ascii") if any(ord(c) < 32 for c in text) else text


def record_json(row: dict) -> str:
    """A quarantined row's ``_record``: its original values as JSON."""
    return json.dumps({k: jsonable(v) for k, v in row.items()}, ensure_ascii=False)


def key_text(v: Any) -> str | None:
    """A quarantined row's ``_key``: the entity key as text."""
    if is_null(v):
        return None
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return re.sub(SURROGATE_RE, "\ufffd", str(v))


def _bound_text(bound: Any) -> str:
    if bound is None:
        return "-"
    if isinstance(bound, pd.Timestamp):
        return bound.date().isoformat()
    return f"{bound:,.0f}" if isinstance(bound, (int, float)) else str(bound)


def reason(rule: str, kind: str, column: str | None, orig: dict, params: dict, entity: Entity) -> str:
    """Why the row ``orig`` (its original values) breaks ``rule``, naming the value."""
    value = orig.get(column) if column else None
    if kind == "parse":
        return f"{column} value {_short(value)} is not a valid {params.get('logical_type')}"
    if kind == "not_null":
        return f"{column} is missing"
    if kind == "in_set":
        allowed = ", ".join(str(x) for x in params.get("value_set", []))
        return f"{column} value {_short(value)} is not one of {allowed}"
    if kind == "range":
        low, high = _bound_text(params.get("min_value")), _bound_text(params.get("max_value"))
        return f"{column} value {_short(value)} is outside the allowed range [{low}, {high}]"
    if kind == "length":
        length = len(str(value)) if value is not None else 0
        return (f"{column} is {length:,} characters long (max {params.get('max_value')}), "
                f"starting {_short(value, 40)}")
    if kind == "outlier":
        return outlier_reason(column, _short(value), params)
    if kind == "fk":
        return f"{column} {_short(value)} is not a known customer"
    if kind == "order":
        later, earlier = params.get("column_A"), params.get("column_B")
        return f"{later} {_short(orig.get(later))} is before {earlier} {_short(orig.get(earlier))}"
    if kind == "duplicate_key":
        return (f"{entity.key} {_short(orig.get(entity.key))} appears more than once in the batch with the same "
                f"{entity.updated_at} {_short(orig.get(entity.updated_at))} and different content")
    return f"{rule}: {column} value {_short(value)} breaks the rule"


#: the rule kind of each expectation type (the prefix of its rule id and its reason)
KIND_BY_TYPE = {
    "expect_column_values_to_not_be_null": "not_null",
    "expect_column_values_to_be_in_set": "in_set",
    "expect_column_values_to_be_between": "range",
    "expect_column_value_lengths_to_be_between": "length",
    "expect_column_pair_values_a_to_be_greater_than_b": "order",
    "expect_compound_columns_to_be_unique": "duplicate_key",
    "expect_select_column_values_to_be_unique_within_record": "duplicate_key",
}


def plural(word: str, items: list[str]) -> str:
    return f"{word}{'s' if len(items) > 1 else ''} {', '.join(items)}"
