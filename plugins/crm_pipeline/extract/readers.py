"""The source side of extraction: its engine and dialect, the chain of readers that stream
a batch window (DuckDB's postgres extension, connectorx, SQLAlchemy), the window's SQL,
and the canonical frame every reader turns a typed source's rows into."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

from crm_pipeline import settings
from crm_pipeline.connections import redact, sqlalchemy_url
from crm_pipeline.contract import Entity
from crm_pipeline.errors import first_line
from crm_pipeline.warehouse import ident

DEFAULT_CHUNK_ROWS = 200_000
#: fast readers first; sqlalchemy is always the last resort
READERS = ("duckdb", "connectorx", "sqlalchemy")
#: ``pushdown``: PostgreSQL source into a DuckDB warehouse as SQL inside the warehouse
READER_CHOICES = settings.READER_CHOICES


class SourceError(RuntimeError):
    """The source cannot be read (unreachable, missing table, schema drift)."""


class ReaderFailed(RuntimeError):
    """A fast reader failed; the batch is rolled back and read again with the next one."""


def reader_from_env() -> str:
    return settings.extract_reader()


# -- the source and its readers ------------------------------------------------------


def source_engine(url: str):
    from sqlalchemy import create_engine

    return create_engine(sqlalchemy_url(url), pool_pre_ping=True)


def dialect(engine) -> str:
    """The source's SQL dialect, MariaDB counted as MySQL."""
    name = engine.dialect.name
    return "mysql" if name in ("mysql", "mariadb") else name


def plain_url(engine) -> str:
    """The engine's URL without the SQLAlchemy driver (what libpq and connectorx read)."""
    url = engine.url.set(drivername={"postgresql": "postgresql", "mysql": "mysql"}[dialect(engine)])
    return url.render_as_string(hide_password=False)


def fast_reader_available(name: str) -> bool:
    try:
        if name == "connectorx":
            import connectorx  # noqa: F401
        elif name == "duckdb":
            postgres_extension_path()
        return True
    except Exception:  # noqa: BLE001 - missing optional package: fall back quietly
        return False


def reader_chain(engine, preferred: str | None = None) -> list[str]:
    """The readers to try for this source, fastest first, ending with sqlalchemy.

    PostgreSQL is read by DuckDB's postgres extension (loaded from the
    ``duckdb-extension-postgres-scanner`` package, never downloaded) or connectorx,
    MySQL/MariaDB by connectorx, and everything else by SQLAlchemy with server-side
    cursors, which is also the fallback when a fast reader is missing or fails.
    ``CRM_EXTRACT_READER`` (auto, pushdown, duckdb, connectorx, sqlalchemy) forces one."""
    preferred = (preferred or reader_from_env()).lower()
    if preferred == "pushdown":  # not possible here (see pushdown_possible): the fastest chunked reader
        preferred = "auto"
    source_dialect = dialect(engine)
    supported = {"postgresql": ["duckdb", "connectorx"], "mysql": ["connectorx"]}.get(source_dialect, [])
    if preferred == "sqlalchemy":
        return ["sqlalchemy"]
    if preferred != "auto":
        if preferred not in supported:
            raise ValueError(f"reader {preferred!r} cannot read a {source_dialect} source "
                             f"(it reads: {', '.join(supported + ['sqlalchemy'])})")
        return [preferred, "sqlalchemy"]
    return [name for name in supported if fast_reader_available(name)] + ["sqlalchemy"]


def source_columns(engine, entity: Entity) -> list[str]:
    from sqlalchemy import text

    try:
        with engine.connect() as conn:
            result = conn.execute(text(f"select * from {ident(entity.name)} where 1 = 0"))
            return list(result.keys())
    except Exception as exc:  # noqa: BLE001 - turned into one clear line
        raise SourceError(f"cannot read source table {entity.name!r}: {first_line(exc)}") from exc


def ts_text(value) -> str:
    """A timestamp as the literal text every engine here parses (microseconds kept)."""
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S.%f")


def _bound(engine, value: datetime | None):
    if value is None:
        return None
    if engine.dialect.name == "sqlite":
        return ts_text(value)
    return value


