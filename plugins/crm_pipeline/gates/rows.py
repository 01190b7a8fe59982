"""Gate 1 on rows: one extracted batch split into typed good rows and quarantined rows. The
pandas pre-checks (parse, clean) run first, then the suite's GX expectations; a row is
quarantined once, under its first broken rule, and its reason lists every rule it breaks."""

from __future__ import annotations

import warnings
from datetime import date
from typing import Iterable

import numpy as np
import pandas as pd

from crm_pipeline.contract import Entity
from crm_pipeline.gates.coercion import coerce_batch, jsonable
from crm_pipeline.gates.gx_runtime import result_error, validate_gate1_frame
from crm_pipeline.gates.outliers import OutlierLimit, outlier_rows
from crm_pipeline.gates.results import Gate1Result, GateError, GateSettings
from crm_pipeline.gates.rules import KIND_BY_TYPE, key_text, plural, reason, record_json, resolve_bound
from crm_pipeline.gates.suites import raw_suite

#: Row-position column added to the frame GX validates, to map unexpected rows back.
_ROW = "__row"
_FK_PREFIX = "__known__"


class _BrokenRules:
    """The rules of one batch in the order they ran, the rules each row breaks (the first
    names the row's ``_rule``, all of them make its ``_reason``), and the check reported
    for each rule."""

    def __init__(self, originals: pd.DataFrame):
        self.originals = originals  # the batch's contract columns as extracted
        self.rules: list[dict] = []  # {rule, kind, column, params, ...}
        self.first = np.full(len(originals), -1, dtype=np.int64)
        self.by_row: dict[int, list[int]] = {}
        self.checks: list[dict] = []

    def add(self, rule: dict, rows: np.ndarray) -> None:
        """A rule that ran and the positions of the rows that break it."""
        rule_ix = len(self.rules)
        self.rules.append(rule)
        if len(rows) == 0:
            return
        rows = np.unique(rows)
        unset = rows[self.first[rows] < 0]
        self.first[unset] = rule_ix
        for row in rows.tolist():
            self.by_row.setdefault(row, []).append(rule_ix)

    def examples(self, column: str | None, rows: np.ndarray, limit: int = 5) -> list:
        """The original values of ``column`` in the first offending rows (their positions
        when the column is not a contract column)."""
        if column is None or column not in self.originals.columns:
            return [int(row) for row in rows[:limit]]
        return [jsonable(v) if not isinstance(v, str) else (v if len(v) <= 80 else v[:79] + "…")
                for v in self.originals[column].iloc[rows[:limit]].tolist()]


def gate1_rows(
    entity: Entity,
    batch: pd.DataFrame,
    known_customer_ids: Iterable[int] | None,
    *,
    as_of: date,
    settings: GateSettings | None = None,
    outlier_limits: dict[str, OutlierLimit] | None = None,
) -> Gate1Result:
    """Split one extracted batch into typed good rows and quarantined rows.

    Rules run in the order of ``expectations/raw_<entity>.json`` (pandas pre-checks first,
    then the GX expectations), then the outlier rule of each column in ``outlier_limits``
    (``gates.outliers``: ``outlier:<column>``); a row is quarantined once, under its first
    broken rule, and its ``_reason`` lists every rule it breaks. Raises ``GateError`` when
    the batch misses a contract column or a rule cannot be evaluated."""
    spec = raw_suite(entity)
    missing = [column for column in entity.columns if column not in batch.columns]
    if missing:
        raise GateError(f"{entity.name}: schema drift: {plural('missing column', missing)}; "
                        "gate 1 cannot check rows without them")
    typed, parse_bad, cleaned = coerce_batch(entity, batch)
    broken = _BrokenRules(batch[list(entity.columns)])
    _run_pre_checks(entity, spec, parse_bad, cleaned, broken)
    frame, gx_configs, gx_rules = _gx_expectations(entity, spec, typed, known_customer_ids, as_of, broken)
    _run_gx_expectations(entity, frame, gx_configs, gx_rules, parse_bad, broken)
    _run_outlier_rules(typed, outlier_limits or {}, broken)
    return _split(entity, batch, typed, broken)


