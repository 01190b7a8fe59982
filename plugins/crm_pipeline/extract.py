"""Incremental, idempotent extraction of the source entities into ``raw.*``.

One batch per entity per run. The window is derived from what already landed in the
warehouse (the watermark is the newest ``updated_at`` in ``raw``), widened by an overlap
margin (``CRM_EXTRACT_OVERLAP_MINUTES``, default 120) so late commits are not missed, and
bounded above by the end of the run's day. A row changed after the fact (a return, a late
payment, a re-opened complaint, a soft delete) has a new ``updated_at`` and arrives as a
new version; an identical re-sent version is counted as a duplicate and skipped.

Rows stream from the source in chunks of ``CRM_EXTRACT_CHUNK_ROWS`` (default 200,000)
through the fastest reader the source allows: DuckDB's postgres extension (loaded from
the ``duckdb-extension-postgres-scanner`` package, never downloaded) or connectorx for
PostgreSQL, connectorx for MySQL/MariaDB, and SQLAlchemy with server-side cursors
everywhere else and as the fallback when a fast reader is missing or fails. Every reader
turns a typed source's rows into the same canonical frame, so the batch does not depend
on the reader. ``CRM_EXTRACT_READER`` (auto, pushdown, duckdb, connectorx, sqlalchemy) forces one;
pushdown is the SQL path in DuckDB: inside a DuckDB warehouse, or for a PostgreSQL
warehouse's first load in an in-memory DuckDB with both attached (see ``sql_warehouse``
and ``_extract_pushdown``).

Each chunk is checked by gate 1 and written straight away to the batch's landing tables
(``raw._landing_<entity>_<batch>`` and the same in ``quarantine``), committed per chunk so
neither this process nor the warehouse holds a growing transaction; at the end the landing
tables move into ``raw``/``quarantine`` in one transaction together with the batch's
bookkeeping row in ``ops.extract_batches``. Memory stays bounded by the chunk size (and by
DuckDB's ``memory_limit``), a batch is either complete in ``raw`` or absent, and a retry
after a failure drops what an unfinished attempt landed and never duplicates rows.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
import time
import uuid
from decimal import Decimal
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from crm_pipeline.contract import ENTITIES, RAW_META_COLUMNS, Entity
from crm_pipeline import settings
from crm_pipeline.connections import redact, sqlalchemy_url
from crm_pipeline.warehouse import Warehouse, ident

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 200_000
#: a batch lands chunk by chunk in raw.<prefix><entity>_<batch> (and quarantine.<same>)
LANDING_PREFIX = "_landing_"
DEFAULT_OVERLAP = timedelta(hours=2)
#: fast readers first; sqlalchemy is always the last resort
READERS = ("duckdb", "connectorx", "sqlalchemy")
#: ``pushdown``: PostgreSQL source into a DuckDB warehouse as SQL inside the warehouse
READER_CHOICES = settings.READER_CHOICES

OPS_DDL = (
    """create table if not exists ops.extract_batches (
        run_id varchar, batch_id varchar, entity varchar, as_of date,
        window_start timestamp, window_end timestamp, is_initial boolean,
        rows_extracted bigint, rows_duplicate bigint, rows_staged bigint,
        rows_quarantined bigint, seconds double precision, loaded_at timestamp)""",
)

QUARANTINE_COLUMNS = {
    "_batch_id": "text",
    "_as_of": "date",
    "_key": "text",
    "_rule": "text",
    "_reason": "text",
    "_record": "text",
    "_loaded_at": "timestamp",
}


class SourceError(RuntimeError):
    """The source cannot be read (unreachable, missing table, schema drift)."""


class BatchRejected(RuntimeError):
    """Gate 1 refused a whole batch; nothing of it was written."""


class _ReaderFailed(RuntimeError):
    """A fast reader failed; the batch is rolled back and read again with the next one."""


@dataclass
class BatchStats:
    entity: str
    batch_id: str
    as_of: date
    window_start: datetime | None
    window_end: datetime
    is_initial: bool
    rows_extracted: int = 0
    rows_duplicate: int = 0
    rows_staged: int = 0
    rows_quarantined: int = 0
    seconds: float = 0.0
    quarantine_rules: dict[str, int] = field(default_factory=dict)
    reader: str = ""

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("window_start", "window_end", "as_of"):
            d[k] = d[k].isoformat() if d[k] is not None else None
        return d


# -- settings ------------------------------------------------------------------------


def overlap_from_env() -> timedelta:
    return settings.extract_overlap()


def chunk_rows_from_env() -> int:
    return settings.extract_chunk_rows()


def reader_from_env() -> str:
    return settings.extract_reader()


# -- the source and its readers ------------------------------------------------------


def source_engine(url: str):
    from sqlalchemy import create_engine

    return create_engine(sqlalchemy_url(url), pool_pre_ping=True)


def _dialect(engine) -> str:
    name = engine.dialect.name
    return "mysql" if name in ("mysql", "mariadb") else name


def _plain_url(engine) -> str:
    """The engine's URL without the SQLAlchemy driver (what libpq and connectorx read)."""
    url = engine.url.set(drivername={"postgresql": "postgresql", "mysql": "mysql"}[_dialect(engine)])
    return url.render_as_string(hide_password=False)


def _fast_reader_available(name: str) -> bool:
    try:
        if name == "connectorx":
            import connectorx  # noqa: F401
        elif name == "duckdb":
            _postgres_extension_path()
        return True
    except Exception:  # noqa: BLE001 - missing optional package: fall back quietly
        return False


def reader_chain(engine, preferred: str | None = None) -> list[str]:
    """The readers to try for this source, fastest first, ending with sqlalchemy."""
    preferred = (preferred or reader_from_env()).lower()
    if preferred == "pushdown":  # not possible here (see pushdown_possible): the fastest chunked reader
        preferred = "auto"
    dialect = _dialect(engine)
    supported = {"postgresql": ["duckdb", "connectorx"], "mysql": ["connectorx"]}.get(dialect, [])
    if preferred == "sqlalchemy":
        return ["sqlalchemy"]
    if preferred != "auto":
        if preferred not in supported:
            raise ValueError(f"reader {preferred!r} cannot read a {dialect} source "
                             f"(it reads: {', '.join(supported + ['sqlalchemy'])})")
        return [preferred, "sqlalchemy"]
    return [r for r in supported if _fast_reader_available(r)] + ["sqlalchemy"]


def source_columns(engine, entity: Entity) -> list[str]:
    from sqlalchemy import text

    try:
        with engine.connect() as conn:
            result = conn.execute(text(f"select * from {ident(entity.name)} where 1 = 0"))
            return list(result.keys())
    except Exception as exc:  # noqa: BLE001 - turned into one clear line
        raise SourceError(f"cannot read source table {entity.name!r}: {_first_line(exc)}") from exc


def _ts_text(v) -> str:
    """A timestamp as the literal text every engine here parses (microseconds kept)."""
    return pd.Timestamp(v).strftime("%Y-%m-%d %H:%M:%S.%f")


def _bound(engine, value: datetime | None):
    if value is None:
        return None
    if engine.dialect.name == "sqlite":
        return _ts_text(value)
    return value


def _window_sql(entity: Entity, lo: datetime | None, hi: datetime, *, literal: bool) -> tuple[str, dict]:
    """The batch query: the contract columns of rows changed in [lo, hi), in a fixed order.

    ``literal`` writes the bounds into the SQL (connectorx and the DuckDB scanner take no
    parameters); they are formatted datetimes, never user input."""
    upd = ident(entity.updated_at)
    cols = ", ".join(ident(c) for c in entity.columns)

    def lit(v: datetime) -> str:
        return f"'{_ts_text(v)}'"

    where = f"{upd} < " + (lit(hi) if literal else ":hi")
    params: dict = {} if literal else {"hi": hi}
    if lo is not None:
        where += f" and {upd} >= " + (lit(lo) if literal else ":lo")
        if not literal:
            params["lo"] = lo
    sql = f"select {cols} from {ident(entity.name)} where {where} order by {upd}, {ident(entity.key)}"
    return sql, params


# canonical frames: what every reader yields for a typed source -----------------------

