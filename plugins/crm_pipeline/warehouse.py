"""Warehouse access: one small interface over the embedded DuckDB file and PostgreSQL.

Owns the schemas the pipeline writes outside dbt (raw, quarantine, ops, published),
the DDL of the raw tables derived from the source contract, and transactions. dbt owns
staging, intermediate, audit and config.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlparse

import pandas as pd

from crm_pipeline.contract import ENTITIES, RAW_META_COLUMNS, Entity

PIPELINE_SCHEMAS = ("raw", "quarantine", "ops", "published")

_DUCKDB_TYPES = {
    "int": "BIGINT",
    "text": "VARCHAR",
    "money": "DECIMAL(14,2)",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "bool": "BOOLEAN",
}
_PG_TYPES = {**_DUCKDB_TYPES, "text": "TEXT"}

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def ident(name: str) -> str:
    """Validate an identifier the pipeline builds SQL from (never user data)."""
    if not _IDENT.match(name):
        raise ValueError(f"invalid SQL identifier: {name!r}")
    return name


@dataclass(frozen=True)
class WarehouseConfig:
    """Where the warehouse is: a DuckDB file path or a PostgreSQL URL."""

    kind: str  # "duckdb" | "postgres"
    duckdb_path: Path | None = None
    url: str | None = None

    @classmethod
    def from_url(cls, url: str) -> "WarehouseConfig":
        if url.startswith("duckdb:///"):
            return cls(kind="duckdb", duckdb_path=Path(url[len("duckdb:///"):]))
        if url.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
            return cls(kind="postgres", url=url)
        if url.endswith(".duckdb"):
            return cls(kind="duckdb", duckdb_path=Path(url))
        raise ValueError(
            f"unsupported warehouse URL {redact(url)!r}: use duckdb:///path/warehouse.duckdb "
            "or postgresql://user@host:port/dbname"
        )

    @property
    def display(self) -> str:
        return str(self.duckdb_path) if self.kind == "duckdb" else redact(self.url or "")

    def dbt_env(self) -> dict[str, str]:
        """Environment for the dbt profile (profiles.yml reads only these variables)."""
        if self.kind == "duckdb":
            return {"CRM_DBT_TARGET": "duckdb", "CRM_DUCKDB_PATH": str(self.duckdb_path)}
        parts = urlparse(self.url.replace("postgresql+psycopg2://", "postgresql://"))
        return {
            "CRM_DBT_TARGET": "postgres",
            "CRM_PG_HOST": parts.hostname or "127.0.0.1",
            "CRM_PG_PORT": str(parts.port or 5432),
            "CRM_PG_USER": unquote(parts.username or "postgres"),
            "DBT_ENV_SECRET_PG_PASSWORD": unquote(parts.password or ""),
            "CRM_PG_DBNAME": (parts.path or "/postgres").lstrip("/") or "postgres",
            "PGOPTIONS": pg_session_options(),
        }


def redact(url: str) -> str:
    """A URL with its password replaced, safe for logs and summaries."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


DEFAULT_PG_WORK_MEM = "256MB"


def pg_session_options() -> str:
    """libpq's ``PGOPTIONS`` for dbt's PostgreSQL sessions: ``work_mem`` at
    ``CRM_PG_WORK_MEM`` (default 256MB), after whatever ``PGOPTIONS`` already holds (a
    ``work_mem`` there is kept unless ``CRM_PG_WORK_MEM`` is set).

    PostgreSQL's default of 4MB makes every hash join, aggregate and sort over the
    orders spill to disk in batches. The models run one statement per session, at most
    ``threads`` at once, so the memory a night can take is bounded by a few times this
    value (a plan may hold several hash tables, each up to work_mem)."""
    explicit = os.environ.get("CRM_PG_WORK_MEM", "").strip()
    value = explicit or DEFAULT_PG_WORK_MEM
    if not re.fullmatch(r"\d+\s*(kB|MB|GB)", value):
        raise ValueError(f"CRM_PG_WORK_MEM={value!r}: use a PostgreSQL size such as 256MB or 1GB")
    own = f"-c work_mem={value.replace(' ', '')}"
    inherited = os.environ.get("PGOPTIONS", "").strip()
    if own in inherited or ("work_mem" in inherited and not explicit):
        return inherited
    return f"{inherited} {own}".strip()


DEFAULT_DUCKDB_MEMORY_LIMIT = "512MB"


