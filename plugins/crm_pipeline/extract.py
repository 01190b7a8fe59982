"""Incremental, idempotent extraction of the source entities into ``raw.*``.

One batch per entity per run. The window is derived from what already landed in the
warehouse (the watermark is the newest ``updated_at`` in ``raw``), widened by an overlap
margin (``CRM_EXTRACT_OVERLAP_MINUTES``, default 120) so late commits are not missed, and
bounded above by the end of the run's day. A row changed after the fact (a return, a late
payment, a re-opened complaint, a soft delete) has a new ``updated_at`` and arrives as a
new version; an identical re-sent version is counted as a duplicate and skipped.

Rows stream from the source in chunks of ``CRM_EXTRACT_CHUNK_ROWS`` (default 50,000)
through the fastest reader the source allows: DuckDB's postgres extension (loaded from
the ``duckdb-extension-postgres-scanner`` package, never downloaded) or connectorx for
PostgreSQL, connectorx for MySQL/MariaDB, and SQLAlchemy with server-side cursors
everywhere else and as the fallback when a fast reader is missing or fails. Every reader
turns a typed source's rows into the same canonical frame, so the batch does not depend
on the reader. ``CRM_EXTRACT_READER`` (auto, duckdb, connectorx, sqlalchemy) forces one.

Each chunk is checked by gate 1 and written straight away, inside one transaction per
batch that also holds the batch's quarantine rows and its bookkeeping row in
``ops.extract_batches``: memory stays bounded by the chunk size, a batch is either
complete or absent, and a retry after a failure never duplicates rows.
"""

from __future__ import annotations

import logging
import os
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

from crm_pipeline.contract import ENTITIES, Entity
from crm_pipeline.warehouse import Warehouse, ident, redact

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 50_000
DEFAULT_OVERLAP = timedelta(hours=2)
#: fast readers first; sqlalchemy is always the last resort
READERS = ("duckdb", "connectorx", "sqlalchemy")

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
    raw = os.environ.get("CRM_EXTRACT_OVERLAP_MINUTES", "").strip()
    if not raw:
        return DEFAULT_OVERLAP
    try:
        minutes = float(raw)
    except ValueError:
        raise ValueError(f"CRM_EXTRACT_OVERLAP_MINUTES={raw!r} is not a number of minutes") from None
    if minutes < 0:
        raise ValueError("CRM_EXTRACT_OVERLAP_MINUTES must not be negative")
    return timedelta(minutes=minutes)


def chunk_rows_from_env() -> int:
    raw = os.environ.get("CRM_EXTRACT_CHUNK_ROWS", "").strip()
    if not raw:
        return DEFAULT_CHUNK_ROWS
    try:
        n = int(raw.replace("_", ""))
    except ValueError:
        raise ValueError(f"CRM_EXTRACT_CHUNK_ROWS={raw!r} is not a whole number") from None
    if n < 1:
        raise ValueError("CRM_EXTRACT_CHUNK_ROWS must be at least 1")
    return n


def reader_from_env() -> str:
    value = os.environ.get("CRM_EXTRACT_READER", "auto").strip().lower() or "auto"
    if value not in ("auto", *READERS):
        raise ValueError(f"CRM_EXTRACT_READER={value!r}: use auto, {', '.join(READERS)}")
    return value


# -- the source and its readers ------------------------------------------------------


def _sqlalchemy_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    if url.startswith("postgres://"):
        return "postgresql+psycopg2://" + url[len("postgres://"):]
    if url.startswith("mysql://"):
        return "mysql+pymysql://" + url[len("mysql://"):]
    if url.startswith("mariadb://"):
        return "mariadb+pymysql://" + url[len("mariadb://"):]
    return url


def source_engine(url: str):
    from sqlalchemy import create_engine

    return create_engine(_sqlalchemy_url(url), pool_pre_ping=True)


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


def _bound(engine, value: datetime | None):
    if value is None:
        return None
    if engine.dialect.name == "sqlite":
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def _window_sql(entity: Entity, lo: datetime | None, hi: datetime, *, literal: bool) -> tuple[str, dict]:
    """The batch query: the contract columns of rows changed in [lo, hi), in a fixed order.

    ``literal`` writes the bounds into the SQL (connectorx and the DuckDB scanner take no
    parameters); they are formatted datetimes, never user input."""
    upd = ident(entity.updated_at)
    cols = ", ".join(ident(c) for c in entity.columns)

    def lit(v: datetime) -> str:
        return "'" + v.strftime("%Y-%m-%d %H:%M:%S.%f") + "'"

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