def _arrow_target(logical: str):
    import pyarrow as pa

    return {
        "int": pa.int64(), "money": pa.float64(), "text": pa.string(),
        "date": pa.timestamp("us"), "timestamp": pa.timestamp("us"), "bool": pa.bool_(),
    }[logical]


def _arrow_to_canonical(table, entity: Entity) -> pd.DataFrame:
    """An Arrow batch of a typed source (PostgreSQL, MySQL/MariaDB) as the canonical frame:
    int → Int64, money → float64, text → object (str/None), date and timestamp →
    naive datetime64[us] (UTC), bool → boolean."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out: dict[str, pd.Series] = {}
    for name, logical in entity.columns.items():
        arr = table.column(name)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if pa.types.is_timestamp(arr.type) and arr.type.tz is not None:
            arr = pc.cast(arr, pa.timestamp("us", tz="UTC")).cast(pa.int64()).cast(pa.timestamp("us"))
        if logical == "text":
            if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
                arr = arr.cast(pa.string())
            out[name] = pd.Series(arr.to_numpy(zero_copy_only=False), dtype=object)
            continue
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            # a text column where the contract wants another type: hand gate 1 the text,
            # it parses what it can and quarantines the rest under parse:<column>
            out[name] = pd.Series(arr.to_numpy(zero_copy_only=False), dtype=object)
            continue
        if logical == "date" and pa.types.is_timestamp(arr.type):
            arr = pc.floor_temporal(arr, unit="day")
        if pa.types.is_decimal(arr.type) and logical != "int":
            # Arrow's decimal → double cast is not correctly rounded (1590.59 becomes
            # 1590.5900000000001); parsing the decimal's text is, like every driver's float()
            arr = arr.cast(pa.string())
        arr = arr.cast(_arrow_target(logical))
        if logical == "int":
            out[name] = arr.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
        elif logical == "bool":
            out[name] = arr.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get)
        elif logical == "money":
            out[name] = pd.Series(arr.to_numpy(zero_copy_only=False), dtype="float64")
        else:
            out[name] = pd.Series(arr.to_numpy(zero_copy_only=False).astype("datetime64[us]"))
    return pd.DataFrame(out)


def _rows_to_canonical(rows: list, columns: list[str], entity: Entity) -> pd.DataFrame:
    import pyarrow as pa

    arrays = {}
    for i, name in enumerate(columns):
        values = [r[i] for r in rows]
        arrays[name] = pa.array(values)
    return _arrow_to_canonical(pa.table(arrays), entity)


def _rechunk(batches: Iterable, chunk_rows: int) -> Iterator:
    """Arrow record batches regrouped into tables of exactly chunk_rows rows (the last shorter)."""
    import pyarrow as pa

    pending: list = []
    held = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        held += batch.num_rows
        while held >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            pending = rest.to_batches() if rest.num_rows else []
            held = rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


def _iter_sqlalchemy(engine, entity: Entity, lo, hi, chunk_rows: int) -> Iterator[pd.DataFrame]:
    from sqlalchemy import text

    sql, params = _window_sql(entity, lo, hi, literal=False)
    params = {k: _bound(engine, v) for k, v in params.items()}
    typed = _dialect(engine) in ("postgresql", "mysql")
    with engine.connect().execution_options(stream_results=True, max_row_buffer=chunk_rows) as conn:
        result = conn.execute(text(sql), params)
        cols = list(result.keys())
        while True:
            rows = result.fetchmany(chunk_rows)
            if not rows:
                break
            if typed:
                yield _rows_to_canonical(rows, cols, entity)
            else:  # SQLite and the like: hand gate 1 the values as stored
                yield pd.DataFrame.from_records(rows, columns=cols, coerce_float=False)


#: connectorx reads a window in pages of this many chunks (keyset pagination on
#: (updated_at, key)): its Arrow stream reads ahead of a slower consumer without bound,
#: so one query per page is what keeps its memory flat however large the table
CONNECTORX_PAGE_CHUNKS = 4


def _iter_connectorx(engine, entity: Entity, lo, hi, chunk_rows: int) -> Iterator[pd.DataFrame]:
    import connectorx as cx
    import pyarrow as pa

    page_rows = chunk_rows * CONNECTORX_PAGE_CHUNKS
    base, _ = _window_sql(entity, lo, hi, literal=True)
    select, order = base.split(" order by ")
    upd, key = ident(entity.updated_at), ident(entity.key)
    after: tuple[str, int] | None = None

    def pages() -> Iterator:
        nonlocal after
        while True:
            where = ""
            if after is not None:
                ts, k = after
                where = f" and ({upd} > '{ts}' or ({upd} = '{ts}' and {key} > {int(k)}))"
            table = cx.read_sql(_plain_url(engine), f"{select}{where} order by {order} limit {page_rows}",
                                return_type="arrow")
            if table.num_rows == 0:
                return
            last = table.slice(table.num_rows - 1)
            ts_value = last.column(entity.updated_at)[0].as_py()
            after = (_ts_text(ts_value), last.column(entity.key)[0].as_py())
            yield from (table.to_batches() if isinstance(table, pa.Table) else [table])
            if table.num_rows < page_rows:
                return

    for table in _rechunk(pages(), chunk_rows):
        yield _arrow_to_canonical(table, entity)


def _postgres_extension_path() -> Path:
    """The postgres extension binary shipped by the duckdb-extension-postgres-scanner wheel."""
    import duckdb
    import duckdb_extension_postgres_scanner as pkg

    root = Path(pkg.__file__).parent / "extensions"
    exact = root / f"v{duckdb.__version__}" / "postgres_scanner.duckdb_extension"
    if exact.exists():
        return exact
    found = sorted(root.glob("**/postgres_scanner.duckdb_extension"))
    if not found:
        raise FileNotFoundError(f"no postgres_scanner.duckdb_extension under {root}")
    return found[-1]


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _in_memory_duckdb(**config):
    """An in-memory DuckDB with the postgres extension loaded from site-packages (no
    download, no ~/.duckdb); ``config`` adds to the DuckDB settings."""
    import duckdb

    con = duckdb.connect(":memory:", config={
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "extension_directory": str(Path(tempfile.gettempdir()) / "crm-duckdb-extensions"),
        **config,
    })
    try:
        con.execute(f"LOAD '{_postgres_extension_path()}'")
    except Exception:
        con.close()
        raise
    return con


def _duckdb_postgres_reader(url: str):
    """An in-memory DuckDB (``_in_memory_duckdb``) with the source attached read-only as
    ``src``."""
    con = _in_memory_duckdb(memory_limit=settings.extract_duckdb_memory(), threads=2)
    try:
        con.execute(f"ATTACH {_sql_string(url)} AS src (TYPE postgres, READ_ONLY)")
    except Exception:
        con.close()
        raise
    return con


def _iter_duckdb(engine, entity: Entity, lo, hi, chunk_rows: int) -> Iterator[pd.DataFrame]:
    sql, _ = _window_sql(entity, lo, hi, literal=True)
    con = _duckdb_postgres_reader(_plain_url(engine))
    try:
        # postgres_query runs the query (and its order by) in PostgreSQL and streams it
        result = con.execute(f"select * from postgres_query('src', {_sql_string(sql)})")
        reader = result.to_arrow_reader(chunk_rows) if hasattr(result, "to_arrow_reader") else result.fetch_record_batch(chunk_rows)
        for table in _rechunk(reader, chunk_rows):
            yield _arrow_to_canonical(table, entity)
    finally:
        con.close()


_READ = {"sqlalchemy": _iter_sqlalchemy, "connectorx": _iter_connectorx, "duckdb": _iter_duckdb}


def iter_source_chunks(
    engine, entity: Entity, lo: datetime | None, hi: datetime, chunk_rows: int = DEFAULT_CHUNK_ROWS,
    reader: str = "sqlalchemy",
) -> Iterator[pd.DataFrame]:
    """Rows of one entity changed in [lo, hi), ordered by (updated_at, key), in chunks of
    exactly chunk_rows rows (the last one shorter), read with ``reader``.

    A failing fast reader raises ``_ReaderFailed`` (the caller falls back); a failing
    sqlalchemy read raises ``SourceError``."""
    try:
        yield from _READ[reader](engine, entity, lo, hi, chunk_rows)
    except (SourceError, GeneratorExit):
        raise
    except Exception as exc:  # noqa: BLE001
        if reader != "sqlalchemy":
            raise _ReaderFailed(f"{reader} reader: {redact(_first_line(exc))}") from exc
        raise SourceError(f"reading {entity.name} from the source failed: {redact(_first_line(exc))}") from exc


# -- row hashes ----------------------------------------------------------------------

_NULL = "\x00"
_SEP = "\x1f"


def _is_na(v) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, float) and v != v:
        return True
    return isinstance(v, np.datetime64) and np.isnat(v)


def _str_elementwise(values: np.ndarray) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values.tolist()):
        if _is_na(v):
            out[i] = None
        elif isinstance(v, bool):
            out[i] = "1" if v else "0"
        elif isinstance(v, bytes):
            out[i] = v.decode("utf-8", "replace")
        elif isinstance(v, (datetime, pd.Timestamp)):
            out[i] = pd.Timestamp(v).strftime("%Y-%m-%d %H:%M:%S.%f")
        else:
            out[i] = str(v)
    return out


def _canon_numeric(f: np.ndarray) -> np.ndarray:
    """float64 values as text: integral ones as integers, others in shortest form."""
    import pyarrow as pa

    f = f + 0.0  # -0.0 → 0.0
    nan = np.isnan(f)
    integral = ~nan & np.isfinite(f) & (np.floor(f) == f) & (np.abs(f) < 2.0**53)
    out = np.empty(len(f), dtype=object)
    if integral.any():
        out[integral] = pa.array(f[integral].astype(np.int64)).cast(pa.string()).to_numpy(zero_copy_only=False)
    other = ~nan & ~integral
    if other.any():
        out[other] = pa.array(f[other]).cast(pa.string()).to_numpy(zero_copy_only=False)
    out[nan] = None
    return out


def _canon_money(f: np.ndarray) -> np.ndarray:
    """Amounts (DECIMAL(14,2)) as text to the cent with two decimals, as DuckDB writes a
    DECIMAL(18,2): 100.00, 12.50, 0.05, -12.30. The warehouse computes the same text in
    SQL (``money_text_sql``), so both extraction paths hash a row alike."""
    with np.errstate(invalid="ignore"):
        fixed = np.isfinite(f) & (np.abs(f) < 1e15)
    out = _canon_numeric(np.where(fixed, np.nan, f))  # out-of-range values keep the generic form
    if fixed.any():
        import pyarrow as pa
        import pyarrow.compute as pc

        cents = np.rint(f[fixed] * 100.0).astype(np.int64)
        units = np.abs(cents)
        body = pc.binary_join_element_wise(
            pa.array(units // 100).cast(pa.string()),
            pc.utf8_lpad(pa.array(units % 100).cast(pa.string()), width=2, padding="0"), ".")
        sign = pa.array(np.where(cents < 0, "-", ""), type=pa.string())
        out[fixed] = pc.binary_join_element_wise(sign, body, "").to_numpy(zero_copy_only=False)
    return out


def _canon_datetime(values: pd.Series, unit: str) -> np.ndarray:
    """datetime64 values as ISO text, the date part only for dates (unit D)."""
    s = values
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    a = s.to_numpy(dtype="datetime64[us]")
    nat = np.isnat(a)
    text = np.datetime_as_string(a.astype("datetime64[D]") if unit == "D" else a, unit=unit)
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


def _canon(s: pd.Series, logical: str | None) -> np.ndarray:
    """One column as canonical text (None for null): the same value gives the same text
    whatever engine or reader produced it (int 5, 5.0, Decimal('5.00'); datetime or its
    ISO text; True, 1)."""
    dtype = s.dtype
    n = len(s)
    if logical in ("date", "timestamp"):
        unit = "D" if logical == "date" else "us"
        if pd.api.types.is_datetime64_any_dtype(dtype):
            return _canon_datetime(s, unit)
        obj = s.astype(object)
        null = obj.isna().to_numpy(dtype=bool)
        parsed = pd.to_datetime(obj.where(~null, None).map(
            lambda v: v if isinstance(v, (str, date, datetime, pd.Timestamp, np.datetime64)) else None),
            errors="coerce", format="ISO8601", utc=True).dt.tz_localize(None)
        out = _canon_datetime(parsed, unit)
        unparsed = ~null & parsed.isna().to_numpy()
        if unparsed.any():
            out[unparsed] = _str_elementwise(obj.to_numpy()[unparsed])
        return out
    if pd.api.types.is_bool_dtype(dtype):
        null = s.isna().to_numpy()
        out = np.where(s.fillna(False).to_numpy(dtype=bool), "1", "0").astype(object)
        out[null] = None
        return out
    if pd.api.types.is_integer_dtype(dtype):
        import pyarrow as pa

        if logical == "money":
            return _canon_money(s.to_numpy(dtype="float64", na_value=np.nan))
        return pa.array(s, from_pandas=True).cast(pa.string()).to_numpy(zero_copy_only=False)
    if pd.api.types.is_float_dtype(dtype):
        f = s.to_numpy(dtype="float64", na_value=np.nan)
        if logical == "money":  # the contract type is DECIMAL(14,2): compare to the cent
            return _canon_money(f)
        return _canon_numeric(f)
    if logical == "text" or dtype == object or pd.api.types.is_string_dtype(dtype):
        obj = s.astype(object)
        kind = pd.api.types.infer_dtype(obj, skipna=True)
        if kind in ("string", "empty"):
            out = obj.to_numpy(dtype=object).copy()
            out[obj.isna().to_numpy()] = None
            return out
        if logical != "text":
            if kind == "integer":
                return _canon(obj.astype("Int64"), logical)
            if kind in ("floating", "mixed-integer-float", "decimal"):
                num = pd.to_numeric(obj.map(lambda v: str(v) if isinstance(v, Decimal) else v), errors="coerce")
                return _canon(pd.Series(num.to_numpy(dtype="float64", na_value=np.nan)), logical)
            if kind == "boolean":
                return _canon(obj.astype("boolean"), logical)
            if kind in ("datetime", "datetime64"):
                return _canon(obj, "timestamp")
            if kind == "date":
                return _canon(obj, "date")
        return _str_elementwise(obj.to_numpy(dtype=object))
    return _str_elementwise(s.to_numpy(dtype=object)) if n else np.empty(0, dtype=object)


def _join_columns(parts: list[np.ndarray], n: int) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays = [pc.fill_null(pa.array(p, type=pa.string()), _NULL) for p in parts]
    if not arrays:
        return np.full(n, "", dtype=object)
    return pc.binary_join_element_wise(*arrays, _SEP).to_numpy(zero_copy_only=False)


def _hash_text(joined: np.ndarray) -> np.ndarray:
    """The MD5 of each string's UTF-8 bytes as 32 hex characters, computed by DuckDB over
    an Arrow array: the same function the warehouse applies in ``row_hash_sql``."""
    import duckdb
    import pyarrow as pa

    try:
        arr = pa.array(joined, type=pa.string())
    except (UnicodeEncodeError, pa.ArrowException):  # lone surrogates: hash their escaped form
        arr = pa.array([t.encode("utf-8", "surrogatepass").decode("utf-8", "backslashreplace")
                        for t in joined.tolist()], type=pa.string())
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
    n = len(df)
    if types is None:
        from crm_pipeline.contract import ENTITIES as _ALL

        types = {}
        for e in _ALL:
            if set(columns) <= set(e.columns):
                types = dict(e.columns)
                break
    parts = [_canon(df[c], types.get(c)) for c in columns]
    hashes = _hash_text(_join_columns(parts, n)) if n else np.empty(0, dtype=object)
    return pd.Series(hashes, index=df.index, dtype=object)


def key_text(series: pd.Series) -> np.ndarray:
    """The business key as text, the way the warehouse casts it (``cast(key as varchar)``)."""
    return _canon(series, "int")


# -- the warehouse side --------------------------------------------------------------


def ensure_tables(wh: Warehouse) -> None:
    wh.ensure_raw_tables()
    for ddl in OPS_DDL:
        wh.execute(ddl)
    for entity in ENTITIES:
        body = ", ".join(f"{c} {wh.sql_type(t)}" for c, t in QUARANTINE_COLUMNS.items())
        wh.execute(f"create table if not exists quarantine.{ident(entity.name)} ({body})")


def watermark(wh: Warehouse, entity: Entity, before: datetime) -> datetime | None:
    """The newest change that landed in raw before ``before`` (never the wall clock)."""
    value = wh.scalar(
        f"select max({ident(entity.updated_at)}) from raw.{ident(entity.name)} where {ident(entity.updated_at)} < ?",
        (before,),
    )
    return pd.Timestamp(value).to_pydatetime() if value is not None else None


def index_raw_windows(wh: Warehouse) -> None:
    """PostgreSQL warehouse: index each raw table on its change time, once its first load
    is in (an index built before a bulk load slows every insert). A night's watermark
    (``watermark``) and its look-up of the versions already in the window
    (``_existing_versions``) then read the window through the index instead of scanning
    every version in raw. DuckDB scans its own tables in parallel and keeps no such index."""
    if wh.kind != "postgres":
        return
    for entity in ENTITIES:
        upd = ident(entity.updated_at)
        wh.execute(f"create index if not exists {ident(entity.name + '__' + entity.updated_at)} "
                   f"on raw.{ident(entity.name)} ({upd})")


def extraction_window(wh: Warehouse, entity: Entity, as_of: date, overlap: timedelta) -> tuple[datetime | None, datetime]:
    """[start, end) of the batch for ``as_of``: from the watermark (or the start of the
    day, whichever is earlier) minus the overlap, to the end of the day; no start for
    the first load."""
    window_end = datetime.combine(as_of + timedelta(days=1), datetime.min.time())
    interval_start = window_end - timedelta(days=1)
    mark = watermark(wh, entity, window_end)
    if mark is None:
        return None, window_end
    return min(mark, interval_start) - overlap, window_end


def recent_batch_sizes(wh: Warehouse, entity: Entity, as_of: date, n: int = 7) -> list[int]:
    rows = wh.query(
        "select rows_extracted from ops.extract_batches where entity = ? and not is_initial and as_of < ? "
        "order by as_of desc limit ?",
        (entity.name, as_of, n),
    )
    return [int(r[0]) for r in rows]


def _existing_versions(wh: Warehouse, entity: Entity, lo: datetime | None, hi: datetime) -> pd.Index:
    """``key<US>hash`` of every version already in raw inside the window."""
    hashed = stored_hash_sql(entity) if wh.kind == "duckdb" else "_row_hash"
    sql = (f"select cast({ident(entity.key)} as varchar), {hashed} from raw.{ident(entity.name)} "
           f"where {ident(entity.updated_at)} < ?")
    params: list = [hi]
    if lo is not None:
        sql += f" and {ident(entity.updated_at)} >= ?"
        params.append(lo)
    rows = wh.query(sql, params)
    return pd.Index(sorted({f"{k}{_SEP}{h}" for k, h in rows}), dtype=object)


def _key_text(series: pd.Series) -> pd.Series:
    return pd.Series(key_text(series), index=series.index, dtype=object)


# -- test hook -----------------------------------------------------------------------


def _fault_point(name: str, entity: Entity) -> None:
    """Test hook: ``CRM_FAULT_INJECT=extract:<name>[:<entity>]`` raises SourceError here,
    once: the first time it fires it leaves a marker file (``CRM_FAULT_MARKER``, default
    ``$CRM_HOME/.fault-extract-<name>.fired``) and later attempts pass."""
    spec = settings.fault_inject()
    parts = spec.split(":")
    if len(parts) < 2 or parts[0] != "extract" or parts[1] != name:
        return
    if len(parts) > 2 and parts[2] and parts[2] != entity.name:
        return
    marker = settings.fault_marker(f".fault-extract-{name}.fired")
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{entity.name} {datetime.now(timezone.utc).isoformat()}\n")
    raise SourceError(f"fault injected at extract:{name} ({entity.name}): the source went away mid-extract")


# -- the batch -----------------------------------------------------------------------


def extract_entity(
    wh: Warehouse,
    engine,
    entity: Entity,
    *,
    as_of: date,
    run_id: str,
    overlap: timedelta | None = None,
    chunk_rows: int | None = None,
    known_customer_ids: Callable[[], set[int]] | None = None,
    gate_settings=None,
    on_progress: Callable[[int], None] | None = None,
    reader: str | None = None,
    pushdown: tuple[Warehouse, str] | None = None,
) -> BatchStats:
    """Extract one entity's batch for the day ``as_of`` and commit it atomically, with
    DuckDB's ``memory_limit`` at ``CRM_DUCKDB_MEMORY_LIMIT`` meanwhile.

    With ``pushdown`` (the warehouse connection to run SQL in and the source schema, from
    ``sql_warehouse``) the batch runs as SQL in DuckDB when the entity's source types
    allow; otherwise, and after a failure there, in chunks."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(wh.memory_limit())
        if pushdown is not None and pushdown[0] is not wh:
            stack.enter_context(pushdown[0].memory_limit())
        return _extract_entity(wh, engine, entity, as_of=as_of, run_id=run_id, overlap=overlap,
                               chunk_rows=chunk_rows, known_customer_ids=known_customer_ids,
                               gate_settings=gate_settings, on_progress=on_progress, reader=reader,
                               pushdown=pushdown)


