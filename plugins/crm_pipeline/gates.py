"""The two data-quality gates of the nightly run, built on Great Expectations (GX) 1.24.

This module owns:

* **gate 1** (``gate1_rows``, ``gate1_batch``): the source contract of each entity, checked on
  every extracted batch before it lands in ``raw``. Row rules send offending rows to quarantine
  with a reason; batch rules (schema drift, volume collapse or spike, too much quarantine)
  refuse the whole batch.
* **gate 2** (``gate2_audit``): the dbt-built ``audit`` marts, checked before publish (one
  segment per customer, valid tiers, scores and grades, no personal data, volume and mix
  against what is published now), with Data Docs for every run.

The rules themselves live in ``expectations/`` (``raw_<entity>.json``, ``audit_marts.json``):
those files are the source of truth and are read at run time, so a changed threshold there
changes the gate. GX is imported lazily (it takes seconds and logs a lot) inside functions.

Two GX-with-DuckDB bugs (stack notes) are avoided by design: gates never hand GX a SQL
connection. Tables are read through the pipeline's own ``Warehouse`` connection with fully
qualified names and validated as pandas frames, so GX cannot validate a same-named table in
another schema, cannot lose results to a pooled DuckDB connection, and never opens the DuckDB
file a second time. Any expectation whose metric raised, or whose success is undetermined,
counts as a failure.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import statistics
import threading
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import pandas as pd

from crm_pipeline import settings
from crm_pipeline.contract import ENTITIES, Entity
from crm_pipeline.settings import DBT_SEEDS_DIR, EXPECTATIONS_DIR, ConfigError
from crm_pipeline.warehouse import ident

if TYPE_CHECKING:  # pragma: no cover
    from crm_pipeline.warehouse import Warehouse

log = logging.getLogger(__name__)


#: Row-position column added to the frame GX validates, to map unexpected rows back.
_ROW = "__row"
_FK_PREFIX = "__known__"
#: Control characters removed from text (tab, newline and carriage return are kept) and
#: lone UTF-16 surrogates (cannot be stored as UTF-8) replaced with U+FFFD.
_CONTROL_RE = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_SURROGATE_RE = r"[\ud800-\udfff]"
_INT_RE = re.compile(r"^[+-]?\d+$")
_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}
_BAD = object()  # marker: a value that does not parse as its logical type
_NS_MIN = pd.Timestamp("1678-01-01")
_NS_MAX = pd.Timestamp("2261-12-31")


class GateError(RuntimeError):
    """A gate could not run (bad suite file, unreadable table, GX internal error)."""


# ---------------------------------------------------------------------------------------
# settings and results
# ---------------------------------------------------------------------------------------
@dataclass
class GateSettings:
    volume_factor: float = 10.0
    max_quarantine_share: float = 0.2
    #: gate 2: customers in the segment table may not drop by more than this vs published
    max_segment_drop_share: float = 0.2
    #: gate 2: any segment's share may not change by more than this (absolute) vs published
    max_segment_mix_shift: float = 0.5
    #: gate 2: CLV expectations (marked ``"soft": "clv"`` in audit_marts.json) fail the gate
    #: only when True; otherwise they are reported as warnings
    fail_on_clv: bool = False

    @classmethod
    def from_env(cls) -> "GateSettings":
        """Defaults overridden by the ``CRM_GATE_*`` settings (see ``settings``)."""
        try:
            return cls(**settings.gate_values())
        except ConfigError as exc:
            raise GateError(str(exc)) from None


@dataclass
class Gate1Result:
    #: rows that pass, columns cast to the contract's logical types, original index kept
    good: pd.DataFrame
    #: offending rows (original index kept): ``_key``, ``_rule``, ``_reason``, ``_record``
    quarantined: pd.DataFrame
    #: one per rule: expectation, column, success, unexpected_count, examples (+ rule)
    checks: list[dict] = field(default_factory=list)


@dataclass
class BatchVerdict:
    ok: bool
    failures: list[str] = field(default_factory=list)


@dataclass
class Gate2Result:
    passed: bool
    failures: list[str]
    checks: list[dict]
    docs_path: str | None
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# GX: lazy import, quiet loggers, contexts
# ---------------------------------------------------------------------------------------
_gx_lock = threading.Lock()
_gx_ephemeral = None


def _quiet_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context",
                 "great_expectations.datasource", "great_expectations.expectations",
                 "great_expectations.validator", "great_expectations.render", "posthog"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _import_gx():
    _quiet_gx()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx  # noqa: PLC0415 (lazy: ~7 s import)
    _quiet_gx()  # GX may reset levels on import
    return gx


def _no_progress_bars(ctx) -> None:
    from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: PLC0415

    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)


def _gate1_batch_definition():
    """One ephemeral context per process, with a pandas data source for gate 1 batches."""
    global _gx_ephemeral
    with _gx_lock:
        if _gx_ephemeral is None:
            gx = _import_gx()
            ctx = gx.get_context(mode="ephemeral")
            _no_progress_bars(ctx)
            ds = ctx.data_sources.add_pandas("crm_gate1")
            bd = ds.add_dataframe_asset("batch").add_batch_definition_whole_dataframe("whole_batch")
            _gx_ephemeral = (ctx, bd)
        return _gx_ephemeral[1]


def _build_suite(name: str, configs: list[dict]):
    """A GX ExpectationSuite from expectation dicts ({type, kwargs, meta})."""
    from great_expectations.core.expectation_suite import ExpectationSuite  # noqa: PLC0415
    from great_expectations.expectations.expectation_configuration import (  # noqa: PLC0415
        ExpectationConfiguration,
    )

    expectations = []
    for ix, cfg in enumerate(configs):
        try:
            expectations.append(
                ExpectationConfiguration(
                    type=cfg["type"], kwargs=dict(cfg.get("kwargs") or {}),
                    meta={**dict(cfg.get("meta") or {}), "_ix": ix},  # maps results back to the file order
                ).to_domain_obj()
            )
        except Exception as exc:  # a typo in a suite file must say where it is
            raise GateError(f"suite {name}: invalid expectation {cfg.get('type')!r} "
                            f"{cfg.get('kwargs')}: {_one_line(exc)}") from None
    return ExpectationSuite(name=name, expectations=expectations)


def _in_suite_order(results, n: int, what: str) -> list:
    """Results of a suite validation in the order of the suite's expectations."""
    by_ix = {}
    for r in results:
        ix = (r.expectation_config.meta or {}).get("_ix")
        if ix is not None:
            by_ix[int(ix)] = r
    if sorted(by_ix) != list(range(n)):
        raise GateError(f"{what}: Great Expectations returned {len(results)} results for {n} expectations")
    return [by_ix[i] for i in range(n)]


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _result_error(res) -> str | None:
    """The error of one expectation result, or None when it evaluated cleanly.

    A raised metric or an undetermined success is an error: a gate must never pass
    because it could not compute something."""
    info = res.exception_info or {}
    messages: list[str] = []
    if isinstance(info, dict):
        if info.get("raised_exception"):
            messages.append(info.get("exception_message") or "metric raised an exception")
        else:
            for sub in info.values():  # {metric_id: {raised_exception, exception_message}}
                if isinstance(sub, dict) and sub.get("raised_exception"):
                    messages.append(sub.get("exception_message") or "metric raised an exception")
    if messages:
        return _one_line(Exception(messages[0]))
    if res.success is None:
        return "the expectation returned no success value"
    return None