def _iter_connectorx(engine, entity: Entity, lo, hi, chunk_rows: int) -> Iterator[pd.DataFrame]:
    import connectorx as cx

    sql, _ = _window_sql(entity, lo, hi, literal=True)
    reader = cx.read_sql(_plain_url(engine), sql, return_type="arrow_stream", record_batch_size=chunk_rows)
    for table in _rechunk(reader, chunk_rows):
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


def _duckdb_postgres_reader(url: str):
    """An in-memory DuckDB with the postgres extension loaded from site-packages (no
    download, no ~/.duckdb) and the source attached read-only as ``src``."""
    import duckdb

    con = duckdb.connect(":memory:", config={
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "extension_directory": str(Path(tempfile.gettempdir()) / "crm-duckdb-extensions"),
        "memory_limit": os.environ.get("CRM_EXTRACT_DUCKDB_MEMORY", "1GB"),
        "threads": 2,
    })
    try:
        con.execute(f"LOAD '{_postgres_extension_path()}'")
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
_HASH_KEYS = ("crm-row-hash-k1!", "crm-row-hash-k2?")  # 16 bytes each (siphash keys)


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


def _canon_datetime(values: pd.Series, unit: str) -> np.ndarray:
    """datetime64 values as ISO text, the date part only for dates (unit D)."""
    s = values
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    a = s.to_numpy(dtype="datetime64[us]")
    nat = np.isnat(a)
    text = np.datetime_as_string(a.astype("datetime64[D]") if unit == "D" else a, unit=unit)
    if unit != "D":
        text = np.char.replace(text, "T", " ")
    out = text.astype(object)
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

        return pa.array(s, from_pandas=True).cast(pa.string()).to_numpy(zero_copy_only=False)
    if pd.api.types.is_float_dtype(dtype):
        f = s.to_numpy(dtype="float64", na_value=np.nan)
        if logical == "money":  # the contract type is DECIMAL(14,2): compare to the cent
            with np.errstate(invalid="ignore"):
                f = np.where(np.abs(f) < 1e15, np.rint(f * 100.0) / 100.0, f)
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
    """128-bit content hash per string as 32 hex characters (two keyed SipHash-2-4)."""
    try:
        h1 = pd.util.hash_array(joined, hash_key=_HASH_KEYS[0], categorize=False)
        h2 = pd.util.hash_array(joined, hash_key=_HASH_KEYS[1], categorize=False)
    except UnicodeEncodeError:  # lone surrogates: hash their escaped form
        fixed = np.array([t.encode("utf-8", "surrogatepass").decode("utf-8", "backslashreplace")
                          for t in joined.tolist()], dtype=object)
        return _hash_text(fixed)
    both = np.empty((len(joined), 2), dtype=">u8")
    both[:, 0] = h1
    both[:, 1] = h2
    hexed = np.frombuffer(both.tobytes().hex().encode("ascii"), dtype="S32")
    return hexed.astype("U32").astype(object)


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
    sql = (f"select cast({ident(entity.key)} as varchar), _row_hash from raw.{ident(entity.name)} "
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
    spec = os.environ.get("CRM_FAULT_INJECT", "")
    parts = spec.split(":")
    if len(parts) < 2 or parts[0] != "extract" or parts[1] != name:
        return
    if len(parts) > 2 and parts[2] and parts[2] != entity.name:
        return
    marker = Path(os.environ.get("CRM_FAULT_MARKER")
                  or Path(os.environ.get("CRM_HOME", tempfile.gettempdir())) / f".fault-extract-{name}.fired")
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
) -> BatchStats:
    """Extract one entity's batch for the day ``as_of`` and commit it atomically."""
    from crm_pipeline import gates

    overlap = overlap_from_env() if overlap is None else overlap
    chunk_rows = chunk_rows_from_env() if chunk_rows is None else int(chunk_rows)

    # batch-level contract first: a renamed or missing column stops the run before any read
    cols = source_columns(engine, entity)
    verdict = gates.gate1_batch(entity, cols, rows=0, quarantined=0, recent_rows=[], settings=gate_settings, incremental=False)
    if not verdict.ok:
        raise BatchRejected("; ".join(verdict.failures))
    customer_ids = known_customer_ids() if known_customer_ids and entity.name != "customers" else None

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