def _extract_entity(wh: Warehouse, engine, entity: Entity, *, as_of: date, run_id: str, overlap, chunk_rows,
                    known_customer_ids, gate_settings, on_progress, reader, pushdown) -> BatchStats:
    from crm_pipeline import gates

    overlap = overlap_from_env() if overlap is None else overlap
    chunk_rows = chunk_rows_from_env() if chunk_rows is None else int(chunk_rows)

    # batch-level contract first: a renamed or missing column stops the run before any read
    cols = source_columns(engine, entity)
    verdict = gates.gate1_batch(entity, cols, rows=0, quarantined=0, recent_rows=[], settings=gate_settings, incremental=False)
    if not verdict.ok:
        raise BatchRejected("; ".join(verdict.failures))
    lazy_ids = known_customer_ids if known_customer_ids and entity.name != "customers" else None

    if pushdown is not None and pushdown[0] is not wh and wh.scalar(
            f"select count(*) from (select 1 from raw.{ident(entity.name)} limit 1) r"):
        # through the bridge to a PostgreSQL warehouse only a first load pays off: a
        # night's batch is small, and DuckDB would pull every watermark and overlap
        # comparison across the wire rather than let PostgreSQL answer it
        pushdown = None
    if pushdown is not None:
        import duckdb

        try:
            stats = _extract_pushdown(pushdown[0], engine, entity, schema=pushdown[1], as_of=as_of, run_id=run_id,
                                      overlap=overlap, columns=cols, gate_settings=gate_settings,
                                      customer_ids=lazy_ids, on_progress=on_progress)
        except duckdb.Error as exc:
            log.warning("%s: extraction in SQL failed (%s); the batch was rolled back, reading it in chunks",
                        entity.name, redact(_first_line(exc)))
            stats = None
        if stats is not None:
            return stats
    customer_ids = lazy_ids() if lazy_ids else None
    chain = reader_chain(engine, reader)
    for i, name in enumerate(chain):
        try:
            return _extract_batch(wh, engine, entity, name, as_of=as_of, run_id=run_id, overlap=overlap,
                                  chunk_rows=chunk_rows, customer_ids=customer_ids, columns=cols,
                                  gate_settings=gate_settings, on_progress=on_progress)
        except _ReaderFailed as exc:
            log.warning("%s: %s; the batch was rolled back, reading it again with the %s reader",
                        entity.name, exc, chain[i + 1])
    raise AssertionError("unreachable: the sqlalchemy reader never raises _ReaderFailed")  # pragma: no cover


