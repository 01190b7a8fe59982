"""Row hashes: the content hash of a row version, computed in Python over a chunk
(``row_hashes``) and, side by side, its SQL twin for the warehouse (``row_hash_sql``);
both turn each value into the same canonical text first, so both paths hash a row alike."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import numpy as np
import pandas as pd

from crm_pipeline.contract import ENTITIES, Entity
from crm_pipeline.warehouse import Warehouse, ident

#: the text of a null value inside a hashed row
NULL_TEXT = "\x00"
#: the separator between the columns of a hashed row (ASCII unit separator, chr(31))
SEPARATOR = "\x1f"


# -- canonical text in Python --------------------------------------------------------


def _is_na(value) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and value != value:
        return True
    return isinstance(value, np.datetime64) and np.isnat(value)


def _str_elementwise(values: np.ndarray) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for position, value in enumerate(values.tolist()):
        if _is_na(value):
            out[position] = None
        elif isinstance(value, bool):
            out[position] = "1" if value else "0"
        elif isinstance(value, bytes):
            out[position] = value.decode("utf-8", "replace")
        elif isinstance(value, (datetime, pd.Timestamp)):
            out[position] = pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S.%f")
        else:
            out[position] = str(value)
    return out


def _canon_numeric(floats: np.ndarray) -> np.ndarray:
    """float64 values as text: integral ones as integers, others in shortest form."""
    import pyarrow as pa

    floats = floats + 0.0  # -0.0 → 0.0
    nan = np.isnan(floats)
    integral = ~nan & np.isfinite(floats) & (np.floor(floats) == floats) & (np.abs(floats) < 2.0**53)
    out = np.empty(len(floats), dtype=object)
    if integral.any():
        out[integral] = pa.array(floats[integral].astype(np.int64)).cast(pa.string()).to_numpy(zero_copy_only=False)
    other = ~nan & ~integral
    if other.any():
        out[other] = pa.array(floats[other]).cast(pa.string()).to_numpy(zero_copy_only=False)
    out[nan] = None
    return out


def _canon_money(amounts: np.ndarray) -> np.ndarray:
    """Amounts (DECIMAL(14,2)) as text to the cent with two decimals, as DuckDB writes a
    DECIMAL(18,2): 100.00, 12.50, 0.05, -12.30. The warehouse computes the same text in
    SQL (``money_text_sql``), so both extraction paths hash a row alike."""
    with np.errstate(invalid="ignore"):
        fixed = np.isfinite(amounts) & (np.abs(amounts) < 1e15)
    out = _canon_numeric(np.where(fixed, np.nan, amounts))  # out-of-range values keep the generic form
    if fixed.any():
        import pyarrow as pa
        import pyarrow.compute as pc

        cents = np.rint(amounts[fixed] * 100.0).astype(np.int64)
        units = np.abs(cents)
        body = pc.binary_join_element_wise(
            pa.array(units // 100).cast(pa.string()),
            pc.utf8_lpad(pa.array(units % 100).cast(pa.string()), width=2, padding="0"), ".")
        sign = pa.array(np.where(cents < 0, "-", ""), type=pa.string())
        out[fixed] = pc.binary_join_element_wise(sign, body, "").to_numpy(zero_copy_only=False)
    return out


def _canon_datetime(values: pd.Series, unit: str) -> np.ndarray:
    """datetime64 values as ISO text, the date part only for dates (unit D)."""
    naive = values
    if isinstance(naive.dtype, pd.DatetimeTZDtype):
        naive = naive.dt.tz_convert("UTC").dt.tz_localize(None)
    stamps = naive.to_numpy(dtype="datetime64[us]")
    nat = np.isnat(stamps)
    text = np.datetime_as_string(stamps.astype("datetime64[D]") if unit == "D" else stamps, unit=unit)
    if unit != "D":
        # DuckDB's text of a TIMESTAMP: microseconds without trailing zeros, no fraction
        # when it is zero ("2024-01-02 03:04:05.5", "2024-01-02 03:04:05")
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = pa.array(np.char.replace(text, "T", " "), type=pa.string())
        arr = pc.utf8_rtrim(pc.utf8_rtrim(arr, characters="0"), characters=".")
        text = arr.to_numpy(zero_copy_only=False)
    out = np.asarray(text).astype(object)
    out[nat] = None
    return out


def _canon(values: pd.Series, logical: str | None) -> np.ndarray:
    """One column as canonical text (None for null): the same value gives the same text
    whatever engine or reader produced it (int 5, 5.0, Decimal('5.00'); datetime or its
    ISO text; True, 1)."""
    dtype = values.dtype
    if logical in ("date", "timestamp"):
        unit = "D" if logical == "date" else "us"
        if pd.api.types.is_datetime64_any_dtype(dtype):
            return _canon_datetime(values, unit)
        obj = values.astype(object)
        null = obj.isna().to_numpy(dtype=bool)
        parsed = pd.to_datetime(obj.where(~null, None).map(
            lambda value: value if isinstance(value, (str, date, datetime, pd.Timestamp, np.datetime64)) else None),
            errors="coerce", format="ISO8601", utc=True).dt.tz_localize(None)
        out = _canon_datetime(parsed, unit)
        unparsed = ~null & parsed.isna().to_numpy()
        if unparsed.any():
            out[unparsed] = _str_elementwise(obj.to_numpy()[unparsed])
        return out
    if pd.api.types.is_bool_dtype(dtype):
        null = values.isna().to_numpy()
        out = np.where(values.fillna(False).to_numpy(dtype=bool), "1", "0").astype(object)
        out[null] = None
        return out
    if pd.api.types.is_integer_dtype(dtype):
        import pyarrow as pa

        if logical == "money":
            return _canon_money(values.to_numpy(dtype="float64", na_value=np.nan))
        return pa.array(values, from_pandas=True).cast(pa.string()).to_numpy(zero_copy_only=False)
    if pd.api.types.is_float_dtype(dtype):
        floats = values.to_numpy(dtype="float64", na_value=np.nan)
        if logical == "money":  # the contract type is DECIMAL(14,2): compare to the cent
            return _canon_money(floats)
        return _canon_numeric(floats)
    if logical == "text" or dtype == object or pd.api.types.is_string_dtype(dtype):
        obj = values.astype(object)
        kind = pd.api.types.infer_dtype(obj, skipna=True)
        if kind in ("string", "empty"):
            out = obj.to_numpy(dtype=object).copy()
            out[obj.isna().to_numpy()] = None
            return out
        if logical != "text":
            if kind == "integer":
                return _canon(obj.astype("Int64"), logical)
            if kind in ("floating", "mixed-integer-float", "decimal"):
                num = pd.to_numeric(obj.map(lambda value: str(value) if isinstance(value, Decimal) else value), errors="coerce")
                return _canon(pd.Series(num.to_numpy(dtype="float64", na_value=np.nan)), logical)
            if kind == "boolean":
                return _canon(obj.astype("boolean"), logical)
            if kind in ("datetime", "datetime64"):
                return _canon(obj, "timestamp")
            if kind == "date":
                return _canon(obj, "date")
        return _str_elementwise(obj.to_numpy(dtype=object))
    return _str_elementwise(values.to_numpy(dtype=object)) if len(values) else np.empty(0, dtype=object)


def join_columns(parts: list[np.ndarray], row_count: int) -> np.ndarray:
    """Per row, the texts of ``parts`` (one array a column, ``row_count`` rows) joined by
    ``SEPARATOR``, a null as ``NULL_TEXT``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays = [pc.fill_null(pa.array(part, type=pa.string()), NULL_TEXT) for part in parts]
    if not arrays:
        return np.full(row_count, "", dtype=object)
    return pc.binary_join_element_wise(*arrays, SEPARATOR).to_numpy(zero_copy_only=False)


