"""Typed coercion, the pandas step before gate 1's expectations: each contract column parsed
into its logical type (int, money, date, timestamp, bool, text) with the values that do not
parse flagged, text cleaned of control characters, and values turned back into JSON."""

from __future__ import annotations

import math
import re
import warnings
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pandas as pd

from crm_pipeline.contract import Entity
from crm_pipeline.gates.results import GateError

#: Control characters removed from text (tab, newline and carriage return are kept) and
#: lone UTF-16 surrogates (cannot be stored as UTF-8) replaced with U+FFFD.
CONTROL_RE = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
SURROGATE_RE = r"[\ud800-\udfff]"
_INT_RE = re.compile(r"^[+-]?\d+$")
_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}
_BAD = object()  # marker: a value that does not parse as its logical type
_NS_MIN = pd.Timestamp("1678-01-01")
_NS_MAX = pd.Timestamp("2261-12-31")


def is_null(v: Any) -> bool:
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
        number = int(v)
    elif isinstance(v, (float, np.floating)):
        if not math.isfinite(v) or not float(v).is_integer():
            return _BAD
        number = int(v)
    elif isinstance(v, Decimal):
        if not v.is_finite() or v != v.to_integral_value():
            return _BAD
        number = int(v)
    elif isinstance(v, (str, bytes)):
        text = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
        text = text.strip()
        if _INT_RE.match(text):
            number = int(text)
        else:
            try:
                decimal = Decimal(text)
            except (InvalidOperation, ValueError):
                return _BAD
            if not decimal.is_finite() or decimal != decimal.to_integral_value():
                return _BAD
            number = int(decimal)
    else:
        return _BAD
    return number if -(2**63) < number < 2**63 else _BAD


def _money_value(v: Any):
    if isinstance(v, (bool, np.bool_)):
        return _BAD
    if isinstance(v, (int, np.integer, float, np.floating)):
        number = float(v)
    elif isinstance(v, Decimal):
        if not v.is_finite():
            return _BAD
        number = float(v)
    elif isinstance(v, (str, bytes)):
        text = (v.decode("utf-8", "replace") if isinstance(v, bytes) else v).strip()
        try:
            number = float(Decimal(text))
        except (InvalidOperation, ValueError):
            return _BAD
    else:
        return _BAD
    return number if math.isfinite(number) else _BAD


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
        text = (v.decode("utf-8", "replace") if isinstance(v, bytes) else v).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return _BAD


def _coerce_elementwise(series: pd.Series, fn) -> tuple[list, np.ndarray]:
    values = []
    bad = np.zeros(len(series), dtype=bool)
    for i, v in enumerate(series.tolist()):
        if is_null(v):
            values.append(None)
            continue
        out = fn(v)
        if out is _BAD:
            bad[i] = True
            values.append(None)
        else:
            values.append(out)
    return values, bad


def inferred_kind(series: pd.Series) -> str:
    """pandas' C-level guess of what an object column holds (ignoring nulls)."""
    try:
        return pd.api.types.infer_dtype(series, skipna=True)
    except Exception:  # pragma: no cover
        return "mixed"


def _null_mask(series: pd.Series, kind: str) -> np.ndarray:
    """Missing values of a typed (non-text) column: null, NaN, NaT, or blank text."""
    if kind == "string":
        try:  # Arrow strips in C; Python strings with lone surrogates fall back below
            a = series.astype("string[pyarrow]")
            return (a.isna() | a.str.strip().eq("")).fillna(True).to_numpy(dtype=bool)
        except Exception:
            return (series.isna() | series.str.strip().eq("")).to_numpy(dtype=bool)
    if kind in ("integer", "floating", "mixed-integer-float", "boolean", "datetime", "datetime64", "date", "empty"):
        return series.isna().to_numpy(dtype=bool)
    return series.map(is_null).to_numpy(dtype=bool)


def _numeric_fast(series: pd.Series, kind: str) -> tuple[pd.Series, np.ndarray] | None:
    """Vectorised parse of an object column of text or numbers; None when mixed."""
    if kind == "string":
        null = _null_mask(series, kind)
        floats = pd.to_numeric(series.where(~null, None), errors="coerce").astype("float64")
    elif kind in ("integer", "floating", "mixed-integer-float", "decimal", "empty"):
        null = series.isna().to_numpy(dtype=bool)
        floats = pd.to_numeric(series, errors="coerce").astype("float64")
    else:
        return None
    ok = np.isfinite(floats.to_numpy())
    bad = ~null & ~ok
    return floats.where(ok), bad