def _landing_table(entity: Entity, batch_id: str) -> str:
    """The name of the batch's landing tables: ``raw.<name>`` holds its good rows and
    ``quarantine.<name>`` its quarantined ones."""
    return f"{LANDING_PREFIX}{entity.name}_{batch_id.rsplit('-', 1)[-1]}"


def drop_landing_tables(wh: Warehouse, entity: Entity | None = None) -> list[str]:
    """Drop landing tables left by an attempt that did not finish (a crash, a killed task).

    Their rows never reached ``raw``; dropping them is all the clean-up a retry needs."""
    prefix = LANDING_PREFIX + (f"{entity.name}_" if entity else "")
    dropped = []
    for schema in ("raw", "quarantine"):
        for table in wh.tables(schema):
            if table.startswith(prefix):
                wh.execute(f"drop table if exists {ident(schema)}.{ident(table)}")
                dropped.append(f"{schema}.{table}")
    if dropped:
        log.info("dropped landing tables of an unfinished attempt: %s", ", ".join(dropped))
    return dropped


@contextlib.contextmanager
def _open_batch(wh: Warehouse, entity: Entity, reader: str, *, as_of: date,
                overlap: timedelta) -> Iterator[tuple[BatchStats, str, datetime, list[str]]]:
    """A new batch: its window (from the watermark), its empty landing tables (after
    dropping those of an unfinished attempt) and its load time. Yields (stats, landing
    table name, loaded_at, scratch tables); the landing and scratch tables are dropped
    when the block ends, whatever happened. Logs the batch's counts on success."""
    batch_id = f"{entity.name}-{as_of.isoformat()}-{uuid.uuid4().hex[:8]}"
    landing = _landing_table(entity, batch_id)
    drop_landing_tables(wh, entity)
    purge_unchecked_rows(wh, entity)
    window_start, window_end = extraction_window(wh, entity, as_of, overlap)
    stats = BatchStats(entity.name, batch_id, as_of, window_start, window_end, window_start is None, reader=reader)
    loaded_at = datetime.now(timezone.utc).replace(tzinfo=None)
    scratch: list[str] = [f"{schema}.{ident(landing)}" for schema in ("raw", "quarantine")]
    for schema in ("raw", "quarantine"):
        wh.execute(f"create table {schema}.{ident(landing)} as select * from {schema}.{ident(entity.name)} where 1 = 0")
    try:
        yield stats, landing, loaded_at, scratch
    finally:
        with contextlib.suppress(Exception):
            for table in scratch:
                wh.execute(f"drop table if exists {table}")
    log.info(
        "extracted %s with %s: %d rows (%d duplicate, %d staged, %d quarantined) window [%s, %s) in %.1fs",
        entity.name, reader, stats.rows_extracted, stats.rows_duplicate, stats.rows_staged,
        stats.rows_quarantined, stats.window_start, stats.window_end, stats.seconds,
    )