def _run_outlier_rules(typed: pd.DataFrame, limits: dict[str, OutlierLimit], broken: _BrokenRules) -> None:
    """Each column's outlier rule: rows whose absolute amount is above its limit."""
    for column, limit in limits.items():
        if column not in typed.columns:
            continue
        rows = outlier_rows(typed, limit)
        rule = f"outlier:{column}"
        broken.add({"rule": rule, "kind": "outlier", "column": column, "params": limit.as_dict()}, rows)
        broken.checks.append({"rule": rule, "expectation": "amount_within_recent_distribution", "column": column,
                              "success": len(rows) == 0, "unexpected_count": int(len(rows)),
                              "examples": broken.examples(column, rows), "limit": limit.limit})


def _run_pre_checks(entity: Entity, spec: dict, parse_bad: dict[str, np.ndarray],
                    cleaned: dict[str, np.ndarray], broken: _BrokenRules) -> None:
    """The pandas pre-checks: ``parse`` (a rule per typed column), ``clean_control_characters``
    (reported per text column; the row is kept)."""
    contract = list(entity.columns)
    for pre in spec.get("pre_checks", []):
        check = pre.get("check")
        if check == "parse":
            for column in pre.get("columns") or contract:
                if entity.columns[column] == "text":
                    continue
                rows = np.flatnonzero(parse_bad[column])
                broken.add({"rule": f"parse:{column}", "kind": "parse", "column": column,
                            "params": {"logical_type": entity.columns[column]}}, rows)
                broken.checks.append({"rule": f"parse:{column}", "expectation": "parse_as_logical_type",
                                      "column": column, "success": len(rows) == 0,
                                      "unexpected_count": int(len(rows)), "examples": broken.examples(column, rows)})
        elif check == "clean_control_characters":
            for column, flags in cleaned.items():
                rows = np.flatnonzero(flags)
                broken.checks.append({"rule": f"clean:{column}", "expectation": "clean_control_characters",
                                      "column": column, "success": True, "unexpected_count": int(len(rows)),
                                      "examples": broken.examples(column, rows),
                                      "note": "control characters removed; row kept"})
        else:
            raise GateError(f"suite raw_{entity.name}: unknown pre_check {check!r}")


def _gx_expectations(entity: Entity, spec: dict, typed: pd.DataFrame, known_customer_ids: Iterable[int] | None,
                     as_of: date, broken: _BrokenRules) -> tuple[pd.DataFrame, list[dict], list[dict]]:
    """The frame GX validates (typed columns, row positions, helper columns) and the suite's
    expectations made ready for it, each with its rule. The foreign-key rule is skipped,
    and reported so, when the caller has no customer ids."""
    frame = typed.reset_index(drop=True)
    frame[_ROW] = np.arange(len(typed))
    gx_configs: list[dict] = []
    gx_rules: list[dict] = []
    for exp in spec.get("expectations", []):
        etype = exp["type"]
        kwargs = dict(exp.get("kwargs") or {})
        meta = dict(exp.get("meta") or {})
        rule = meta.get("rule") or f"{KIND_BY_TYPE.get(etype, etype)}:{kwargs.get('column')}"
        kind = KIND_BY_TYPE.get(etype, etype)
        column = kwargs.get("column")
        logical = entity.columns.get(column) if column else None
        if kwargs.get("value_set") == "$known_customer_ids":
            kind = "fk"
            if known_customer_ids is None:
                broken.checks.append({"rule": rule, "expectation": etype, "column": column, "success": True,
                                      "unexpected_count": 0, "examples": [],
                                      "note": "skipped: no known customer ids"})
                continue
            known = pd.Index(pd.array(list(known_customer_ids), dtype="Int64"))
            helper = f"{_FK_PREFIX}{column}"
            values = frame[column]
            # GX's in_set is O(len(value_set)) per call on pandas; precompute membership
            frame[helper] = (values.isna() | values.isin(known)).astype(bool)
            params = {"value_set": "known customer ids"}
            kwargs = {"column": helper, "value_set": [True]}
        else:
            for bound in ("min_value", "max_value"):
                if bound in kwargs:
                    kwargs[bound] = resolve_bound(kwargs[bound], logical, as_of)
            params = dict(kwargs)
            if logical == "int" and etype == "expect_column_values_to_be_between":
                # GX vectorises between only for numpy dtypes: validate on a float copy
                helper = f"__float__{column}"
                frame[helper] = frame[column].astype("float64")
                kwargs["column"] = helper
        meta["rule"] = rule
        gx_configs.append({"type": etype, "kwargs": kwargs, "meta": meta})
        gx_rules.append({"rule": rule, "kind": kind, "column": column, "params": params, "etype": etype})
    return frame, gx_configs, gx_rules