def _hash_text(joined: np.ndarray) -> np.ndarray:
    """The MD5 of each string's UTF-8 bytes as 32 hex characters, computed by DuckDB over
    an Arrow array: the same function the warehouse applies in ``row_hash_sql``."""
    import duckdb
    import pyarrow as pa

    try:
        arr = pa.array(joined, type=pa.string())
    except (UnicodeEncodeError, pa.ArrowException):  # lone surrogates: hash their escaped form
        arr = pa.array([text.encode("utf-8", "surrogatepass").decode("utf-8", "backslashreplace")
                        for text in joined.tolist()], type=pa.string())
    con = duckdb.connect(":memory:")
    try:
        con.register("_crm_rows", pa.table({"s": arr}))
        result = con.execute("select md5(s) as h from _crm_rows")
        hashed = result.to_arrow_table() if hasattr(result, "to_arrow_table") else result.fetch_arrow_table()
    finally:
        con.close()
    return hashed.column("h").to_numpy(zero_copy_only=False).astype(object)


def row_hashes(df: pd.DataFrame, columns: list[str], types: dict[str, str] | None = None) -> pd.Series:
    """A content hash per row over ``columns``, stable across source engines and readers.

    Values are first turned into canonical text per column (``types`` maps a column to
    its logical contract type; without it the type is inferred from the values), joined,
    and hashed, all vectorised."""
    row_count = len(df)
    if types is None:
        types = {}
        for entity in ENTITIES:
            if set(columns) <= set(entity.columns):
                types = dict(entity.columns)
                break
    parts = [_canon(df[column], types.get(column)) for column in columns]
    hashes = _hash_text(join_columns(parts, row_count)) if row_count else np.empty(0, dtype=object)
    return pd.Series(hashes, index=df.index, dtype=object)