def _extract_batch(wh: Warehouse, engine, entity: Entity, reader: str, *, as_of: date, run_id: str,
                   overlap: timedelta, chunk_rows: int, customer_ids, columns: list[str],
                   gate_settings, on_progress) -> BatchStats:
    """Read, check and land the batch chunk by chunk, then publish it to ``raw`` at once.

    Every chunk is written to the batch's landing tables and committed straight away, so
    neither the process nor the warehouse holds more than a chunk of uncommitted rows
    (memory stays flat however large the table). The landing tables move into
    ``raw``/``quarantine`` in one transaction together with the batch's row in
    ``ops.extract_batches``: a batch is complete in ``raw`` or absent, and a retry after a
    failure drops the landing tables and starts again."""
    started = time.perf_counter()
    with _open_batch(wh, entity, reader, as_of=as_of, overlap=overlap) as (stats, landing, loaded_at, _):
        _land_chunks(wh, engine, entity, reader, stats, landing=landing, loaded_at=loaded_at,
                     chunk_rows=chunk_rows, customer_ids=customer_ids, gate_settings=gate_settings,
                     on_progress=on_progress)
        _commit_batch(wh, entity, stats, landing=landing, run_id=run_id, columns=columns,
                      loaded_at=loaded_at, gate_settings=gate_settings, started=started)
    return stats


def _land_chunks(wh: Warehouse, engine, entity: Entity, reader: str, stats: BatchStats, *, landing: str,
                 loaded_at: datetime, chunk_rows: int, customer_ids, gate_settings, on_progress) -> None:
    from crm_pipeline import gates

    contract_cols = list(entity.columns)
    seen = _existing_versions(wh, entity, stats.window_start, stats.window_end)
    previous = pd.Index([], dtype=object)  # versions of the last chunk (in-batch repeats are adjacent)
    first_chunk = True
    for chunk in iter_source_chunks(engine, entity, stats.window_start, stats.window_end, chunk_rows, reader):
        stats.rows_extracted += len(chunk)
        chunk = chunk[contract_cols]
        hashes = row_hashes(chunk, contract_cols, entity.columns)
        versions = pd.Index(_join_columns([key_text(chunk[entity.key]), hashes.to_numpy(dtype=object)], len(chunk)),
                            dtype=object)
        dup = np.asarray(versions.isin(seen) | versions.isin(previous) | versions.duplicated(keep="first"))
        previous = versions
        stats.rows_duplicate += int(dup.sum())
        if not dup.all():
            fresh = chunk[~dup]
            result = gates.gate1_rows(entity, fresh, customer_ids, as_of=stats.as_of, settings=gate_settings)
            good = result.good.copy()
            good["_row_hash"] = hashes[~dup].loc[good.index].to_numpy()
            bad = result.quarantined
            stats.rows_staged += len(good)
            stats.rows_quarantined += len(bad)
            for rule, k in bad["_rule"].value_counts().items() if len(bad) else ():
                stats.quarantine_rules[rule] = stats.quarantine_rules.get(rule, 0) + int(k)
            _write_chunk(wh, entity, good, bad, landing=landing, batch_id=stats.batch_id, as_of=stats.as_of,
                         is_initial=stats.is_initial, window_start=stats.window_start,
                         window_end=stats.window_end, loaded_at=loaded_at)
        if first_chunk:
            first_chunk = False
            _fault_point("after_first_chunk", entity)
        if on_progress:
            on_progress(len(chunk))


def _commit_batch(wh: Warehouse, entity: Entity, stats: BatchStats, *, landing: str, run_id: str,
                  columns: list[str], loaded_at: datetime, gate_settings, started: float,
                  also: str | None = None) -> None:
    """Batch-level gate 1, then the landing tables into raw/quarantine in one transaction
    (with ``also``, one more statement that writes the batch's rows into raw)."""
    from crm_pipeline import gates

    verdict = gates.gate1_batch(
        entity,
        columns,
        rows=stats.rows_extracted - stats.rows_duplicate,
        quarantined=stats.rows_quarantined,
        recent_rows=recent_batch_sizes(wh, entity, stats.as_of),
        settings=gate_settings,
        incremental=not stats.is_initial,
    )
    if not verdict.ok:
        raise BatchRejected("; ".join(verdict.failures))
    _fault_point("before_commit", entity)
    with wh.transaction():
        if also:
            wh.execute(also)
        for schema in ("raw", "quarantine"):
            wh.execute(f"insert into {ident(schema)}.{ident(entity.name)} "
                       f"select * from {ident(schema)}.{ident(landing)}")
            wh.execute(f"drop table {ident(schema)}.{ident(landing)}")
        stats.seconds = round(time.perf_counter() - started, 3)
        wh.execute(
            "insert into ops.extract_batches values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id, stats.batch_id, entity.name, stats.as_of, stats.window_start, stats.window_end,
                stats.is_initial, stats.rows_extracted, stats.rows_duplicate, stats.rows_staged,
                stats.rows_quarantined, stats.seconds, loaded_at,
            ),
        )


def _write_chunk(wh: Warehouse, entity: Entity, good: pd.DataFrame, bad: pd.DataFrame, *, landing: str,
                 batch_id: str, as_of: date, is_initial: bool, window_start, window_end,
                 loaded_at: datetime) -> None:
    """One chunk into the landing tables, committed on its own."""
    if len(good):
        good["_batch_id"] = batch_id
        good["_as_of"] = as_of
        if is_initial:
            good["_visible_from"] = pd.to_datetime(good[entity.updated_at]).dt.date
        else:
            good["_visible_from"] = as_of
        good["_window_start"] = window_start
        good["_window_end"] = window_end
        good["_loaded_at"] = loaded_at
        wh.append_df("raw", landing, good)
    if len(bad):
        bad = bad[["_key", "_rule", "_reason", "_record"]].copy()
        bad["_batch_id"] = batch_id
        bad["_as_of"] = as_of
        bad["_loaded_at"] = loaded_at
        wh.append_df("quarantine", landing, bad)