def _run_gx_expectations(entity: Entity, frame: pd.DataFrame, gx_configs: list[dict], gx_rules: list[dict],
                         parse_bad: dict[str, np.ndarray], broken: _BrokenRules) -> None:
    """Validate the frame with GX and add each rule with the rows that break it; an empty
    batch (or a suite without expectations) passes every rule."""
    if not (len(frame) and gx_configs):
        for rule in gx_rules:
            broken.checks.append({"rule": rule["rule"], "expectation": rule["etype"], "column": rule["column"],
                                  "success": True, "unexpected_count": 0, "examples": []})
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = validate_gate1_frame(entity.name, frame, gx_configs, _ROW)
    for res, rule in zip(results, gx_rules):
        error = result_error(res)
        if error:
            raise GateError(f"{entity.name}: gate 1 could not evaluate {rule['etype']} "
                            f"({rule['rule']}): {error}")
        result = res.result or {}
        idx_list = result.get("unexpected_index_list") or []
        rows = np.array(sorted({int(d[_ROW]) if isinstance(d, dict) else int(d) for d in idx_list}), dtype=np.int64)
        if rule["kind"] == "not_null" and rule["column"] in parse_bad and len(rows):
            rows = rows[~parse_bad[rule["column"]][rows]]  # already quarantined as unparseable
        broken.add(rule, rows)
        broken.checks.append({"rule": rule["rule"], "expectation": rule["etype"], "column": rule["column"],
                              "success": bool(res.success), "unexpected_count": int(len(rows)),
                              "examples": broken.examples(rule["column"] or entity.key, rows)})


def _split(entity: Entity, batch: pd.DataFrame, typed: pd.DataFrame, broken: _BrokenRules) -> Gate1Result:
    """Good rows (typed, with any extra source columns as extracted) and quarantined rows
    (``_key``, ``_rule``, ``_reason``, ``_record``), both on the batch's index."""
    bad_pos = np.flatnonzero(broken.first >= 0)
    good_mask = broken.first < 0
    good = _final_types(entity, typed[good_mask])
    extra = [column for column in batch.columns if column not in entity.columns]
    if extra:
        good = pd.concat([good, batch.loc[good_mask, extra]], axis=1)

    q_rows = []
    if len(bad_pos):
        orig_records = batch.iloc[bad_pos].to_dict("records")
        for pos, rec in zip(bad_pos.tolist(), orig_records):
            rule_ixs = broken.by_row[pos]
            reasons = []
            for rule_ix in rule_ixs:
                rule = broken.rules[rule_ix]
                reasons.append(f"{rule['rule']}: "
                               + reason(rule["rule"], rule["kind"], rule["column"], rec, rule["params"], entity))
            q_rows.append({
                "_key": key_text(rec.get(entity.key)),
                "_rule": broken.rules[rule_ixs[0]]["rule"],
                "_reason": "; ".join(reasons),
                "_record": record_json(rec),
            })
    quarantined = pd.DataFrame(q_rows, columns=["_key", "_rule", "_reason", "_record"],
                               index=batch.index[bad_pos])
    quarantined = quarantined.astype(object)
    if len(good) + len(quarantined) != len(batch):  # pragma: no cover - an invariant, not an input error
        raise GateError(f"{entity.name}: gate 1 lost rows ({len(good)} good + {len(quarantined)} "
                        f"quarantined != {len(batch)})")
    return Gate1Result(good=good, quarantined=quarantined, checks=broken.checks)


def _final_types(entity: Entity, good: pd.DataFrame) -> pd.DataFrame:
    out = good.copy()
    for column, logical in entity.columns.items():
        if logical == "bool" and not out[column].isna().any():
            out[column] = out[column].astype(bool)
    return out