def _window_sql(entity: Entity, lo: datetime | None, hi: datetime, *, literal: bool) -> tuple[str, dict]:
    """The batch query: the contract columns of rows changed in [lo, hi), in a fixed order.

    ``literal`` writes the bounds into the SQL (connectorx and the DuckDB scanner take no
    parameters); they are formatted datetimes, never user input."""
    upd = ident(entity.updated_at)
    cols = ", ".join(ident(column) for column in entity.columns)

    def lit(bound: datetime) -> str:
        return f"'{ts_text(bound)}'"

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
    for position, name in enumerate(columns):
        values = [row[position] for row in rows]
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
    params = {name: _bound(engine, value) for name, value in params.items()}
    typed = dialect(engine) in ("postgresql", "mysql")
    with engine.connect().execution_options(stream_results=True, max_row_buffer=chunk_rows) as conn:
        result = conn.execute(text(sql), params)
        cols = list(result.keys())
        while True:
            rows = result.fetchmany(chunk_rows)
            if not rows:
                break
            if typed:
                yield _rows_to_canonical(rows, cols, entity)
            else:  # SQLite and the like: hand gate 1 the values as stored, never through
                # float64 (pandas' inference turns a whole-number column with a NULL into floats,
                # which cannot hold every id above 2**53)
                yield pd.DataFrame({name: pd.Series([row[position] for row in rows], dtype=object)
                                    for position, name in enumerate(cols)})


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
                last_ts, last_key = after
                where = (f" and ({upd} > '{last_ts}' or ({upd} = '{last_ts}' "
                         f"and {key} > {int(last_key)}))")
            table = cx.read_sql(plain_url(engine), f"{select}{where} order by {order} limit {page_rows}",
                                return_type="arrow")
            if table.num_rows == 0:
                return
            last = table.slice(table.num_rows - 1)
            ts_value = last.column(entity.updated_at)[0].as_py()
            after = (ts_text(ts_value), last.column(entity.key)[0].as_py())
            yield from (table.to_batches() if isinstance(table, pa.Table) else [table])
            if table.num_rows < page_rows:
                return

    for table in _rechunk(pages(), chunk_rows):
        yield _arrow_to_canonical(table, entity)


def postgres_extension_path() -> Path:
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


def sql_string(value: str) -> str:
    """``value`` as a single-quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def in_memory_duckdb(**config):
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
        con.execute(f"LOAD '{postgres_extension_path()}'")
    except Exception:
        con.close()
        raise
    return con


def _duckdb_postgres_reader(url: str):
    """An in-memory DuckDB (``in_memory_duckdb``) with the source attached read-only as
    ``src``."""
    con = in_memory_duckdb(memory_limit=settings.extract_duckdb_memory(), threads=2)
    try:
        con.execute(f"ATTACH {sql_string(url)} AS src (TYPE postgres, READ_ONLY)")
    except Exception:
        con.close()
        raise
    return con


def _iter_duckdb(engine, entity: Entity, lo, hi, chunk_rows: int) -> Iterator[pd.DataFrame]:
    sql, _ = _window_sql(entity, lo, hi, literal=True)
    con = _duckdb_postgres_reader(plain_url(engine))
    try:
        # postgres_query runs the query (and its order by) in PostgreSQL and streams it
        result = con.execute(f"select * from postgres_query('src', {sql_string(sql)})")
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
    exactly chunk_rows rows (the last one shorter), read with ``reader``. Every reader
    yields the same canonical frame for a typed source, so the batch does not depend on it.

    A failing fast reader raises ``ReaderFailed`` (the caller falls back); a failing
    sqlalchemy read raises ``SourceError``."""
    try:
        yield from _READ[reader](engine, entity, lo, hi, chunk_rows)
    except (SourceError, GeneratorExit):
        raise
    except Exception as exc:  # noqa: BLE001
        if reader != "sqlalchemy":
            raise ReaderFailed(f"{reader} reader: {redact(first_line(exc))}") from exc
        raise SourceError(f"reading {entity.name} from the source failed: {redact(first_line(exc))}") from exc