# -- pushdown: a PostgreSQL source, as SQL in DuckDB -----------------------------------

SOURCE_ALIAS = "crm_src"
#: appended to the batch id of a first load's suspect rows while they wait in raw for the
#: exact gate (see ``_initial_load_direct``); such rows are never visible to a model
SUSPECT_MARK = "#suspect"
#: the ``_visible_from`` of a suspect row waiting in raw: later than any run date
NEVER_VISIBLE = "9999-12-31"
#: source column types (DuckDB's names for what the postgres scanner reads) that need no
#: parsing for each contract type; any other type sends the entity down the chunked path
_PUSHDOWN_TYPES = {
    "int": ("BIGINT", "INTEGER", "SMALLINT", "HUGEINT", "UBIGINT", "UINTEGER", "USMALLINT", "TINYINT"),
    "money": ("DECIMAL", "DOUBLE", "FLOAT", "BIGINT", "INTEGER", "SMALLINT"),
    "text": ("VARCHAR",),
    "date": ("DATE",),
    "timestamp": ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"),
    "bool": ("BOOLEAN",),
}


def money_text_sql(expr: str) -> str:
    """SQL twin of ``_canon_money``: to the cent, two decimals."""
    return f"cast(cast({expr} as decimal(18,2)) as varchar)"


def _canon_sql(column: str, logical: str, source_type: str, alias: str | None = None) -> str:
    c = f"{alias}.{ident(column)}" if alias else ident(column)
    if logical == "int":
        return f"cast({c} as varchar)"
    if logical == "money":
        return money_text_sql(c)
    if logical == "date":
        return f"cast({c} as varchar)"
    if logical == "timestamp":
        ts = f"timezone('UTC', {c})" if source_type == "TIMESTAMP WITH TIME ZONE" else f"cast({c} as timestamp)"
        return f"cast({ts} as varchar)"
    if logical == "bool":
        return f"(case when {c} then '1' else '0' end)"
    return c


def row_hash_sql(entity: Entity, source_types: dict[str, str], alias: str | None = None) -> str:
    """SQL twin of ``row_hashes``: md5 of the canonical texts joined by US, NUL for null.
    ``source_types`` are the DuckDB types of the columns read ({} for typed raw columns)."""
    parts = [f"coalesce({_canon_sql(c, t, source_types.get(c, ''), alias)}, chr(0))"
             for c, t in entity.columns.items()]
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


def _typed_sql(column: str, logical: str, source_type: str, wh: Warehouse) -> str:
    c = ident(column)
    if logical == "timestamp" and source_type == "TIMESTAMP WITH TIME ZONE":
        return f"timezone('UTC', {c}) as {c}"
    return f"cast({c} as {wh.sql_type(logical)}) as {c}"


def pushdown_possible(wh: Warehouse, engine, reader: str | None = None) -> bool:
    """Whether extraction can run as SQL in DuckDB: a PostgreSQL source, the postgres
    extension at hand, and the reader not forced (either warehouse: see ``sql_warehouse``)."""
    preferred = (reader or reader_from_env()).lower()
    return (wh.kind in ("duckdb", "postgres") and _dialect(engine) == "postgresql"
            and preferred in ("auto", "pushdown") and _fast_reader_available("duckdb"))


WAREHOUSE_ALIAS = "crm_wh"


@contextlib.contextmanager
def sql_warehouse(wh: Warehouse, engine) -> Iterator[tuple[Warehouse, str]]:
    """Where extraction runs as SQL, and the source schema to read from.

    A DuckDB warehouse is its own: the source is attached to it. For a PostgreSQL
    warehouse it is an in-memory DuckDB with the warehouse attached as its default
    catalog (``crm_wh``) and the source attached read-only: the same SQL then reads the
    source with parallel scans and writes the warehouse with binary ``COPY``, instead of
    every row passing through Python, and a batch still commits in one PostgreSQL
    transaction. Nothing of the warehouse is held in the in-memory database."""
    if wh.kind == "duckdb":
        with attached_source(wh, engine) as schema:
            yield wh, schema
        return
    con = _in_memory_duckdb(temp_directory=str(Path(tempfile.gettempdir()) / "crm-duckdb-spill"))
    bridge = Warehouse.duckdb_over(wh.config, con)
    try:
        url = wh.config.url.replace("postgresql+psycopg2://", "postgresql://")
        con.execute(f"ATTACH {_sql_string(url)} AS {WAREHOUSE_ALIAS} (TYPE postgres)")
        con.execute(f"USE {WAREHOUSE_ALIAS}")
        with attached_source(bridge, engine) as schema:
            yield bridge, schema
    finally:
        bridge.close()


@contextlib.contextmanager
def attached_source(wh: Warehouse, engine) -> Iterator[str]:
    """The source attached read-only to the warehouse's DuckDB as ``crm_src``; yields the
    source schema to read from."""
    from sqlalchemy import text

    with engine.connect() as conn:
        schema = conn.execute(text("select current_schema()")).scalar_one()
    con = wh._con
    con.execute(f"LOAD '{_postgres_extension_path()}'")
    con.execute(f"ATTACH {_sql_string(_plain_url(engine))} AS {SOURCE_ALIAS} (TYPE postgres, READ_ONLY)")
    try:
        yield schema
    finally:
        with contextlib.suppress(Exception):
            con.execute(f"DETACH {SOURCE_ALIAS}")


def _source_types(wh: Warehouse, schema: str, entity: Entity) -> dict[str, str]:
    rows = wh.query(f"describe select * from {SOURCE_ALIAS}.{ident(schema)}.{ident(entity.name)}")
    return {r[0]: str(r[1]).upper() for r in rows}


def _pushdown_compatible(entity: Entity, types: dict[str, str]) -> str | None:
    """None when every contract column has a type that needs no parsing, else why not."""
    for c, logical in entity.columns.items():
        t = types.get(c)
        if t is None:
            return f"column {c} is missing"
        base = t.split("(")[0].strip()
        if base not in _PUSHDOWN_TYPES[logical]:
            return f"column {c} is {t}, not a {logical} type"
    return None