def duckdb_memory_limit() -> str:
    """DuckDB's ``memory_limit`` while extraction writes a DuckDB warehouse
    (``CRM_DUCKDB_MEMORY_LIMIT``, default 512MB): DuckDB caches and spills within it, so
    the process's memory does not grow with the size of the tables it reads and writes.
    Only extraction sets it (``Warehouse.memory_limit``), and it restores the previous
    value: the setting belongs to the database instance, which dbt's connection in the
    same process shares, and the marts' joins need more."""
    value = os.environ.get("CRM_DUCKDB_MEMORY_LIMIT", "").strip() or DEFAULT_DUCKDB_MEMORY_LIMIT
    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", value, flags=re.IGNORECASE):
        raise ValueError(f"CRM_DUCKDB_MEMORY_LIMIT={value!r}: use a size such as 512MB or 2GB")
    return value


class Warehouse:
    """A connection to the warehouse with the few operations the pipeline needs."""

    def __init__(self, config: WarehouseConfig, read_only: bool = False):
        self.config = config
        self.kind = config.kind
        if self.kind == "duckdb":
            import duckdb

            config.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(str(config.duckdb_path), read_only=read_only)
        else:
            import psycopg2

            self._con = psycopg2.connect(
                config.url.replace("postgresql+psycopg2://", "postgresql://"), connect_timeout=10
            )
            self._con.autocommit = True
        self._in_tx = False

    @classmethod
    def duckdb_over(cls, config: WarehouseConfig, con: Any) -> "Warehouse":
        """This warehouse's operations run in the DuckDB connection ``con``, which has the
        PostgreSQL warehouse of ``config`` attached as its default catalog (see
        ``extract.sql_warehouse``): DuckDB SQL against the PostgreSQL tables, and
        ``transaction()`` is one PostgreSQL transaction."""
        self = cls.__new__(cls)
        self.config, self.kind, self._con, self._in_tx = config, "duckdb", con, False
        return self

    @property
    def stores_row_hashes(self) -> bool:
        """Whether every version in raw must carry its row hash. A DuckDB warehouse can
        compute a missing one from the typed columns when it is needed
        (``extract.stored_hash_sql``); PostgreSQL compares only what is stored."""
        return self.config.kind != "duckdb"

    # -- lifecycle -----------------------------------------------------------------
    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._con.close()

    def __enter__(self) -> "Warehouse":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator["Warehouse"]:
        """All statements inside commit together or not at all."""
        if self._in_tx:
            yield self
            return
        if self.kind == "duckdb":
            self._con.execute("BEGIN TRANSACTION")
        else:
            self._con.autocommit = False
        self._in_tx = True
        try:
            yield self
        except BaseException:
            self._con.rollback()
            raise
        else:
            self._con.commit()
        finally:
            self._in_tx = False
            if self.kind == "postgres":
                self._con.autocommit = True

    @contextlib.contextmanager
    def memory_limit(self, value: str | None = None) -> Iterator["Warehouse"]:
        """DuckDB only: ``memory_limit`` set to ``value`` (default ``duckdb_memory_limit()``)
        for the block, then put back."""
        if self.kind != "duckdb":
            yield self
            return
        previous = self.scalar("select current_setting('memory_limit')")
        self.execute(f"set memory_limit = '{value or duckdb_memory_limit()}'")
        try:
            yield self
        finally:
            with contextlib.suppress(Exception):
                # the setting reads back rounded ("18.8 GiB"): the default comes back
                # exactly with RESET, any other value as close as its text allows
                self.execute("reset memory_limit")
                if self.scalar("select current_setting('memory_limit')") != previous:
                    self.execute(f"set memory_limit = '{previous}'")

    # -- statements ----------------------------------------------------------------
    def execute(self, sql: str, params: tuple | list | None = None) -> None:
        if self.kind == "duckdb":
            self._con.execute(sql, params or [])
        else:
            with self._con.cursor() as cur:
                cur.execute(sql.replace("?", "%s") if params else sql, params)

    def query(self, sql: str, params: tuple | list | None = None) -> list[tuple]:
        if self.kind == "duckdb":
            return self._con.execute(sql, params or []).fetchall()
        with self._con.cursor() as cur:
            cur.execute(sql.replace("?", "%s") if params else sql, params)
            return cur.fetchall()

    def query_df(self, sql: str, params: tuple | list | None = None) -> pd.DataFrame:
        if self.kind == "duckdb":
            return self._con.execute(sql, params or []).df()
        with self._con.cursor() as cur:
            cur.execute(sql.replace("?", "%s") if params else sql, params)
            cols = [d[0] for d in cur.description]
            return pd.DataFrame(cur.fetchall(), columns=cols)

    def query_numeric_df(self, sql: str) -> pd.DataFrame:
        """``query_df`` for a query whose columns are all numbers (NULL becomes NaN).

        On PostgreSQL the rows come through ``COPY ... TO STDOUT`` as CSV, read by Arrow:
        fetching a million rows as tuples of Decimals took 9 s, this 1.5 s."""
        if self.kind == "duckdb":
            return self._con.execute(sql).df()
        import io

        buf = io.BytesIO()
        with self._con.cursor() as cur:
            cur.copy_expert(f"copy ({sql}) to stdout with (format csv, header)", buf)
        buf.seek(0)  # the header line is always there, even for no rows
        return pd.read_csv(buf, engine="pyarrow")

    def scalar(self, sql: str, params: tuple | list | None = None) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    # -- catalog -------------------------------------------------------------------
    def table_exists(self, schema: str, table: str) -> bool:
        return bool(
            self.scalar(
                "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                (schema, table),
            )
        )

    def columns(self, schema: str, table: str) -> list[str]:
        rows = self.query(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
            "order by ordinal_position",
            (schema, table),
        )
        return [r[0] for r in rows]

    def tables(self, schema: str) -> list[str]:
        rows = self.query(
            "select table_name from information_schema.tables where table_schema = ? order by table_name",
            (schema,),
        )
        return [r[0] for r in rows]

    def sql_type(self, logical: str) -> str:
        return (_DUCKDB_TYPES if self.kind == "duckdb" else _PG_TYPES)[logical]

    # -- bulk load -----------------------------------------------------------------
    def append_df(self, schema: str, table: str, df: pd.DataFrame) -> int:
        """Append a frame to an existing table (columns matched by name)."""
        if df.empty:
            return 0
        cols = ", ".join(ident(c) for c in df.columns)
        target = f"{ident(schema)}.{ident(table)}"
        if self.kind == "duckdb":
            self._con.register("_crm_append_frame", df)
            try:
                self._con.execute(f"insert into {target} ({cols}) select {cols} from _crm_append_frame")
            finally:
                self._con.unregister("_crm_append_frame")
        else:
            buf, options = _csv_for_copy(df)
            with self._con.cursor() as cur:
                cur.copy_expert(f"copy {target} ({cols}) from stdin with ({options})", buf)
        return len(df)

    # -- pipeline schemas ----------------------------------------------------------
    def ensure_schemas(self) -> None:
        for schema in PIPELINE_SCHEMAS:
            self.execute(f"create schema if not exists {schema}")

    def raw_ddl(self, entity: Entity) -> str:
        cols = {**entity.columns, **RAW_META_COLUMNS}
        body = ",\n  ".join(f"{ident(c)} {self.sql_type(t)}" for c, t in cols.items())
        return f"create table if not exists raw.{ident(entity.name)} (\n  {body}\n)"

    def ensure_raw_tables(self) -> None:
        self.ensure_schemas()
        for entity in ENTITIES:
            self.execute(self.raw_ddl(entity))

    def ensure_pii_salt(self) -> None:
        """The salt of the hashed keys of personal data, kept in the warehouse (ops.pii_salt).

        It is read by dbt through a relation, never passed as a var, so it does not end up
        in dbt's compiled SQL, logs or artifacts. ``CRM_PII_SALT`` sets it on first use;
        otherwise a random one is made once and kept (hashes stay comparable across runs).
        """
        import os
        import secrets

        self.ensure_schemas()
        self.execute("create table if not exists ops.pii_salt (salt varchar not null)")
        if not self.scalar("select count(*) from ops.pii_salt"):
            self.execute("insert into ops.pii_salt values (?)", (os.environ.get("CRM_PII_SALT") or secrets.token_hex(32),))


def _csv_for_copy(df: pd.DataFrame) -> tuple[Any, str]:
    """The frame as CSV for PostgreSQL's ``COPY ... FROM STDIN`` and the COPY options.

    Written by Arrow (about 10x pandas' ``to_csv``): NULL is an unquoted empty field and
    an empty string is quoted, which is COPY's CSV default; timestamps keep their
    microseconds. A frame Arrow cannot type (a column of mixed Python objects) goes
    through pandas with ``\\N`` for NULL, as before."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        table = pa.Table.from_pandas(df, preserve_index=False)
        out = io.BytesIO()
        pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
        out.seek(0)
        return out, "format csv"
    except (pa.ArrowException, TypeError, ValueError):
        text = io.StringIO()
        df.to_csv(text, index=False, header=False, na_rep="\\N", date_format="%Y-%m-%d %H:%M:%S.%f")
        text.seek(0)
        return text, "format csv, null '\\N'"