def _extract_batch(wh: Warehouse, engine, entity: Entity, reader: str, *, as_of: date, run_id: str,
                   overlap: timedelta, chunk_rows: int, customer_ids, columns: list[str],
                   gate_settings, on_progress) -> BatchStats:
    from crm_pipeline import gates

    started = time.perf_counter()
    contract_cols = list(entity.columns)
    batch_id = f"{entity.name}-{as_of.isoformat()}-{uuid.uuid4().hex[:8]}"
    with wh.transaction():
        window_start, window_end = extraction_window(wh, entity, as_of, overlap)
        is_initial = window_start is None
        stats = BatchStats(entity.name, batch_id, as_of, window_start, window_end, is_initial, reader=reader)
        seen = _existing_versions(wh, entity, window_start, window_end)
        previous = pd.Index([], dtype=object)  # versions of the last chunk (in-batch repeats are adjacent)
        loaded_at = datetime.now(timezone.utc).replace(tzinfo=None)
        first_chunk = True
        for chunk in iter_source_chunks(engine, entity, window_start, window_end, chunk_rows, reader):
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
                result = gates.gate1_rows(entity, fresh, customer_ids, as_of=as_of, settings=gate_settings)
                good = result.good.copy()
                good["_row_hash"] = hashes[~dup].loc[good.index].to_numpy()
                bad = result.quarantined
                stats.rows_staged += len(good)
                stats.rows_quarantined += len(bad)
                for rule, k in bad["_rule"].value_counts().items() if len(bad) else ():
                    stats.quarantine_rules[rule] = stats.quarantine_rules.get(rule, 0) + int(k)
                _write_chunk(wh, entity, good, bad, batch_id=batch_id, as_of=as_of, is_initial=is_initial,
                             window_start=window_start, window_end=window_end, loaded_at=loaded_at)
            if first_chunk:
                first_chunk = False
                _fault_point("after_first_chunk", entity)
            if on_progress:
                on_progress(len(chunk))

        verdict = gates.gate1_batch(
            entity,
            columns,
            rows=stats.rows_extracted - stats.rows_duplicate,
            quarantined=stats.rows_quarantined,
            recent_rows=recent_batch_sizes(wh, entity, as_of),
            settings=gate_settings,
            incremental=not is_initial,
        )
        if not verdict.ok:
            raise BatchRejected("; ".join(verdict.failures))
        stats.seconds = round(time.perf_counter() - started, 3)
        wh.execute(
            "insert into ops.extract_batches values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id, batch_id, entity.name, as_of, window_start, window_end, is_initial,
                stats.rows_extracted, stats.rows_duplicate, stats.rows_staged,
                stats.rows_quarantined, stats.seconds, loaded_at,
            ),
        )
    log.info(
        "extracted %s with %s: %d rows (%d duplicate, %d staged, %d quarantined) window [%s, %s) in %.1fs",
        entity.name, reader, stats.rows_extracted, stats.rows_duplicate, stats.rows_staged,
        stats.rows_quarantined, window_start, window_end, stats.seconds,
    )
    return stats


def _write_chunk(wh: Warehouse, entity: Entity, good: pd.DataFrame, bad: pd.DataFrame, *, batch_id: str,
                 as_of: date, is_initial: bool, window_start, window_end, loaded_at: datetime) -> None:
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
        wh.append_df("raw", entity.name, good)
    if len(bad):
        bad = bad[["_key", "_rule", "_reason", "_record"]].copy()
        bad["_batch_id"] = batch_id
        bad["_as_of"] = as_of
        bad["_loaded_at"] = loaded_at
        wh.append_df("quarantine", entity.name, bad)


def known_customers_loader(wh: Warehouse, as_of: date) -> Callable[[], set[int]]:
    """Customer ids that exist in raw (any version up to the end of as_of)."""

    def load() -> set[int]:
        end = datetime.combine(as_of + timedelta(days=1), datetime.min.time())
        return {int(r[0]) for r in wh.query("select distinct customer_id from raw.customers where updated_at < ?", (end,))}

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
        for entity in ordered:
            out.append(
                extract_entity(
                    wh, engine, entity, as_of=as_of, run_id=run_id, overlap=overlap,
                    chunk_rows=chunk_rows, known_customer_ids=known_customers_loader(wh, as_of),
                    gate_settings=gate_settings, reader=reader,
                )
            )
    finally:
        engine.dispose()
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