def _extract_pushdown(wh: Warehouse, engine, entity: Entity, *, schema: str, as_of: date, run_id: str,
                      overlap: timedelta, columns: list[str], gate_settings, customer_ids,
                      on_progress) -> BatchStats | None:
    """One batch as SQL inside the DuckDB warehouse (None: this entity needs the chunked path).

    1. One parallel scan of the source window (the postgres extension pushes the window
       filter down) lands the typed contract columns, the row hash and gate 1's suspect
       flag in ``raw._landing_<entity>_<batch>_in``, committed.
    2. Versions already in raw, and repeats inside the batch, are duplicates.
    3. Suspect rows (few) go through ``gates.gate1_rows`` (GX and the pandas pre-checks)
       for the exact rule and reason; the rest are good as they are.
    4. The good rows, the checked suspects and the quarantine move into raw/quarantine in
       one transaction with the bookkeeping row, as in the chunked path."""
    from crm_pipeline import gates

    started = time.perf_counter()
    types = _source_types(wh, schema, entity)
    why = _pushdown_compatible(entity, types)
    if why:
        log.info("%s: extracting in chunks, not in SQL: %s", entity.name, why)
        return None
    with _open_batch(wh, entity, "pushdown", as_of=as_of, overlap=overlap) as (stats, landing, loaded_at, scratch):
        batch_id, window_start, window_end, is_initial = (stats.batch_id, stats.window_start, stats.window_end,
                                                          stats.is_initial)
        upd, key = ident(entity.updated_at), ident(entity.key)

        def ts(v: datetime) -> str:
            return f"timestamp '{_ts_text(v)}'"

        where = f"{upd} < {ts(window_end)}" + (f" and {upd} >= {ts(window_start)}" if window_start else "")
        known = _known_customers_sql(ts(window_end)) if customer_ids is not None else None
        inc = f"raw.{ident(landing + '_in')}"
        scratch += [inc, f"raw.{ident(landing + '_flagged')}"]
        typed = ", ".join(_typed_sql(c, t, types[c], wh) for c, t in entity.columns.items())
        def meta_with(batch_id_sql: str, visible_from_sql: str | None = None) -> str:
            visible_from = visible_from_sql or (f"cast({upd} as date)" if is_initial else f"date '{as_of.isoformat()}'")
            return (f"{batch_id_sql} as _batch_id, date '{as_of.isoformat()}' as _as_of, "
                    + f"{visible_from} as _visible_from, "
                    + (f"{ts(window_start)} as _window_start, " if window_start
                       else "cast(null as timestamp) as _window_start, ")
                    + f"{ts(window_end)} as _window_end, {ts(loaded_at)} as _loaded_at")

        meta = meta_with(f"'{batch_id}'")
        contract = ", ".join(ident(c) for c in entity.columns)
        source_unique = source_key_is_unique(engine, schema, entity)
        source = f"{SOURCE_ALIAS}.{ident(schema)}.{ident(entity.name)}"
        if not is_initial and window_start is not None and source_window_indexed(engine, schema, entity):
            source = _indexed_window_source(schema, entity, window_start, window_end)
        if is_initial and source_unique:
            _initial_load_direct(wh, entity, stats, source=source,
                                 typed=typed, source_types=types, where=where, meta_with=meta_with, known=known, landing=landing,
                                 loaded_at=loaded_at, run_id=run_id, columns=columns, customer_ids=customer_ids,
                                 gate_settings=gate_settings, started=started, on_progress=on_progress)
            return stats
        # 1. the scan: typed columns, the row hash (of the source values) and gate 1's
        #    suspect flag, assuming each key once in the batch (checked right after)
        flag_unique = gates.gate1_suspect_sql(entity, as_of=as_of, known_customers_sql=known, key_is_unique=True)
        row_hash = loaded_row_hash_sql(wh, entity, types, initial=is_initial)
        wh.execute(
            f"create table {inc} as select *, ({flag_unique}) as _suspect from ("
            f"select {typed}, {row_hash} as _row_hash "
            f"from {source} where {where})")
        _fault_point("after_first_chunk", entity)
        if source_unique:
            n = distinct_keys = wh.scalar(f"select count(*) from {inc}")
        else:
            n, distinct_keys = wh.query(f"select count(*), count(distinct {key}) from {inc}")[0]
        stats.rows_extracted = int(n)
        key_unique = int(n) == int(distinct_keys)
        if is_initial and not key_unique:  # repeats are told apart by their hash
            wh.execute(f"update {inc} set _row_hash = {row_hash_sql(entity, {})}")
        # 2. duplicates: versions already in raw (incremental windows only) and in-batch
        #    repeats; a first load of unique keys has none and is used as it is
        flagged = inc
        if not (is_initial and key_unique):
            dup_terms = []
            if not is_initial:
                dup_terms.append(
                    f"exists (select 1 from raw.{ident(entity.name)} r where r.{key} = i.{key} "
                    f"and {stored_hash_sql(entity, 'r')} = i._row_hash and r.{upd} < {ts(window_end)} "
                    f"and r.{upd} >= {ts(window_start)})")
            if not key_unique:
                dup_terms.append(f"row_number() over (partition by i.{key}, i._row_hash order by i.{upd}) > 1")
            suspect = gates.gate1_suspect_sql(entity, as_of=as_of, known_customers_sql=known,
                                              key_is_unique=key_unique)
            flagged = f"raw.{ident(landing + '_flagged')}"
            wh.execute(f"create table {flagged} as select *, ({suspect}) as _suspect from "
                       f"(select i.* exclude (_suspect), ({' or '.join(dup_terms) or 'false'}) as _dup from {inc} i) "
                       f"where not _dup")
        fresh, n_suspect, n_clean = (int(v or 0) for v in wh.query(
            f"select count(*), count(*) filter (where _suspect), count(*) filter (where not _suspect) "
            f"from {flagged}")[0])
        if n_suspect + n_clean != fresh:  # pragma: no cover - an invariant, not an input error
            raise gates.GateError(f"{entity.name}: the suspect split lost rows ({n_suspect} + {n_clean} != {fresh})")
        stats.rows_duplicate = stats.rows_extracted - fresh
        # 3. suspects through the exact gate
        suspects = wh.query_df(f"select {contract}, _row_hash from {flagged} where _suspect")
        if len(suspects):
            _gate_suspects(wh, entity, stats, suspects, customer_ids, gate_settings, landing=landing,
                           loaded_at=loaded_at)
        stats.rows_staged = fresh - stats.rows_quarantined
        if on_progress:
            on_progress(stats.rows_extracted)
        # 4. the good rows move with the landing tables, in the same transaction
        if flagged != inc:
            wh.execute(f"drop table if exists {inc}")
        good_rows = (f"insert into raw.{ident(entity.name)} ({contract}, {', '.join(RAW_META_COLUMNS)}) "
                     f"select {contract}, {meta}, _row_hash from {flagged} where not _suspect")
        _commit_batch(wh, entity, stats, landing=landing, run_id=run_id, columns=columns,
                      loaded_at=loaded_at, gate_settings=gate_settings, started=started, also=good_rows)
    return stats


def _gate_suspects(wh: Warehouse, entity: Entity, stats: BatchStats, suspects: pd.DataFrame, customer_ids,
                   gate_settings, *, landing: str, loaded_at: datetime) -> None:
    """The SQL paths' suspect rows through the exact gate 1 (``customer_ids``: a loader of
    the known ids, called only here): good rows and quarantine into the landing tables,
    counts into ``stats``."""
    from crm_pipeline import gates

    result = gates.gate1_rows(entity, suspects[list(entity.columns)], customer_ids and customer_ids(),
                              as_of=stats.as_of, settings=gate_settings)
    good = result.good.copy()
    good["_row_hash"] = _suspect_hashes(entity, suspects).loc[good.index].to_numpy()
    bad = result.quarantined
    stats.rows_quarantined = len(bad)
    for rule, k in bad["_rule"].value_counts().items() if len(bad) else ():
        stats.quarantine_rules[rule] = int(k)
    _write_chunk(wh, entity, good, bad, landing=landing, batch_id=stats.batch_id, as_of=stats.as_of,
                 is_initial=stats.is_initial, window_start=stats.window_start, window_end=stats.window_end,
                 loaded_at=loaded_at)


def _suspect_hashes(entity: Entity, suspects: pd.DataFrame) -> pd.Series:
    """The row hashes of suspect rows as read from the source. A first load through SQL
    stores none (``stored_hash_sql`` computes them from raw later), but gate 1 may clean
    a suspect's values, and a hash of the cleaned values would not match the source's row
    when a later overlap window reads it again: these few are hashed here, before gate 1."""
    stored = suspects["_row_hash"]
    if stored.notna().all():
        return stored
    cols = list(entity.columns)
    return stored.where(stored.notna(), row_hashes(suspects[cols], cols, entity.columns))


def source_key_is_unique(engine, schema: str, entity: Entity) -> bool:
    """Whether the source table's primary key or a unique constraint is the entity's key
    alone: then no window of it can hold a key twice, and nobody needs to count."""
    import sqlalchemy as sa

    try:
        inspector = sa.inspect(engine)
        keys = [inspector.get_pk_constraint(entity.name, schema=schema).get("constrained_columns") or []]
        keys += [u.get("column_names") or [] for u in inspector.get_unique_constraints(entity.name, schema=schema)]
    except sa.exc.SQLAlchemyError as exc:
        log.info("%s: cannot read the source's key constraints (%s); counting keys instead",
                 entity.name, redact(_first_line(exc)))
        return False
    return [entity.key] in [list(k) for k in keys]


def source_window_indexed(engine, schema: str, entity: Entity) -> bool:
    """Whether an index of the source table starts with the entity's ``updated_at``: then
    PostgreSQL can find a night's window through it."""
    import sqlalchemy as sa

    try:
        indexes = sa.inspect(engine).get_indexes(entity.name, schema=schema)
    except sa.exc.SQLAlchemyError as exc:
        log.info("%s: cannot read the source's indexes (%s); scanning the table",
                 entity.name, redact(_first_line(exc)))
        return False
    return any((i.get("column_names") or [None])[0] == entity.updated_at for i in indexes)


#: how far PostgreSQL's own window filter reaches beyond the batch's window on each side:
#: a ``timestamp with time zone`` column compares the literal in the session's time zone
#: (at most 14 hours from UTC); the exact window is applied in DuckDB
INDEXED_WINDOW_MARGIN = timedelta(days=1)