def _coerce_int(series: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_bool_dtype(series.dtype):
        return pd.Series(pd.NA, index=series.index, dtype="Int64"), series.notna().to_numpy()
    if pd.api.types.is_integer_dtype(series.dtype):
        return series.astype("Int64"), np.zeros(len(series), dtype=bool)
    if pd.api.types.is_float_dtype(series.dtype):
        floats = series.astype("float64")
        ok = np.isfinite(floats) & (np.floor(floats) == floats) & (floats.abs() < 2**53)
        bad = (floats.notna() & ~ok).to_numpy()
        return floats.where(ok).astype("Int64"), bad
    kind = inferred_kind(series)
    fast = _numeric_fast(series, kind) if kind != "decimal" else None
    if fast is not None:
        floats, bad = fast
        # beyond 2**53 a float is not exact: parse those few values one by one
        exact = floats.isna() | (floats.abs() < 2**53)
        if bool(exact.all()):
            ok = floats.isna() | (np.floor(floats) == floats)
            bad = bad | (~ok).to_numpy()
            return floats.where(ok).astype("Int64"), bad
    values, bad = _coerce_elementwise(series, _int_value)
    return pd.Series(pd.array(values, dtype="Int64"), index=series.index), bad


def _coerce_money(series: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_bool_dtype(series.dtype):
        return pd.Series(np.nan, index=series.index, dtype="float64"), series.notna().to_numpy()
    if pd.api.types.is_numeric_dtype(series.dtype):
        floats = series.astype("float64")
        bad = (floats.notna() & ~np.isfinite(floats)).to_numpy()
        return floats.where(np.isfinite(floats)), bad
    fast = _numeric_fast(series, inferred_kind(series))
    if fast is not None:
        return fast
    values, bad = _coerce_elementwise(series, _money_value)
    return pd.Series(np.array([np.nan if v is None else v for v in values], dtype="float64"), index=series.index), bad


def _coerce_datetime(series: pd.Series, *, as_date: bool) -> tuple[pd.Series, np.ndarray]:
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        out = series.dt.tz_convert("UTC").dt.tz_localize(None)
        bad = np.zeros(len(series), dtype=bool)
    elif pd.api.types.is_datetime64_dtype(series.dtype):
        out = series
        bad = np.zeros(len(series), dtype=bool)
    else:
        obj = series.astype(object)
        kind = inferred_kind(obj)
        null = _null_mask(obj, kind)
        if kind in ("string", "datetime", "datetime64", "date", "empty"):
            typed_ok = np.ones(len(series), dtype=bool)
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


def _coerce_bool(series: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("boolean"), np.zeros(len(series), dtype=bool)
    if pd.api.types.is_numeric_dtype(series.dtype):
        floats = series.astype("float64")
        ok = floats.isna() | floats.isin([0.0, 1.0])
        out = pd.Series(pd.array([None] * len(series), dtype="boolean"), index=series.index)
        out[ok & floats.notna()] = floats[ok & floats.notna()] == 1.0
        return out, (~ok).to_numpy()
    obj = series.astype(object)
    if inferred_kind(obj) == "string":
        null = _null_mask(obj, "string")
        low = obj.where(~null, None).str.strip().str.lower()
        mapped = low.map(lambda t: True if t in _TRUE else False if t in _FALSE else None if t is None else _BAD)
        bad = mapped.map(lambda v: v is _BAD).to_numpy(dtype=bool)
        vals = [None if (b or v is None) else bool(v) for v, b in zip(mapped.tolist(), bad)]
        return pd.Series(pd.array(vals, dtype="boolean"), index=series.index), bad
    values, bad = _coerce_elementwise(series, _bool_value)
    return pd.Series(pd.array(values, dtype="boolean"), index=series.index), bad


def _coerce_text(series: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Text as Python str (object dtype); returns (values, bad, cleaned)."""
    obj = series.astype(object)
    null = obj.isna().to_numpy(dtype=bool)
    if inferred_kind(obj) in ("string", "empty"):
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
    strs = pd.Series(strs.to_numpy(dtype=object), index=series.index, dtype=object)
    cleaned = np.zeros(len(series), dtype=bool)
    pattern = f"{CONTROL_RE}|{SURROGATE_RE}"
    if (~null).any():
        has = strs.str.contains(pattern, regex=True, na=False).to_numpy(dtype=bool)
        if has.any():
            fixed = strs[has].map(lambda t: re.sub(SURROGATE_RE, "\ufffd", re.sub(CONTROL_RE, "", t)))
            strs.loc[fixed.index] = fixed
            cleaned = has
    return strs, np.zeros(len(series), dtype=bool), cleaned


def coerce_batch(entity: Entity, batch: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The batch with each contract column cast to its logical type (original index kept),
    the values per column that do not parse, and the text values cleaned of control
    characters."""
    typed: dict[str, pd.Series] = {}
    bad: dict[str, np.ndarray] = {}
    cleaned: dict[str, np.ndarray] = {}
    for col, logical in entity.columns.items():
        series = batch[col]
        if logical == "int":
            typed[col], bad[col] = _coerce_int(series)
        elif logical == "money":
            typed[col], bad[col] = _coerce_money(series)
        elif logical in ("date", "timestamp"):
            typed[col], bad[col] = _coerce_datetime(series, as_date=logical == "date")
        elif logical == "bool":
            typed[col], bad[col] = _coerce_bool(series)
        elif logical == "text":
            typed[col], bad[col], cleaned[col] = _coerce_text(series)
        else:  # pragma: no cover - the contract only has these types
            raise GateError(f"{entity.name}.{col}: unknown logical type {logical!r}")
    return pd.DataFrame(typed, index=batch.index), bad, cleaned


def jsonable(v: Any) -> Any:
    """A value as JSON can hold it: None, bool, int, finite float, or text."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        number = float(v)
        if math.isnan(number):
            return None
        return number if math.isfinite(number) else str(number)
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, (pd.Timestamp, datetime, date)):
        return v.isoformat()
    if isinstance(v, np.datetime64):
        return None if np.isnat(v) else str(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, str):
        return re.sub(SURROGATE_RE, "\ufffd", v)
    return str(v)