# ---------------------------------------------------------------------------------------
# suite files
# ---------------------------------------------------------------------------------------
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


def _raw_suite(entity: Entity) -> dict:
    spec = load_suite_file(f"raw_{entity.name}")
    types = spec.get("column_types") or {}
    if types != dict(entity.columns):
        raise GateError(
            f"suite file {suite_path('raw_' + entity.name)} lists column_types {types} but the source "
            f"contract says {dict(entity.columns)}: update the file with the contract"
        )
    return spec


# ---------------------------------------------------------------------------------------
# gate 1: typed coercion (pandas pre-step)
# ---------------------------------------------------------------------------------------
def _is_null(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    if isinstance(v, np.floating) and np.isnan(v):
        return True
    if isinstance(v, np.datetime64) and np.isnat(v):
        return True
    if isinstance(v, str) and v.strip() == "":
        return True  # empty text in a typed column means "no value"
    return False


def _int_value(v: Any):
    if isinstance(v, (bool, np.bool_)):
        return _BAD
    if isinstance(v, (int, np.integer)):
        iv = int(v)
    elif isinstance(v, (float, np.floating)):
        if not math.isfinite(v) or not float(v).is_integer():
            return _BAD
        iv = int(v)
    elif isinstance(v, Decimal):
        if not v.is_finite() or v != v.to_integral_value():
            return _BAD
        iv = int(v)
    elif isinstance(v, (str, bytes)):
        t = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
        t = t.strip()
        if _INT_RE.match(t):
            iv = int(t)
        else:
            try:
                d = Decimal(t)
            except (InvalidOperation, ValueError):
                return _BAD
            if not d.is_finite() or d != d.to_integral_value():
                return _BAD
            iv = int(d)
    else:
        return _BAD
    return iv if -(2**63) < iv < 2**63 else _BAD


def _money_value(v: Any):
    if isinstance(v, (bool, np.bool_)):
        return _BAD
    if isinstance(v, (int, np.integer, float, np.floating)):
        f = float(v)
    elif isinstance(v, Decimal):
        if not v.is_finite():
            return _BAD
        f = float(v)
    elif isinstance(v, (str, bytes)):
        t = (v.decode("utf-8", "replace") if isinstance(v, bytes) else v).strip()
        try:
            f = float(Decimal(t))
        except (InvalidOperation, ValueError):
            return _BAD
    else:
        return _BAD
    return f if math.isfinite(f) else _BAD


def _bool_value(v: Any):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer, float, np.floating, Decimal)):
        if v == 1:
            return True
        if v == 0:
            return False
        return _BAD
    if isinstance(v, (str, bytes)):
        t = (v.decode("utf-8", "replace") if isinstance(v, bytes) else v).strip().lower()
        if t in _TRUE:
            return True
        if t in _FALSE:
            return False
    return _BAD


def _coerce_elementwise(s: pd.Series, fn) -> tuple[list, np.ndarray]:
    values = []
    bad = np.zeros(len(s), dtype=bool)
    for i, v in enumerate(s.tolist()):
        if _is_null(v):
            values.append(None)
            continue
        out = fn(v)
        if out is _BAD:
            bad[i] = True
            values.append(None)
        else:
            values.append(out)
    return values, bad


def _kind(s: pd.Series) -> str:
    """pandas' C-level guess of what an object column holds (ignoring nulls)."""
    try:
        return pd.api.types.infer_dtype(s, skipna=True)
    except Exception:  # pragma: no cover
        return "mixed"


def _null_mask(s: pd.Series, kind: str) -> np.ndarray:
    """Missing values of a typed (non-text) column: null, NaN, NaT, or blank text."""
    if kind == "string":
        try:  # Arrow strips in C; Python strings with lone surrogates fall back below
            a = s.astype("string[pyarrow]")
            return (a.isna() | a.str.strip().eq("")).fillna(True).to_numpy(dtype=bool)
        except Exception:
            return (s.isna() | s.str.strip().eq("")).to_numpy(dtype=bool)
    if kind in ("integer", "floating", "mixed-integer-float", "boolean", "datetime", "datetime64", "date", "empty"):
        return s.isna().to_numpy(dtype=bool)
    return s.map(_is_null).to_numpy(dtype=bool)


def _numeric_fast(s: pd.Series, kind: str) -> tuple[pd.Series, np.ndarray] | None:
    """Vectorised parse of an object column of text or numbers; None when mixed."""
    if kind == "string":
        null = _null_mask(s, kind)
        f = pd.to_numeric(s.where(~null, None), errors="coerce").astype("float64")
    elif kind in ("integer", "floating", "mixed-integer-float", "decimal", "empty"):
        null = s.isna().to_numpy(dtype=bool)
        f = pd.to_numeric(s, errors="coerce").astype("float64")
    else:
        return None
    ok = np.isfinite(f.to_numpy())
    bad = ~null & ~ok
    return f.where(ok), bad