def _indexed_window_source(schema: str, entity: Entity, start: datetime, end: datetime) -> str:
    """The incremental window of a source table as a query PostgreSQL runs itself
    (``postgres_query``), so its planner can use the ``updated_at`` index.

    The attached table is read in parallel ranges of pages, each filtered on its own: an
    index cannot help there, so a night's 0.5% of the orders cost a scan of every page,
    and that grew with the history (2.8 s at 20M orders, 8.6 s at 40M). The query reads
    the window widened by ``INDEXED_WINDOW_MARGIN``; the caller's filter keeps the
    exact window."""
    upd = ident(entity.updated_at)
    columns = list(entity.columns) + ([] if entity.updated_at in entity.columns else [entity.updated_at])
    query = (f"select {', '.join(ident(c) for c in columns)} from {ident(schema)}.{ident(entity.name)} "
             f"where {upd} >= '{_ts_text(start - INDEXED_WINDOW_MARGIN)}' "
             f"and {upd} < '{_ts_text(end + INDEXED_WINDOW_MARGIN)}'")
    return f"postgres_query('{SOURCE_ALIAS}', {_sql_string(query)})"


def _initial_load_direct(wh: Warehouse, entity: Entity, stats: BatchStats, *, source: str, typed: str,
                         source_types: dict[str, str], where: str,
                         meta_with: Callable[..., str], known: str | None, landing: str, loaded_at: datetime, run_id: str,
                         columns: list[str], customer_ids, gate_settings, started: float, on_progress) -> None:
    """A first load of a source whose key is unique, written straight into raw: one scan
    of the source inserts every row of the window, then the rows gate 1's suspect
    predicate flags (few) go through ``gates.gate1_rows``; their good rows come back
    through the landing table, as in the other paths. The rows, the quarantine and the
    bookkeeping row commit in one transaction, so the batch is in raw whole or not at
    all, and there is no second copy of the table.

    In a DuckDB warehouse the suspect rows themselves wait in raw under a marked batch id
    and a ``_visible_from`` no run date reaches, and are deleted right after the commit.
    Deleting them inside the transaction instead made DuckDB rewrite the whole uncommitted
    insert at commit (17 s more for 20M orders); deleting a few committed rows takes
    milliseconds. Should the process die in between, no model can see them, and the
    entity's next batch deletes them before it reads raw (``purge_unchecked_rows``)."""
    from crm_pipeline import gates

    contract = ", ".join(ident(c) for c in entity.columns)
    target = f"raw.{ident(entity.name)}"
    # the suspect flag is evaluated once, in the scan (scanning the transaction's own
    # uncommitted rows again costs more than the scan from the source)
    suspect = gates.gate1_suspect_sql(entity, as_of=stats.as_of, known_customers_sql=known, key_is_unique=True)
    marked = f"{stats.batch_id}{SUSPECT_MARK}"
    meta = meta_with(f"case when _suspect then '{marked}' else '{stats.batch_id}' end",
                     f"case when _suspect then date '{NEVER_VISIBLE}' else cast({ident(entity.updated_at)} as date) end")
    row_hash = loaded_row_hash_sql(wh, entity, source_types, initial=True)
    # only DuckDB's own tables pay for a delete inside the transaction; a PostgreSQL
    # warehouse (through the DuckDB bridge) deletes them there, as nothing is left behind
    after_commit = wh.config.kind == "duckdb"
    with wh.transaction():
        n = wh.scalar(f"insert into {target} ({contract}, {', '.join(RAW_META_COLUMNS)}) "
                      f"select {contract}, {meta}, _row_hash from (select *, ({suspect}) as _suspect from "
                      f"(select {typed}, {row_hash} as _row_hash from {source} where {where}))")
        _fault_point("after_first_chunk", entity)
        stats.rows_extracted = int(n or 0)
        suspects = wh.query_df(f"select {contract}, _row_hash from {target} where _batch_id = ?", (marked,))
        if len(suspects) and not after_commit:
            wh.execute(f"delete from {target} where _batch_id = ?", (marked,))
        if len(suspects):
            _gate_suspects(wh, entity, stats, suspects, customer_ids, gate_settings, landing=landing,
                           loaded_at=loaded_at)
        stats.rows_staged = stats.rows_extracted - stats.rows_quarantined
        if on_progress:
            on_progress(stats.rows_extracted)
        _commit_batch(wh, entity, stats, landing=landing, run_id=run_id, columns=columns,
                      loaded_at=loaded_at, gate_settings=gate_settings, started=started)
    if after_commit:
        _fault_point("before_suspects_leave", entity)
        if len(suspects):
            wh.execute(f"delete from {target} where _batch_id = ?", (marked,))


def purge_unchecked_rows(wh: Warehouse, entity: Entity) -> int:
    """Delete the suspect rows a first load left in raw when it stopped between its commit
    and their deletion (see ``_initial_load_direct``); returns how many. Only a first load
    leaves them, so only while the entity's newest batch is its first load is raw read;
    and only in a DuckDB warehouse (a PostgreSQL one deletes them inside the batch's
    transaction: reading raw for them cost a scan of every table there)."""
    if wh.config.kind != "duckdb":
        return 0
    newest = wh.query("select is_initial from ops.extract_batches where entity = ? "
                      "order by loaded_at desc limit 1", (entity.name,))
    if not newest or not newest[0][0]:
        return 0
    n = int(wh.scalar(f"select count(*) from raw.{ident(entity.name)} where _visible_from = date '{NEVER_VISIBLE}'") or 0)
    if n:
        wh.execute(f"delete from raw.{ident(entity.name)} where _visible_from = date '{NEVER_VISIBLE}'")
        log.info("%s: deleted %d unchecked rows an interrupted first load left in raw", entity.name, n)
    return n


def _known_customers_sql(end: str) -> str:
    """Customer ids that exist in raw with a version before ``end`` (a literal or ``?``)."""
    return f"select distinct customer_id from raw.customers where updated_at < {end}"


def known_customers_loader(wh: Warehouse, as_of: date) -> Callable[[], set[int]]:
    """Customer ids that exist in raw (any version up to the end of as_of)."""

    def load() -> set[int]:
        end = datetime.combine(as_of + timedelta(days=1), datetime.min.time())
        return {int(r[0]) for r in wh.query(_known_customers_sql("?"), (end,))}

    return load


def extract_all(
    wh: Warehouse,
    source_url: str,
    *,
    as_of: date,
    run_id: str,
    entities: tuple[Entity, ...] = ENTITIES,
    overlap: timedelta | None = None,
    chunk_rows: int | None = None,
    gate_settings=None,
    progress: bool = False,
    reader: str | None = None,
) -> list[BatchStats]:
    """Extract every entity, customers first (the others' foreign keys point at them).

    Each entity's batch commits on its own; after a failure a retry re-reads the
    committed entities' windows and finds only duplicates."""
    overlap = overlap_from_env() if overlap is None else overlap
    chunk_rows = chunk_rows_from_env() if chunk_rows is None else chunk_rows
    ensure_tables(wh)
    engine = source_engine(source_url)
    ordered = sorted(entities, key=lambda e: e.name != "customers")
    out: list[BatchStats] = []
    try:
        with contextlib.ExitStack() as stack:
            schema = None
            sql_wh = None
            if pushdown_possible(wh, engine, reader):
                try:
                    sql_wh, schema = stack.enter_context(sql_warehouse(wh, engine))
                except Exception as exc:  # noqa: BLE001 - the chunked readers still work
                    log.warning("cannot attach the source to the warehouse (%s); extracting in chunks",
                                redact(_first_line(exc)))
            # loaded once, when an entity after the customers first needs it
            known_ids = functools.cache(known_customers_loader(wh, as_of))
            for entity in ordered:
                out.append(
                    extract_entity(
                        wh, engine, entity, as_of=as_of, run_id=run_id, overlap=overlap,
                        chunk_rows=chunk_rows, known_customer_ids=known_ids,
                        gate_settings=gate_settings, reader=reader,
                        pushdown=(sql_wh, schema) if sql_wh is not None else None,
                    )
                )
    finally:
        engine.dispose()
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