def key_text(series: pd.Series) -> np.ndarray:
    """The business key as text, the way the warehouse casts it (``cast(key as varchar)``)."""
    return _canon(series, "int")


# -- the same canonical text and hash in the warehouse's SQL -------------------------


def money_text_sql(expr: str) -> str:
    """SQL twin of ``_canon_money``: to the cent, two decimals."""
    return f"cast(cast({expr} as decimal(18,2)) as varchar)"


def _canon_sql(column: str, logical: str, source_type: str, alias: str | None = None) -> str:
    """SQL twin of ``_canon``: one column of a typed table as canonical text."""
    column_sql = f"{alias}.{ident(column)}" if alias else ident(column)
    if logical == "int":
        return f"cast({column_sql} as varchar)"
    if logical == "money":
        return money_text_sql(column_sql)
    if logical == "date":
        return f"cast({column_sql} as varchar)"
    if logical == "timestamp":
        ts = (f"timezone('UTC', {column_sql})" if source_type == "TIMESTAMP WITH TIME ZONE"
              else f"cast({column_sql} as timestamp)")
        return f"cast({ts} as varchar)"
    if logical == "bool":
        return f"(case when {column_sql} then '1' else '0' end)"
    return column_sql


def row_hash_sql(entity: Entity, source_types: dict[str, str], alias: str | None = None) -> str:
    """SQL twin of ``row_hashes``: md5 of the canonical texts joined by US, NUL for null.
    ``source_types`` are the DuckDB types of the columns read ({} for typed raw columns)."""
    parts = [f"coalesce({_canon_sql(column, logical, source_types.get(column, ''), alias)}, chr(0))"
             for column, logical in entity.columns.items()]
    return f"md5(concat_ws(chr(31), {', '.join(parts)}))"


def loaded_row_hash_sql(wh: Warehouse, entity: Entity, source_types: dict[str, str], *, initial: bool) -> str:
    """The _row_hash a batch loaded through SQL stores: none on a first load into DuckDB
    (``stored_hash_sql`` computes it from raw when it is needed); PostgreSQL cannot
    compute it later, so it stores every one."""
    if initial and not wh.stores_row_hashes:
        return "cast(null as varchar)"
    return row_hash_sql(entity, source_types)


def stored_hash_sql(entity: Entity, alias: str | None = None) -> str:
    """The row hash of a version in a DuckDB raw table. A first load through SQL stores no
    hash (``_row_hash`` null): hashing every row of a first load cost as much as reading
    it, and only the few versions inside a later overlap window are ever compared. Those
    are hashed here, from the typed raw columns, to the same value the source row had."""
    col = f"{alias}._row_hash" if alias else "_row_hash"
    return f"coalesce({col}, {row_hash_sql(entity, {}, alias)})"
