"""Gate 1 in SQL: a raw suite compiled to one "suspect" predicate over a batch's columns, so
that extraction sends only the rows it flags through ``gate1_rows``; ``CannotCompile`` when a
rule has no SQL form."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from crm_pipeline.contract import Entity
from crm_pipeline.gates.coercion import CONTROL_RE
from crm_pipeline.gates.outliers import OutlierLimit, outlier_sql_terms
from crm_pipeline.gates.results import GateError
from crm_pipeline.gates.rules import resolve_bound
from crm_pipeline.gates.suites import raw_suite
from crm_pipeline.warehouse import ident


class CannotCompile(GateError):
    """The suite holds a rule with no SQL form; extraction uses the chunked path."""


def _sql_literal(value: Any, logical: str | None) -> str:
    if isinstance(value, pd.Timestamp):
        if logical == "date":
            return f"date '{value.date().isoformat()}'"
        return f"timestamp '{value.strftime('%Y-%m-%d %H:%M:%S.%f')}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(float(value)) if isinstance(value, (float, np.floating)) else str(int(value))
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise CannotCompile(f"no SQL literal for {value!r}")


def _clean_value_set_columns(spec: dict) -> set[str]:
    """Columns of a raw suite held to a literal value set with no empty value and no
    control character in it."""
    out = set()
    for exp in spec.get("expectations", []):
        values = (exp.get("kwargs") or {}).get("value_set")
        if exp["type"] == "expect_column_values_to_be_in_set" and isinstance(values, list) and values and all(
                isinstance(v, str) and v != "" and not re.search(CONTROL_RE, v) for v in values):
            out.add(exp["kwargs"]["column"])
    return out


def _pre_check_terms(entity: Entity, spec: dict) -> list[str]:
    """Terms for the pandas pre-checks: text that cleaning would change or that is empty."""
    terms: list[str] = []
    for pre in spec.get("pre_checks", []):
        check = pre.get("check")
        if check == "parse":
            continue  # the caller reads typed columns only (source types checked up front)
        if check == "clean_control_characters":
            for column, logical in entity.columns.items():
                # a column held to a set of clean values is flagged by its set term for
                # any control character or empty string already: one regex less per row
                if logical == "text" and column not in _clean_value_set_columns(spec):
                    terms.append(f"regexp_matches({ident(column)}, '{CONTROL_RE}')")
                    terms.append(f"{ident(column)} = ''")
            continue
        raise CannotCompile(f"pre_check {check!r} has no SQL form")
    return terms


def _expectation_term(entity: Entity, exp: dict, *, as_of: date, known_customers_sql: str | None,
                      key_is_unique: bool) -> str | None:
    """The term of one expectation (None: no row of this batch can break it)."""
    etype = exp["type"]
    kw = dict(exp.get("kwargs") or {})
    column = kw.get("column")
    logical = entity.columns.get(column) if column else None
    if etype == "expect_column_values_to_not_be_null":
        return f"{ident(column)} is null"
    if etype == "expect_column_values_to_be_in_set":
        values = kw.get("value_set")
        if values == "$known_customer_ids":
            if known_customers_sql is None:
                return None
            return f"({ident(column)} is not null and {ident(column)} not in ({known_customers_sql}))"
        if not isinstance(values, list) or not values:
            raise CannotCompile(f"{etype} on {column}: value_set {values!r}")
        items = ", ".join(_sql_literal(v, logical) for v in values)
        return f"({ident(column)} is not null and {ident(column)} not in ({items}))"
    if etype == "expect_column_values_to_be_between":
        parts = []
        if kw.get("min_value") is not None:
            low = resolve_bound(kw["min_value"], logical, as_of)
            parts.append(f"{ident(column)} {'<=' if kw.get('strict_min') else '<'} {_sql_literal(low, logical)}")
        if kw.get("max_value") is not None:
            high = resolve_bound(kw["max_value"], logical, as_of)
            parts.append(f"{ident(column)} {'>=' if kw.get('strict_max') else '>'} {_sql_literal(high, logical)}")
        return f"({ident(column)} is not null and ({' or '.join(parts)}))" if parts else None
    if etype == "expect_column_value_lengths_to_be_between":
        parts = []
        if kw.get("min_value") is not None:
            parts.append(f"length({ident(column)}) < {int(kw['min_value'])}")
        if kw.get("max_value") is not None:
            parts.append(f"length({ident(column)}) > {int(kw['max_value'])}")
        return f"({ident(column)} is not null and ({' or '.join(parts)}))" if parts else None
    if etype == "expect_column_pair_values_a_to_be_greater_than_b":
        later, earlier = ident(kw["column_A"]), ident(kw["column_B"])
        op = "<" if kw.get("or_equal") else "<="
        return f"({later} is not null and {earlier} is not null and {later} {op} {earlier})"
    if etype in ("expect_compound_columns_to_be_unique", "expect_select_column_values_to_be_unique_within_record"):
        columns = kw.get("column_list") or []
        if key_is_unique and entity.key in columns:
            return None
        return f"(count(*) over (partition by {', '.join(ident(name) for name in columns)}) > 1)"
    raise CannotCompile(f"expectation {etype} has no SQL form")


def gate1_suspect_sql(entity: Entity, *, as_of: date, known_customers_sql: str | None,
                      key_is_unique: bool, outlier_limits: dict[str, OutlierLimit] | None = None) -> str:
    """A SQL predicate over the batch's columns that is true for every row gate 1 could
    quarantine or change (``expectations/raw_<entity>.json`` compiled rule by rule, plus
    text with control characters or empty strings, which the pandas pre-checks treat).

    It is a filter, not the verdict: rows it flags go through ``gate1_rows`` (GX and the
    pandas pre-checks) for the exact rule and reason; the rest are good as they are. The
    predicate is conservative: any rule it cannot express raises ``CannotCompile``.
    ``known_customers_sql`` is a subquery of the customer ids that exist (None: the
    foreign-key rule does not apply, as for the customers themselves); with
    ``key_is_unique`` the batch holds each key once, so no compound key repeats; with
    ``outlier_limits`` an amount above its column's limit is a suspect too."""
    spec = raw_suite(entity)
    terms = _pre_check_terms(entity, spec)
    for exp in spec.get("expectations", []):
        term = _expectation_term(entity, exp, as_of=as_of, known_customers_sql=known_customers_sql,
                                 key_is_unique=key_is_unique)
        if term is not None:
            terms.append(term)
    terms += outlier_sql_terms(outlier_limits)
    # a null inside a term means "this rule does not apply", never "unknown": a row is a
    # suspect or it is not, so no row can fall between the two sides of the split
    return " or ".join(f"coalesce({term}, false)" for term in terms) if terms else "false"
