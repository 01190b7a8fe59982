"""Warehouse access: one small interface over the embedded DuckDB file, PostgreSQL and a
local Spark session (``crm_pipeline.spark_session``).

Owns the schemas the pipeline writes outside dbt (raw, quarantine, ops, published),
the DDL of the raw tables derived from the source contract, and transactions. dbt owns
staging, intermediate, audit and config.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator

import pandas as pd

from crm_pipeline import settings, spark_session
from crm_pipeline.connections import WarehouseConfig
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


class Warehouse:
    """A connection to the warehouse with the few operations the pipeline needs."""

    def __init__(self, config: WarehouseConfig, read_only: bool = False):
        self.config = config
        self.kind = config.kind
        if self.kind == "duckdb":
            import duckdb

            config.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(str(config.duckdb_path), read_only=read_only)
        elif self.kind == "spark":
            self._con = spark_session.SparkSql(spark_session.open_session(config.spark_dir))
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

    @property
    def session(self) -> Any:
        """The Spark session of a Spark warehouse (to write DataFrames)."""
        if self.kind != "spark":
            raise NotImplementedError("only a Spark warehouse has a Spark session")
        return self._con.spark

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
        """All statements inside commit together or not at all (not on Spark, which has no
        multi-statement transactions: docs/design.md, "Publishing on Spark")."""
        if self._in_tx or self.kind == "spark":
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
        self.execute(f"set memory_limit = '{value or settings.duckdb_memory_limit()}'")
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
        if self.kind != "postgres":
            self._con.execute(sql, params or [])
        else:
            with self._con.cursor() as cur:
                cur.execute(sql.replace("?", "%s") if params else sql, params)

    def query(self, sql: str, params: tuple | list | None = None) -> list[tuple]:
        if self.kind != "postgres":
            return self._con.execute(sql, params or []).fetchall()
        with self._con.cursor() as cur:
            cur.execute(sql.replace("?", "%s") if params else sql, params)
            return cur.fetchall()

    def query_df(self, sql: str, params: tuple | list | None = None) -> pd.DataFrame:
        if self.kind != "postgres":
            return self._con.execute(sql, params or []).df()
        with self._con.cursor() as cur:
            cur.execute(sql.replace("?", "%s") if params else sql, params)
            cols = [d[0] for d in cur.description]
            return pd.DataFrame(cur.fetchall(), columns=cols)

    def query_arrow(self, sql: str) -> Any:
        """DuckDB only: the result as a ``pyarrow.Table`` (types kept: decimals, dates)."""
        if self.kind != "duckdb":
            raise NotImplementedError("query_arrow reads a DuckDB warehouse")
        return self._con.execute(sql).fetch_arrow_table()

    def query_numeric_df(self, sql: str) -> pd.DataFrame:
        """``query_df`` for a query whose columns are all numbers (NULL becomes NaN).

        On PostgreSQL the rows come through ``COPY ... TO STDOUT`` as CSV, read by Arrow,
        several times faster than fetching tuples of Decimals (docs/performance.md)."""
        if self.kind != "postgres":
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
        if self.kind == "spark":
            return self._con.table_exists(schema, table)
        return bool(
            self.scalar(
                "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                (schema, table),
            )
        )

    def columns(self, schema: str, table: str) -> list[str]:
        if self.kind == "spark":
            return [name for name, _ in self._con.columns(schema, table)]
        rows = self.query(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
            "order by ordinal_position",
            (schema, table),
        )
        return [r[0] for r in rows]

    def tables(self, schema: str) -> list[str]:
        if self.kind == "spark":
            return self._con.tables(schema)
        rows = self.query(
            "select table_name from information_schema.tables where table_schema = ? order by table_name",
            (schema,),
        )
        return [r[0] for r in rows]

    def comments(self, schema: str, table: str) -> tuple[str | None, dict[str, str]]:
        """The comment of a table and of each of its columns (what dbt's persist_docs wrote)."""
        if self.kind == "spark":
            return self._con.table_comment(schema, table), {
                name: text for name, text in self._con.columns(schema, table) if text}
        if self.kind == "duckdb":
            found = self.query("select comment from duckdb_tables() where schema_name = ? and table_name = ?",
                               (schema, table))
            columns = self.query("select column_name, comment from duckdb_columns() where schema_name = ? "
                                 "and table_name = ? and comment is not null", (schema, table))
        else:
            relation = f"{ident(schema)}.{ident(table)}"
            found = self.query("select obj_description(to_regclass(?), 'pg_class')", (relation,))
            columns = self.query("select attname, col_description(attrelid, attnum) from pg_attribute where "
                                 "attrelid = to_regclass(?) and attnum > 0 and not attisdropped and "
                                 "col_description(attrelid, attnum) is not null", (relation,))
        return (found[0][0] if found else None), {name: text for name, text in columns if text}

    def set_comments(self, schema: str, table: str, table_comment: str | None, columns: dict[str, str]) -> None:
        """Write table and column comments (BI tools show them beside the names)."""
        def literal(text: str) -> str:
            return "'" + text.replace("'", "''") + "'"

        relation = f"{ident(schema)}.{ident(table)}"
        if table_comment:
            self.execute(f"comment on table {relation} is {literal(table_comment)}")
        existing = set(self.columns(schema, table))
        for column, text in columns.items():
            if column in existing:
                self.execute(f"comment on column {relation}.{ident(column)} is {literal(text)}")

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
        import secrets

        self.ensure_schemas()
        self.execute("create table if not exists ops.pii_salt (salt varchar not null)")
        if not self.scalar("select count(*) from ops.pii_salt"):
            self.execute("insert into ops.pii_salt values (?)", (settings.pii_salt() or secrets.token_hex(32),))


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