def _coerce_int(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_bool_dtype(s.dtype):
        return pd.Series(pd.NA, index=s.index, dtype="Int64"), s.notna().to_numpy()
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.astype("Int64"), np.zeros(len(s), dtype=bool)
    if pd.api.types.is_float_dtype(s.dtype):
        f = s.astype("float64")
        ok = np.isfinite(f) & (np.floor(f) == f) & (f.abs() < 2**53)
        bad = (f.notna() & ~ok).to_numpy()
        return f.where(ok).astype("Int64"), bad
    kind = _kind(s)
    fast = _numeric_fast(s, kind) if kind != "decimal" else None
    if fast is not None:
        f, bad = fast
        # beyond 2**53 a float is not exact: parse those few values one by one
        exact = f.isna() | (f.abs() < 2**53)
        if bool(exact.all()):
            ok = f.isna() | (np.floor(f) == f)
            bad = bad | (~ok).to_numpy()
            return f.where(ok).astype("Int64"), bad
    values, bad = _coerce_elementwise(s, _int_value)
    return pd.Series(pd.array(values, dtype="Int64"), index=s.index), bad


def _coerce_money(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_bool_dtype(s.dtype):
        return pd.Series(np.nan, index=s.index, dtype="float64"), s.notna().to_numpy()
    if pd.api.types.is_numeric_dtype(s.dtype):
        f = s.astype("float64")
        bad = (f.notna() & ~np.isfinite(f)).to_numpy()
        return f.where(np.isfinite(f)), bad
    fast = _numeric_fast(s, _kind(s))
    if fast is not None:
        return fast
    values, bad = _coerce_elementwise(s, _money_value)
    return pd.Series(np.array([np.nan if v is None else v for v in values], dtype="float64"), index=s.index), bad


def _coerce_datetime(s: pd.Series, *, as_date: bool) -> tuple[pd.Series, np.ndarray]:
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        out = s.dt.tz_convert("UTC").dt.tz_localize(None)
        bad = np.zeros(len(s), dtype=bool)
    elif pd.api.types.is_datetime64_dtype(s.dtype):
        out = s
        bad = np.zeros(len(s), dtype=bool)
    else:
        obj = s.astype(object)
        kind = _kind(obj)
        null = _null_mask(obj, kind)
        if kind in ("string", "datetime", "datetime64", "date", "empty"):
            typed_ok = np.ones(len(s), dtype=bool)
            candidates = obj.where(~null, None)
        else:
            # only text, dates and datetimes can be dates: a number is not (no epoch guessing)
            typed_ok = obj.map(lambda v: isinstance(v, (str, bytes, date, datetime, pd.Timestamp, np.datetime64))).to_numpy(dtype=bool)
            candidates = obj.where(~null & typed_ok, None)
            candidates = candidates.map(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(candidates, errors="coerce", format="ISO8601", utc=True)
        out = parsed.dt.tz_localize(None)
        bad = ~null & (~typed_ok | out.isna().to_numpy())
    # keep values inside the datetime64[ns] range; outside it they fail the range rule anyway
    out = out.where(out.isna() | (out >= _NS_MIN), _NS_MIN).where(out.isna() | (out <= _NS_MAX), _NS_MAX)
    out = out.astype("datetime64[ns]")
    if as_date:
        out = out.dt.normalize()
    return out, bad


def _coerce_bool(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("boolean"), np.zeros(len(s), dtype=bool)
    if pd.api.types.is_numeric_dtype(s.dtype):
        f = s.astype("float64")
        ok = f.isna() | f.isin([0.0, 1.0])
        out = pd.Series(pd.array([None] * len(s), dtype="boolean"), index=s.index)
        out[ok & f.notna()] = f[ok & f.notna()] == 1.0
        return out, (~ok).to_numpy()
    obj = s.astype(object)
    if _kind(obj) == "string":
        null = _null_mask(obj, "string")
        low = obj.where(~null, None).str.strip().str.lower()
        mapped = low.map(lambda t: True if t in _TRUE else False if t in _FALSE else None if t is None else _BAD)
        bad = mapped.map(lambda v: v is _BAD).to_numpy(dtype=bool)
        vals = [None if (b or v is None) else bool(v) for v, b in zip(mapped.tolist(), bad)]
        return pd.Series(pd.array(vals, dtype="boolean"), index=s.index), bad
    values, bad = _coerce_elementwise(s, _bool_value)
    return pd.Series(pd.array(values, dtype="boolean"), index=s.index), bad


def _coerce_text(s: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Text as Python str (object dtype); returns (values, bad, cleaned)."""
    obj = s.astype(object)
    null = obj.isna().to_numpy(dtype=bool)
    if _kind(obj) in ("string", "empty"):
        strs = obj.where(~null, None)
    else:
        def to_str(v):
            if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
                return None
            if isinstance(v, str):
                return v
            if isinstance(v, bytes):
                return v.decode("utf-8", "replace")
            if isinstance(v, (float, np.floating)) and float(v).is_integer():
                return str(int(v))
            return str(v)
        strs = obj.map(to_str)
        null = strs.isna().to_numpy(dtype=bool)
    strs = pd.Series(strs.to_numpy(dtype=object), index=s.index, dtype=object)
    cleaned = np.zeros(len(s), dtype=bool)
    pattern = f"{_CONTROL_RE}|{_SURROGATE_RE}"
    if (~null).any():
        has = strs.str.contains(pattern, regex=True, na=False).to_numpy(dtype=bool)
        if has.any():
            fixed = strs[has].map(lambda t: re.sub(_SURROGATE_RE, "\ufffd", re.sub(_CONTROL_RE, "", t)))
            strs.loc[fixed.index] = fixed
            cleaned = has
    return strs, np.zeros(len(s), dtype=bool), cleaned



def _coerce(entity: Entity, batch: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, np.ndarray]]:
    typed: dict[str, pd.Series] = {}
    bad: dict[str, np.ndarray] = {}
    cleaned: dict[str, np.ndarray] = {}
    for col, logical in entity.columns.items():
        s = batch[col]
        if logical == "int":
            typed[col], bad[col] = _coerce_int(s)
        elif logical == "money":
            typed[col], bad[col] = _coerce_money(s)
        elif logical in ("date", "timestamp"):
            typed[col], bad[col] = _coerce_datetime(s, as_date=logical == "date")
        elif logical == "bool":
            typed[col], bad[col] = _coerce_bool(s)
        elif logical == "text":
            typed[col], bad[col], cleaned[col] = _coerce_text(s)
        else:  # pragma: no cover - the contract only has these types
            raise GateError(f"{entity.name}.{col}: unknown logical type {logical!r}")
    return pd.DataFrame(typed, index=batch.index), bad, cleaned


# ---------------------------------------------------------------------------------------
# gate 1: rule parameters, reasons, records
# ---------------------------------------------------------------------------------------
_AS_OF_RE = re.compile(r"^\$as_of([+-]\d+)d$")


def _resolve_bound(value: Any, logical: str | None, as_of: date) -> Any:
    """Suite-file bounds: numbers, ISO dates, or ``$as_of+Nd`` (a day relative to as_of).

    For timestamp columns a day bound means the whole day (its last instant)."""
    if isinstance(value, str) and logical in ("date", "timestamp"):
        m = _AS_OF_RE.match(value.strip())
        if m:
            day = as_of + timedelta(days=int(m.group(1)))
        else:
            try:
                day = date.fromisoformat(value.strip())
            except ValueError:
                raise GateError(f"bound {value!r} is neither an ISO date nor $as_of+Nd") from None
        ts = pd.Timestamp(day)
        return ts if logical == "date" else ts + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    return value


def _short(v: Any, limit: int = 60) -> str:
    if _is_null(v) and not (isinstance(v, str) and v != ""):
        return "null"
    text = repr(v) if isinstance(v, str) else str(v)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.encode("unicode_escape").decode("ascii") if any(ord(c) < 32 for c in text) else text


def _jsonable(v: Any) -> Any:
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return None
        return f if math.isfinite(f) else str(f)
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, (pd.Timestamp, datetime, date)):
        return v.isoformat()
    if isinstance(v, np.datetime64):
        return None if np.isnat(v) else str(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, str):
        return re.sub(_SURROGATE_RE, "\ufffd", v)
    return str(v)


def _record(row: dict) -> str:
    return json.dumps({k: _jsonable(v) for k, v in row.items()}, ensure_ascii=False)


def _key_text(v: Any) -> str | None:
    if _is_null(v):
        return None
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return re.sub(_SURROGATE_RE, "\ufffd", str(v))


def _reason(rule: str, kind: str, column: str | None, orig: dict, params: dict, entity: Entity) -> str:
    v = orig.get(column) if column else None
    if kind == "parse":
        return f"{column} value {_short(v)} is not a valid {params.get('logical_type')}"
    if kind == "not_null":
        return f"{column} is missing"
    if kind == "in_set":
        allowed = ", ".join(str(x) for x in params.get("value_set", []))
        return f"{column} value {_short(v)} is not one of {allowed}"
    if kind == "range":
        lo, hi = params.get("min_value"), params.get("max_value")
        fmt = (lambda b: "-" if b is None else (b.date().isoformat() if isinstance(b, pd.Timestamp) else f"{b:,.0f}" if isinstance(b, (int, float)) else str(b)))
        return f"{column} value {_short(v)} is outside the allowed range [{fmt(lo)}, {fmt(hi)}]"
    if kind == "length":
        n = len(str(v)) if v is not None else 0
        return f"{column} is {n:,} characters long (max {params.get('max_value')}), starting {_short(v, 40)}"
    if kind == "fk":
        return f"{column} {_short(v)} is not a known customer"
    if kind == "order":
        a, b = params.get("column_A"), params.get("column_B")
        return f"{a} {_short(orig.get(a))} is before {b} {_short(orig.get(b))}"
    if kind == "duplicate_key":
        return (f"{entity.key} {_short(orig.get(entity.key))} appears more than once in the batch with the same "
                f"{entity.updated_at} {_short(orig.get(entity.updated_at))} and different content")
    return f"{rule}: {column} value {_short(v)} breaks the rule"


_KIND_BY_TYPE = {
    "expect_column_values_to_not_be_null": "not_null",
    "expect_column_values_to_be_in_set": "in_set",
    "expect_column_values_to_be_between": "range",
    "expect_column_value_lengths_to_be_between": "length",
    "expect_column_pair_values_a_to_be_greater_than_b": "order",
    "expect_compound_columns_to_be_unique": "duplicate_key",
    "expect_select_column_values_to_be_unique_within_record": "duplicate_key",
}


# ---------------------------------------------------------------------------------------
# gate 1: rows
# ---------------------------------------------------------------------------------------
def gate1_rows(
    entity: Entity,
    batch: pd.DataFrame,
    known_customer_ids: Iterable[int] | None,
    *,
    as_of: date,
    settings: GateSettings | None = None,
) -> Gate1Result:
    """Split one extracted batch into typed good rows and quarantined rows.

    Rules run in the order of ``expectations/raw_<entity>.json`` (pandas pre-checks first,
    then the GX expectations); a row is quarantined once, under its first broken rule, and
    its ``_reason`` lists every rule it breaks. Raises ``GateError`` when the batch misses a
    contract column or a rule cannot be evaluated."""
    spec = _raw_suite(entity)
    contract = list(entity.columns)
    missing = [c for c in contract if c not in batch.columns]
    if missing:
        raise GateError(f"{entity.name}: schema drift: {_plural('missing column', missing)}; "
                        "gate 1 cannot check rows without them")
    n = len(batch)
    extra = [c for c in batch.columns if c not in entity.columns]

    typed, parse_bad, cleaned = _coerce(entity, batch)
    pos = np.arange(n)

    # first broken rule per row (index into `rules`), and all broken rules per row
    rules: list[dict] = []  # {rule, kind, column, params, expectation}
    first = np.full(n, -1, dtype=np.int64)
    broken: dict[int, list[int]] = {}
    checks: list[dict] = []
    originals = batch[contract]

    def mark(rule_ix: int, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        rows = np.unique(rows)
        unset = rows[first[rows] < 0]
        first[unset] = rule_ix
        for r in rows.tolist():
            broken.setdefault(r, []).append(rule_ix)

    def examples(column: str | None, rows: np.ndarray, limit: int = 5) -> list:
        if column is None or column not in originals.columns:
            return [int(r) for r in rows[:limit]]
        return [_jsonable(v) if not isinstance(v, str) else (v if len(v) <= 80 else v[:79] + "…")
                for v in originals[column].iloc[rows[:limit]].tolist()]

    # --- pandas pre-checks: parse, clean --------------------------------------------------
    for pre in spec.get("pre_checks", []):
        check = pre.get("check")
        if check == "parse":
            for col in pre.get("columns") or contract:
                if entity.columns[col] == "text":
                    continue
                rows = np.flatnonzero(parse_bad[col])
                ix = len(rules)
                rules.append({"rule": f"parse:{col}", "kind": "parse", "column": col,
                              "params": {"logical_type": entity.columns[col]}})
                mark(ix, rows)
                checks.append({"rule": f"parse:{col}", "expectation": "parse_as_logical_type", "column": col,
                               "success": len(rows) == 0, "unexpected_count": int(len(rows)),
                               "examples": examples(col, rows)})
        elif check == "clean_control_characters":
            for col, flags in cleaned.items():
                rows = np.flatnonzero(flags)
                checks.append({"rule": f"clean:{col}", "expectation": "clean_control_characters", "column": col,
                               "success": True, "unexpected_count": int(len(rows)),
                               "examples": examples(col, rows), "note": "control characters removed; row kept"})
        else:
            raise GateError(f"suite raw_{entity.name}: unknown pre_check {check!r}")

    # --- GX expectations -------------------------------------------------------------------
    frame = typed.reset_index(drop=True)
    frame[_ROW] = pos
    gx_configs: list[dict] = []
    gx_rules: list[dict] = []
    for exp in spec.get("expectations", []):
        etype = exp["type"]
        kwargs = dict(exp.get("kwargs") or {})
        meta = dict(exp.get("meta") or {})
        rule = meta.get("rule") or f"{_KIND_BY_TYPE.get(etype, etype)}:{kwargs.get('column')}"
        kind = _KIND_BY_TYPE.get(etype, etype)
        column = kwargs.get("column")
        logical = entity.columns.get(column) if column else None
        if kwargs.get("value_set") == "$known_customer_ids":
            kind = "fk"
            if known_customer_ids is None:
                checks.append({"rule": rule, "expectation": etype, "column": column, "success": True,
                               "unexpected_count": 0, "examples": [], "note": "skipped: no known customer ids"})
                continue
            known = pd.Index(pd.array(list(known_customer_ids), dtype="Int64"))
            helper = f"{_FK_PREFIX}{column}"
            vals = frame[column]
            # GX's in_set is O(len(value_set)) per call on pandas; precompute membership
            frame[helper] = (vals.isna() | vals.isin(known)).astype(bool)
            params = {"value_set": "known customer ids"}
            kwargs = {"column": helper, "value_set": [True]}
        else:
            for b in ("min_value", "max_value"):
                if b in kwargs:
                    kwargs[b] = _resolve_bound(kwargs[b], logical, as_of)
            params = dict(kwargs)
            if logical == "int" and etype == "expect_column_values_to_be_between":
                # GX vectorises between only for numpy dtypes: validate on a float copy
                helper = f"__float__{column}"
                frame[helper] = frame[column].astype("float64")
                kwargs["column"] = helper
        meta["rule"] = rule
        gx_configs.append({"type": etype, "kwargs": kwargs, "meta": meta})
        gx_rules.append({"rule": rule, "kind": kind, "column": column, "params": params, "etype": etype})

    if n and gx_configs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = _run_gate1_gx(entity, frame, gx_configs)
        for res, meta in zip(results, gx_rules):
            err = _result_error(res)
            if err:
                raise GateError(f"{entity.name}: gate 1 could not evaluate {meta['etype']} "
                                f"({meta['rule']}): {err}")
            result = res.result or {}
            idx_list = result.get("unexpected_index_list") or []
            rows = np.array(sorted({int(d[_ROW]) if isinstance(d, dict) else int(d) for d in idx_list}), dtype=np.int64)
            if meta["kind"] == "not_null" and meta["column"] in parse_bad and len(rows):
                rows = rows[~parse_bad[meta["column"]][rows]]  # already quarantined as unparseable
            ix = len(rules)
            rules.append(meta)
            mark(ix, rows)
            checks.append({"rule": meta["rule"], "expectation": meta["etype"], "column": meta["column"],
                           "success": bool(res.success), "unexpected_count": int(len(rows)),
                           "examples": examples(meta["column"] or entity.key, rows)})
    else:
        for meta in gx_rules:
            checks.append({"rule": meta["rule"], "expectation": meta["etype"], "column": meta["column"],
                           "success": True, "unexpected_count": 0, "examples": []})

    # --- split -------------------------------------------------------------------------------
    bad_pos = np.flatnonzero(first >= 0)
    good_mask = first < 0
    good = typed[good_mask]
    good = _final_types(entity, good)
    if extra:
        good = pd.concat([good, batch.loc[good_mask, extra]], axis=1)

    q_rows = []
    if len(bad_pos):
        orig_records = batch.iloc[bad_pos].to_dict("records")
        for p, rec in zip(bad_pos.tolist(), orig_records):
            rix = broken[p]
            reasons = []
            for k in rix:
                r = rules[k]
                reasons.append(f"{r['rule']}: " + _reason(r["rule"], r["kind"], r["column"], rec, r["params"], entity))
            q_rows.append({
                "_key": _key_text(rec.get(entity.key)),
                "_rule": rules[rix[0]]["rule"],
                "_reason": "; ".join(reasons),
                "_record": _record(rec),
            })
    quarantined = pd.DataFrame(q_rows, columns=["_key", "_rule", "_reason", "_record"],
                               index=batch.index[bad_pos])
    quarantined = quarantined.astype(object)
    if len(good) + len(quarantined) != n:  # pragma: no cover - an invariant, not an input error
        raise GateError(f"{entity.name}: gate 1 lost rows ({len(good)} good + {len(quarantined)} "
                        f"quarantined != {n})")
    return Gate1Result(good=good, quarantined=quarantined, checks=checks)


# ---------------------------------------------------------------------------------------
# gate 1 in SQL: the suite compiled to one "suspect" predicate
# ---------------------------------------------------------------------------------------
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
                isinstance(v, str) and v != "" and not re.search(_CONTROL_RE, v) for v in values):
            out.add(exp["kwargs"]["column"])
    return out


def gate1_suspect_sql(entity: Entity, *, as_of: date, known_customers_sql: str | None,
                      key_is_unique: bool) -> str:
    """A SQL predicate over the batch's columns that is true for every row gate 1 could
    quarantine or change (``expectations/raw_<entity>.json`` compiled rule by rule, plus
    text with control characters or empty strings, which the pandas pre-checks treat).

    It is a filter, not the verdict: rows it flags go through ``gate1_rows`` (GX and the
    pandas pre-checks) for the exact rule and reason; the rest are good as they are. The
    predicate is conservative: any rule it cannot express raises ``CannotCompile``.
    ``known_customers_sql`` is a subquery of the customer ids that exist (None: the
    foreign-key rule does not apply, as for the customers themselves); with
    ``key_is_unique`` the batch holds each key once, so no compound key repeats."""
    spec = _raw_suite(entity)
    col = ident
    terms: list[str] = []
    for pre in spec.get("pre_checks", []):
        check = pre.get("check")
        if check == "parse":
            continue  # the caller reads typed columns only (source types checked up front)
        if check == "clean_control_characters":
            for c, logical in entity.columns.items():
                # a column held to a set of clean values is flagged by its set term for
                # any control character or empty string already: one regex less per row
                if logical == "text" and c not in _clean_value_set_columns(spec):
                    terms.append(f"regexp_matches({col(c)}, '{_CONTROL_RE}')")
                    terms.append(f"{col(c)} = ''")
            continue
        raise CannotCompile(f"pre_check {check!r} has no SQL form")
    for exp in spec.get("expectations", []):
        etype = exp["type"]
        kw = dict(exp.get("kwargs") or {})
        c = kw.get("column")
        logical = entity.columns.get(c) if c else None
        if etype == "expect_column_values_to_not_be_null":
            terms.append(f"{col(c)} is null")
        elif etype == "expect_column_values_to_be_in_set":
            values = kw.get("value_set")
            if values == "$known_customer_ids":
                if known_customers_sql is not None:
                    terms.append(f"({col(c)} is not null and {col(c)} not in ({known_customers_sql}))")
                continue
            if not isinstance(values, list) or not values:
                raise CannotCompile(f"{etype} on {c}: value_set {values!r}")
            items = ", ".join(_sql_literal(v, logical) for v in values)
            terms.append(f"({col(c)} is not null and {col(c)} not in ({items}))")
        elif etype == "expect_column_values_to_be_between":
            parts = []
            if kw.get("min_value") is not None:
                lo = _resolve_bound(kw["min_value"], logical, as_of)
                parts.append(f"{col(c)} {'<=' if kw.get('strict_min') else '<'} {_sql_literal(lo, logical)}")
            if kw.get("max_value") is not None:
                hi = _resolve_bound(kw["max_value"], logical, as_of)
                parts.append(f"{col(c)} {'>=' if kw.get('strict_max') else '>'} {_sql_literal(hi, logical)}")
            if parts:
                terms.append(f"({col(c)} is not null and ({' or '.join(parts)}))")
        elif etype == "expect_column_value_lengths_to_be_between":
            parts = []
            if kw.get("min_value") is not None:
                parts.append(f"length({col(c)}) < {int(kw['min_value'])}")
            if kw.get("max_value") is not None:
                parts.append(f"length({col(c)}) > {int(kw['max_value'])}")
            if parts:
                terms.append(f"({col(c)} is not null and ({' or '.join(parts)}))")
        elif etype == "expect_column_pair_values_a_to_be_greater_than_b":
            a, b = col(kw["column_A"]), col(kw["column_B"])
            op = "<" if kw.get("or_equal") else "<="
            terms.append(f"({a} is not null and {b} is not null and {a} {op} {b})")
        elif etype in ("expect_compound_columns_to_be_unique", "expect_select_column_values_to_be_unique_within_record"):
            cols = kw.get("column_list") or []
            if key_is_unique and entity.key in cols:
                continue
            part = ", ".join(col(x) for x in cols)
            terms.append(f"(count(*) over (partition by {part}) > 1)")
        else:
            raise CannotCompile(f"expectation {etype} has no SQL form")
    # a null inside a term means "this rule does not apply", never "unknown": a row is a
    # suspect or it is not, so no row can fall between the two sides of the split
    return " or ".join(f"coalesce({t}, false)" for t in terms) if terms else "false"


def _final_types(entity: Entity, good: pd.DataFrame) -> pd.DataFrame:
    out = good.copy()
    for col, logical in entity.columns.items():
        if logical == "bool" and not out[col].isna().any():
            out[col] = out[col].astype(bool)
    return out


def _run_gate1_gx(entity: Entity, frame: pd.DataFrame, configs: list[dict]):
    bd = _gate1_batch_definition()
    suite = _build_suite(f"raw_{entity.name}", configs)
    try:
        batch = bd.get_batch(batch_parameters={"dataframe": frame})
        res = batch.validate(
            suite,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [_ROW],
                           "partial_unexpected_count": 5, "return_unique_unexpected": False},
        )
    except GateError:
        raise
    except Exception as exc:
        raise GateError(f"{entity.name}: Great Expectations failed while validating the batch: "
                        f"{_one_line(exc)}") from None
    return _in_suite_order(res.results, len(configs), entity.name)


def _plural(word: str, items: list[str]) -> str:
    return f"{word}{'s' if len(items) > 1 else ''} {', '.join(items)}"


# ---------------------------------------------------------------------------------------
# gate 1: batch
# ---------------------------------------------------------------------------------------
def gate1_batch(
    entity: Entity,
    columns: list[str],
    rows: int,
    quarantined: int,
    recent_rows: list[int],
    *,
    settings: GateSettings | None = None,
    incremental: bool = True,
) -> BatchVerdict:
    """Batch-level rules: schema drift, volume collapse or spike, quarantine share."""
    s = settings or GateSettings()
    failures: list[str] = []
    cols = list(columns)
    missing = [c for c in entity.columns if c not in cols]
    unexpected = [c for c in cols if c not in entity.columns]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(_plural("missing column", missing))
        if unexpected:
            parts.append(_plural("unexpected column", unexpected))
        failures.append(f"{entity.name}: schema drift: {', '.join(parts)}")

    recent = [int(r) for r in (recent_rows or []) if r is not None]
    if incremental and len(recent) >= 3 and s.volume_factor > 0:
        median = statistics.median(recent)
        if median >= 20:
            low, high = median / s.volume_factor, median * s.volume_factor
            if rows < low:
                failures.append(
                    f"{entity.name}: volume collapse: {rows:,} rows vs a median of {median:,.0f} over the last "
                    f"{len(recent)} batches (fewer than {low:,.0f} = median / {s.volume_factor:g} fails)")
            elif rows > high:
                failures.append(
                    f"{entity.name}: volume spike: {rows:,} rows vs a median of {median:,.0f} over the last "
                    f"{len(recent)} batches (more than {high:,.0f} = median × {s.volume_factor:g} fails)")

    if rows > 0 and quarantined / rows > s.max_quarantine_share:
        failures.append(
            f"{entity.name}: {quarantined:,} of {rows:,} rows ({quarantined / rows:.0%}) broke row rules, "
            f"above the limit of {s.max_quarantine_share:.0%} (see quarantine.{entity.name})")
    return BatchVerdict(ok=not failures, failures=failures)


# ---------------------------------------------------------------------------------------
# gate 2
# ---------------------------------------------------------------------------------------
def expected_tier_counts(n_buyers: int, cutpoints: list[tuple[str, float]] | None = None) -> dict[str, int]:
    """Exact pyramid tier sizes for ``n_buyers`` buying customers.

    ``cutpoints`` are (tier, cumulative share) best tier first, from the dbt seed
    ``value_tier_cutpoints`` (VIP 1%, Major 5%, Ordinary 20%, Small 100%). As in
    ``int_value_pyramid.sql``, the buyer at rank p belongs to the first tier with
    ``p - 1 < cumulative_share × n_buyers``, so a tier's cumulative size is
    ``ceil(cumulative_share × n_buyers)`` (exact decimals): 1,000 buyers give
    10 / 40 / 150 / 800, 50 buyers 1 / 2 / 7 / 40."""
    from fractions import Fraction  # noqa: PLC0415

    cps = cutpoints or _tier_cutpoints()
    counts: dict[str, int] = {}
    prev = 0
    for tier, share in cps:
        cum = min(n_buyers, math.ceil(Fraction(str(share)) * n_buyers))
        cum = max(cum, prev)
        counts[tier] = cum - prev
        prev = cum
    return counts


def _tier_cutpoints(wh: "Warehouse | None" = None) -> list[tuple[str, float]]:
    """Cut points from the warehouse seed table, else the seed CSV, else the domain default."""
    if wh is not None:
        try:
            if wh.table_exists("config", "value_tier_cutpoints"):
                df = wh.query_df("select value_tier, cumulative_share from config.value_tier_cutpoints "
                                 "order by cumulative_share")
                if len(df):
                    return [(str(t), float(c)) for t, c in zip(df["value_tier"], df["cumulative_share"])]
        except Exception:  # fall back to the CSV below
            pass
    csv = DBT_SEEDS_DIR / "value_tier_cutpoints.csv"
    if csv.exists():
        df = pd.read_csv(csv).sort_values("cumulative_share")
        return [(str(t), float(c)) for t, c in zip(df["value_tier"], df["cumulative_share"])]
    return [("VIP", 0.01), ("Major", 0.05), ("Ordinary", 0.20), ("Small", 1.0)]


@dataclass
class _Dataset:
    name: str           # shown in messages, e.g. audit.customer_segments
    frame: pd.DataFrame
    expectations: list[dict]
    asset: str = ""     # stable GX asset / suite name (the name may carry run-time numbers)


def _substitute(value: Any, params: dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        if value not in params:
            raise GateError(f"audit_marts.json uses unknown parameter {value}")
        return params[value]
    if isinstance(value, list):
        return [_substitute(v, params) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, params) for k, v in value.items()}
    return value


def gate2_audit(
    wh: "Warehouse",
    *,
    as_of: date,
    docs_dir: Path,
    settings: GateSettings | None = None,
    expected_customers: int | None = None,
) -> Gate2Result:
    """Validate the dbt-built audit marts before publish; build Data Docs into ``docs_dir``.

    Failures are sentences; errors that stop the gate itself (unreadable warehouse, bad
    suite file, GX internal error) raise ``GateError`` with a one-line message."""
    try:
        return _gate2_audit(wh, as_of=as_of, docs_dir=docs_dir, settings=settings,
                            expected_customers=expected_customers)
    except GateError:
        raise
    except Exception as exc:
        raise GateError(f"gate 2 could not run: {type(exc).__name__}: {_one_line(exc)}") from None


def _gate2_audit(wh, *, as_of, docs_dir, settings, expected_customers) -> Gate2Result:
    s = settings or GateSettings()
    spec = load_suite_file("audit_marts")
    schema = spec.get("schema", "audit")
    failures: list[str] = []
    warnings_: list[str] = []
    checks: list[dict] = []

    try:
        existing = set(wh.tables(schema))
    except Exception as exc:
        raise GateError(f"gate 2 cannot list the tables of schema {schema}: {_one_line(exc)}") from None

    params = _gate2_params(wh, spec, s, expected_customers, failures)
    datasets: list[_Dataset] = []
    for table, tspec in spec.get("tables", {}).items():
        fq = f"{schema}.{table}"
        if table not in existing:
            if tspec.get("required"):
                failures.append(f"gate 2 failed: required table {fq} does not exist")
                checks.append(_check(fq, "table_exists", None, False, 0, [], "required table missing"))
            else:
                checks.append(_check(fq, "table_exists", None, True, 0, [], "skipped: table not built yet"))
            continue
        wanted = _gate2_columns(tspec)
        present = wh.columns(schema, table)
        # only the columns the checks read (a mart can be a million rows by 60 columns); a
        # column the mart lacks stays out, so its expectation errors and fails as before
        cols = present if wanted is None else [c for c in present if c in wanted] or present[:1]
        frame = _read(wh, f"select {', '.join(_qident(c) for c in cols)} from {_qident(schema)}.{_qident(table)}", fq)
        datasets.append(_Dataset(fq, frame, tspec.get("expectations", []), fq))
        for derived in tspec.get("derived", []):
            ds = _derived_dataset(wh, derived, table, frame, params, schema)
            if ds is not None:
                datasets.append(ds)

    # personal data: every column of every table in the audit schema
    pii = spec.get("personal_data", {})
    if pii:
        cols = _read(wh, "select table_name, column_name from information_schema.columns "
                         f"where table_schema = '{schema}' order by table_name, ordinal_position",
                     f"{schema} columns")
        cols["column_name"] = cols["column_name"].astype(str).str.lower()
        contract_personal = sorted({c.lower() for e in ENTITIES for c in e.personal})
        exps = json.loads(json.dumps(pii.get("expectations", [])))
        for exp in exps:
            kw = exp.get("kwargs") or {}
            if "regex_list" in kw:  # the source contract's personal columns, by exact name
                kw["regex_list"] = list(kw["regex_list"]) + [f"^{re.escape(c)}$" for c in contract_personal]
        datasets.append(_Dataset(f"{schema} (all tables) columns", cols, exps, f"{schema}_personal_data"))

    resolved: list[_Dataset] = []
    for ds in datasets:
        try:
            exps = _substitute(ds.expectations, params)
        except GateError as exc:
            failures.append(f"gate 2 failed: {ds.name}: {exc}")
            continue
        resolved.append(_Dataset(ds.name, ds.frame, exps, ds.asset))

    docs_path = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = _run_gate2_gx(resolved, docs_dir, as_of) if resolved else []
    for ds, res_list in zip(resolved, results):
        for exp, res in zip(ds.expectations, res_list):
            meta = exp.get("meta") or {}
            column = (exp.get("kwargs") or {}).get("column") or (exp.get("kwargs") or {}).get("column_A")
            err = _result_error(res)
            soft = meta.get("soft") == "clv" and not s.fail_on_clv
            result = res.result or {}
            if err:
                msg = f"gate 2 failed: {exp['type']} on {ds.name}{'.' + column if column else ''} could not be evaluated: {err}"
                ok = False
            elif res.success:
                msg, ok = None, True
            else:
                msg, ok = "gate 2 failed: " + _describe_failure(exp, ds.name, column, result, meta), False
            examples = _examples(result, meta)
            checks.append(_check(ds.name, exp["type"], column, ok, int(result.get("unexpected_count") or 0),
                                 examples, meta.get("description"), error=err, soft=soft))
            if msg:
                (warnings_ if soft else failures).append(msg if not soft else msg.replace("gate 2 failed", "gate 2 warning"))
    if resolved:
        docs_path = str(Path(docs_dir) / "index.html")
    return Gate2Result(passed=not failures, failures=failures, checks=checks, docs_path=docs_path, warnings=warnings_)


#: derived checks that read only their ``column`` (with its default) from the mart's frame
_DERIVED_FRAME_COLUMN = {"tier_sizes": "value_tier", "mix_vs_published": "segment", "volume_vs_published": None,
                         "coverage": None}


def _gate2_columns(tspec: dict) -> set[str] | None:
    """The columns of a mart its gate 2 checks read (None: all of them): the columns of its
    expectations, their example columns and example formats, and those of its derived
    checks."""
    import string

    cols: set[str] = set()
    for exp in tspec.get("expectations", []):
        kw, meta = exp.get("kwargs") or {}, exp.get("meta") or {}
        for k in ("column", "column_A", "column_B", "example_column"):
            v = kw.get(k) if k != "example_column" else meta.get(k)
            if isinstance(v, str):
                cols.add(v)
        for k in ("column_list", "column_set"):
            if isinstance(kw.get(k), list):
                cols.update(v for v in kw[k] if isinstance(v, str))
        if isinstance(meta.get("example_format"), str):
            cols.update(f for _, f, _, _ in string.Formatter().parse(meta["example_format"]) if f)
        if exp.get("type", "").startswith("expect_table_columns"):
            return None
    for derived in tspec.get("derived", []):
        kind = derived.get("kind")
        if kind not in _DERIVED_FRAME_COLUMN:
            return None
        default = _DERIVED_FRAME_COLUMN[kind]
        if default is not None:
            cols.add(derived.get("column", default))
        for exp in derived.get("expectations", []):
            if kind == "volume_vs_published" and (exp.get("kwargs") or {}).get("column"):
                cols.add(exp["kwargs"]["column"])
    return cols


def _qident(name: str) -> str:
    from crm_pipeline.warehouse import ident  # noqa: PLC0415

    return ident(name)


def _read(wh: "Warehouse", sql: str, what: str) -> pd.DataFrame:
    try:
        df = wh.query_df(sql)
    except Exception as exc:
        raise GateError(f"gate 2 cannot read {what}: {_one_line(exc)}") from None
    # psycopg2 returns numeric as Decimal objects: GX compares those one by one, so use floats
    for col in df.columns:
        if df[col].dtype == object and _kind(df[col]) == "decimal":
            df[col] = df[col].astype("float64")
    return df


def _check(dataset: str, expectation: str, column: str | None, success: bool, unexpected: int,
           examples: list, description: str | None, *, error: str | None = None, soft: bool = False) -> dict:
    d = {"table": dataset, "expectation": expectation, "column": column, "success": bool(success),
         "unexpected_count": unexpected, "examples": examples}
    if description:
        d["description"] = description
    if error:
        d["error"] = error
    if soft:
        d["soft"] = True
    return d


def _examples(result: dict, meta: dict) -> list:
    idx = result.get("partial_unexpected_index_list") or []
    fmt = meta.get("example_format")
    if fmt and idx and all(isinstance(d, dict) for d in idx):
        try:
            return [fmt.format(**d) for d in idx[:10]]
        except (KeyError, IndexError, ValueError):
            pass
    key = meta.get("example_column")
    if key and idx:
        return [_jsonable(d.get(key)) if isinstance(d, dict) else _jsonable(d) for d in idx[:10]]
    vals = result.get("partial_unexpected_list") or []
    return [_jsonable(v) for v in vals[:10]]


def _describe_failure(exp: dict, dataset: str, column: str | None, result: dict, meta: dict) -> str:
    where = f"{dataset}.{column}" if column else dataset
    etype = exp["type"]
    what = meta.get("description")
    suffix = f" ({what})" if what else ""
    if etype.startswith("expect_table_row_count"):
        kw = exp.get("kwargs") or {}
        expected = kw.get("value")
        if expected is None:
            expected = f"between {kw.get('min_value')} and {kw.get('max_value')}"
        return f"{etype} on {where}: observed {result.get('observed_value')} rows, expected {expected}{suffix}"
    if "unexpected_count" in result:
        ex = _examples(result, meta)
        return f"{etype} on {where}: {result.get('unexpected_count')} unexpected values, e.g. {ex}{suffix}"
    return f"{etype} on {where}: observed {result.get('observed_value')}{suffix}"


def _gate2_params(wh: "Warehouse", spec: dict, s: GateSettings, expected_customers: int | None,
                  failures: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {
        "$max_segment_mix_shift": s.max_segment_mix_shift,
        "$max_segment_drop_share": s.max_segment_drop_share,
    }
    # every source customer present: the staging count (or the caller's number)
    if expected_customers is None:
        src = spec.get("customer_source", "staging.stg_crm__customers")
        sch, tab = src.split(".", 1)
        if wh.table_exists(sch, tab):
            expected_customers = int(wh.scalar(f"select count(*) from {_qident(sch)}.{_qident(tab)}"))
        else:
            failures.append(f"gate 2 failed: {src} does not exist, so the customer count cannot be checked")
    params["$expected_customers"] = expected_customers if expected_customers is not None else -1
    # the allowed segments: the seed of segment rules
    rules_src = spec.get("segment_rules_source", "config.segment_rules")
    sch, tab = rules_src.split(".", 1)
    if wh.table_exists(sch, tab):
        seg = wh.query_df(f"select distinct segment from {_qident(sch)}.{_qident(tab)}")
        params["$segments"] = sorted(str(v) for v in seg["segment"].dropna())
    else:
        failures.append(f"gate 2 failed: {rules_src} does not exist, so segment names cannot be checked")
        params["$segments"] = []
    # what BI sees now
    pub = spec.get("published_segments", "published.customer_segments")
    sch, tab = pub.split(".", 1)
    params["$published_exists"] = wh.table_exists(sch, tab)
    if params["$published_exists"]:
        n_pub = int(wh.scalar(f"select count(*) from {_qident(sch)}.{_qident(tab)}"))
        params["$published_rows"] = n_pub
        params["$min_rows_vs_published"] = int(math.ceil(n_pub * (1 - s.max_segment_drop_share) - 1e-9))
        params["$published_mix"] = wh.query_df(
            f"select segment, count(*) as n from {_qident(sch)}.{_qident(tab)} group by segment")
    params["$tier_cutpoints"] = _tier_cutpoints(wh)
    return params


def _derived_dataset(wh: "Warehouse", derived: dict, table: str, frame: pd.DataFrame,
                     params: dict, schema: str) -> _Dataset | None:
    kind = derived["kind"]
    fq = f"{schema}.{table}"
    if kind == "coverage":
        src = derived.get("source", "staging.stg_crm__customers")
        sch, tab = src.split(".", 1)
        if not wh.table_exists(sch, tab):
            return None  # reported by _gate2_params
        key = derived.get("key", "customer_id")
        df = _read(wh, (
            f"select s.{_qident(key)} as {_qident(key)}, c.{_qident(key)} as in_{_qident(table)} "
            f"from {_qident(sch)}.{_qident(tab)} s left join (select distinct {_qident(key)} from "
            f"{_qident(schema)}.{_qident(table)}) c on s.{_qident(key)} = c.{_qident(key)}"), f"{fq} coverage")
        return _Dataset(f"{fq} vs {src} (coverage)", df, derived.get("expectations", []), f"{fq}_coverage")
    if kind == "tier_sizes":
        col = derived.get("column", "value_tier")
        cps = params["$tier_cutpoints"]
        tiers = [t for t, _ in cps]
        if col in frame.columns:
            n_buyers = int(frame[col].isin(tiers).sum())
            actual = frame[col].value_counts()
        else:
            n_buyers, actual = 0, pd.Series(dtype="int64")
        expected = expected_tier_counts(n_buyers, cps)
        df = pd.DataFrame({
            "value_tier": tiers,
            "actual_customers": [int(actual.get(t, 0)) for t in tiers],
            "expected_customers": [expected[t] for t in tiers],
        })
        if col not in frame.columns:
            df = df.drop(columns=["actual_customers"])  # makes the expectation error → failure
        return _Dataset(f"{fq} (tier sizes of {n_buyers} buyers)", df, derived.get("expectations", []),
                        f"{fq}_tier_sizes")
    if kind == "mix_vs_published":
        if not params.get("$published_exists"):
            return None
        col = derived.get("column", "segment")
        pub = params["$published_mix"]
        cur = frame[col].value_counts() if col in frame.columns else pd.Series(dtype="int64")
        n_pub = max(int(pub["n"].sum()), 1)
        n_cur = max(int(cur.sum()), 1)
        pub_share = {str(k): int(v) / n_pub for k, v in zip(pub["segment"], pub["n"])}
        cur_share = {str(k): int(v) / n_cur for k, v in cur.items()}
        segs = sorted(set(pub_share) | set(cur_share))
        df = pd.DataFrame({
            "segment": segs,
            "published_share": [round(pub_share.get(x, 0.0), 6) for x in segs],
            "audit_share": [round(cur_share.get(x, 0.0), 6) for x in segs],
        })
        df["share_change"] = (df["audit_share"] - df["published_share"]).abs().round(6)
        return _Dataset(f"{fq} vs published (segment mix)", df, derived.get("expectations", []), f"{fq}_mix_vs_published")
    if kind == "volume_vs_published":
        if not params.get("$published_exists"):
            return None
        return _Dataset(f"{fq} vs published ({params['$published_rows']} rows published)", frame,
                        derived.get("expectations", []), f"{fq}_volume_vs_published")
    raise GateError(f"audit_marts.json: unknown derived check kind {kind!r}")


def _asset_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")[:80]


def _run_gate2_gx(datasets: list[_Dataset], docs_dir: Path, as_of: date) -> list[list]:
    """Validate each dataset with a stored ValidationDefinition and build Data Docs."""
    gx = _import_gx()
    docs_dir = Path(docs_dir).resolve()
    root = docs_dir.parent / "gx_context"
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _gx_lock:
            ctx = gx.get_context(mode="file", project_root_dir=str(root))
        ctx.enable_analytics(False)
        _no_progress_bars(ctx)
        site = "crm_gates"
        site_config = {
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        }
        sites = ctx.list_data_docs_sites() or {}
        if site in sites:
            ctx.update_data_docs_site(site, site_config)
        else:
            ctx.add_data_docs_site(site, site_config)
        for other in list(sites):
            if other != site:
                ctx.delete_data_docs_site(other)
        ds_name = "crm_gate2"
        try:
            source = ctx.data_sources.get(ds_name)
        except Exception:
            source = ctx.data_sources.add_pandas(ds_name)
        from great_expectations.core.run_identifier import RunIdentifier  # noqa: PLC0415

        run_id = RunIdentifier(run_name=f"gate2 as_of {as_of.isoformat()}",
                               run_time=datetime.now().astimezone())
        out = []
        suite_names: list[str] = []
        for ds in datasets:
            asset_name = _asset_name(ds.asset or ds.name)
            try:
                asset = source.get_asset(asset_name)
            except LookupError:
                asset = source.add_dataframe_asset(asset_name)
            try:
                bd = asset.get_batch_definition("whole")
            except (KeyError, LookupError, ValueError):
                bd = asset.add_batch_definition_whole_dataframe("whole")
            suite = _build_suite(f"audit_marts.{asset_name}", ds.expectations)
            suite = ctx.suites.add_or_update(suite)
            suite_names.append(suite.name)
            vd = gx.ValidationDefinition(name=f"gate2.{asset_name}", data=bd, suite=suite)
            vd = ctx.validation_definitions.add_or_update(vd)
            fmt: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": 10}
            ex_cols = sorted({(e.get("meta") or {}).get("example_column") for e in ds.expectations} - {None})
            ex_cols = [c for c in ex_cols if c in ds.frame.columns]
            if ex_cols:
                fmt["unexpected_index_column_names"] = ex_cols
            res = vd.run(batch_parameters={"dataframe": ds.frame}, result_format=fmt, run_id=run_id)
            out.append(_in_suite_order(res.results, len(ds.expectations), f"gate 2 on {ds.name}"))
        # render only this run's pages (a full rebuild grows with every stored run); the
        # index still lists every run kept in the store
        from great_expectations.data_context.types.resource_identifiers import (  # noqa: PLC0415
            ExpectationSuiteIdentifier,
        )

        mine = [k for k in ctx.validation_results_store.list_keys()
                if getattr(k, "run_id", None) is not None and k.run_id.run_name == run_id.run_name
                and k.run_id.run_time == run_id.run_time]
        suites = [ExpectationSuiteIdentifier(name=n) for n in suite_names]
        ctx.build_data_docs(site_names=[site], resource_identifiers=mine + suites)
        return out
    except GateError:
        raise
    except Exception as exc:
        raise GateError(f"gate 2: Great Expectations failed: {_one_line(exc)}") from None


__all__ = [
    "BatchVerdict", "Gate1Result", "Gate2Result", "GateError", "GateSettings",
    "expected_tier_counts", "gate1_batch", "gate1_rows", "gate2_audit", "load_suite_file",
]
