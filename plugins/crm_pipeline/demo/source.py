"""The demo source database: its tables (the five contract tables and the demo state
table), bringing a SQLite, PostgreSQL or MySQL/MariaDB database to the world's state at
the end of a day by upserting the rows that changed, and reading how far it was brought."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import sqlalchemy as sa
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.dialects import mysql as sa_mysql

from crm_pipeline import contract
from crm_pipeline.connections import sqlalchemy_url
from crm_pipeline.demo.dates import WORLD_START, as_date, end_of_day_us
from crm_pipeline.demo.generate import generate_world

#: Bumped whenever the generated data changes, so that an existing source is never
#: advanced with a different algorithm than the one that filled it.
GENERATOR_VERSION = "1"
STATE_TABLE = "_demo_state"


@dataclass(frozen=True)
class AdvanceResult:
    """What one :func:`advance_source` call did."""

    applied_from: dt.date
    applied_until: dt.date
    rows_changed: dict[str, int]
    rows_total: dict[str, int]


def _sa_type(logical: str, column: str) -> sa.types.TypeEngine:
    if logical == "int":
        return sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    if logical == "text":
        if column == "description":
            return sa.Text()
        return sa.Text().with_variant(sa.VARCHAR(255), "mysql", "mariadb")
    if logical == "money":
        return sa.Numeric(14, 2)
    if logical == "date":
        return sa.Date()
    if logical == "timestamp":
        return sa.TIMESTAMP().with_variant(sa_mysql.DATETIME(fsp=6), "mysql", "mariadb")
    if logical == "bool":
        return sa.Boolean(create_constraint=False)
    raise ValueError(f"unknown logical type {logical!r}")


def source_metadata(schema: str | None) -> sa.MetaData:
    """The source's tables: the five contract tables (each with an index on its change
    time) and the demo state table, in ``schema`` (None: the default one)."""
    md = sa.MetaData(schema=schema)
    kw = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}
    for e in contract.ENTITIES:
        cols = [sa.Column(name, _sa_type(t, name), primary_key=(name == e.key), autoincrement=False,
                          nullable=(name != e.key))
                for name, t in e.columns.items()]
        sa.Table(e.name, md, *cols, sa.Index(f"ix_{e.name}_{e.updated_at}", e.updated_at), **kw)
    sa.Table(STATE_TABLE, md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("seed", sa.BigInteger, nullable=False),
             sa.Column("customers", sa.BigInteger, nullable=False),
             sa.Column("applied_until", sa.Date, nullable=False),
             sa.Column("generator_version", sa.String(32), nullable=False), **kw)
    return md


def _state_table(md: sa.MetaData, schema: str | None) -> sa.Table:
    return md.tables[f"{schema}.{STATE_TABLE}" if schema else STATE_TABLE]


def _wire_values(s: pd.Series, logical: str, dialect: str) -> list:
    """One column as a list of Python values the DB driver binds as they are."""
    if logical == "int":
        if s.isna().any():
            return [None if v is pd.NA else int(v) for v in s.astype(object)]
        return s.to_numpy(np.int64).tolist()
    if logical == "text":
        return s.astype(object).where(s.notna(), None).tolist()
    if logical == "money":
        a = s.to_numpy(np.float64)
        if dialect == "sqlite":
            return [None if v != v else v for v in a.tolist()]
        return [None if v != v else f"{v:.2f}" for v in a.tolist()]
    if logical in ("date", "timestamp"):
        a = s.to_numpy()
        strings = np.datetime_as_string(a.astype("datetime64[D]" if logical == "date" else "datetime64[us]"),
                                        unit="D" if logical == "date" else "us")
        if logical == "timestamp":
            strings = np.strings.replace(strings, "T", " ")
        nat = np.isnat(a)
        return [None if n else v for v, n in zip(strings.tolist(), nat.tolist())]
    if logical == "bool":
        return s.to_numpy(bool).astype(np.int64).tolist()
    raise ValueError(logical)


def _pg_copy_text(rows: list[tuple]) -> io.StringIO:
    """Rows in PostgreSQL's COPY text format."""
    def field(v: Any) -> str:
        if v is None:
            return "\\N"
        if isinstance(v, str):
            return v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
        return str(v)

    buf = io.StringIO()
    buf.writelines("\t".join(map(field, r)) + "\n" for r in rows)
    buf.seek(0)
    return buf


def _latest_changes(df: pd.DataFrame, key: str, after_us: int | None) -> pd.DataFrame:
    """The newest version of every key that changed after ``after_us``."""
    if after_us is not None:
        df = df[df["updated_at"] > np.datetime64(after_us, "us")]
    return df.drop_duplicates(key, keep="last").sort_values(key, kind="stable").reset_index(drop=True)


def _engine(url: str) -> sa.Engine:
    """An engine for a source URL; a SQLite file's folder is created if missing. Plain
    ``postgresql://`` means psycopg2 (the upsert below uses its ``copy_expert``)."""
    parsed = sa.make_url(sqlalchemy_url(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return sa.create_engine(parsed)


def advance_source(url: str, until: dt.date, customers: int = 5000, seed: int = 42,
                   progress: bool = False, schema: str | None = None) -> AdvanceResult:
    """Bring the demo source at ``url`` to its state at the end of day ``until``.

    Creates the five contract tables and ``_demo_state`` if missing, then upserts the
    newest version of every row that changed after the last applied day, all in one
    transaction. Advancing to the day already applied is a no-op; going back, or using a
    different ``seed``/``customers`` than the source was filled with, raises
    ``ValueError``. ``schema`` is a PostgreSQL schema or a MySQL/MariaDB database
    (created if missing); SQLite has none.
    """
    until = as_date(until)
    today = dt.datetime.now(dt.timezone.utc).date()
    if until >= today:
        raise ValueError(f"{until} has not ended yet (today is {today} UTC): the demo source holds only "
                         "what has happened, up to the end of yesterday")
    if not 0 <= int(seed) < 2**63:
        raise ValueError("seed must be a non-negative 63-bit integer")
    engine = _engine(url)
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql", "mysql", "mariadb"):
        raise ValueError(f"unsupported source dialect {dialect!r}")
    if schema is not None and dialect == "sqlite":
        raise ValueError("SQLite sources have no schema; put the file where you want it")
    md = source_metadata(schema)
    try:
        return _advance(engine, dialect, md, _state_table(md, schema), until, int(customers), int(seed), progress,
                        schema)
    finally:
        engine.dispose()


def _advance(engine: sa.Engine, dialect: str, md: sa.MetaData, state: sa.Table, until: dt.date,
             customers: int, seed: int, progress: bool, schema: str | None) -> AdvanceResult:
    # DDL first and on its own: MySQL commits implicitly around DDL anyway.
    with engine.begin() as conn:
        if schema is not None:
            quoted = conn.dialect.identifier_preparer.quote(schema)
            conn.exec_driver_sql(f"CREATE {'SCHEMA' if dialect == 'postgresql' else 'DATABASE'} IF NOT EXISTS {quoted}")
        md.create_all(conn, checkfirst=True)

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   disable=not progress)
    with bar, engine.begin() as conn:
        sel = sa.select(state).where(state.c.id == 1)
        if dialect != "sqlite":
            sel = sel.with_for_update()
        row = conn.execute(sel).mappings().first()
        tables = {e.name: md.tables[f"{schema}.{e.name}" if schema else e.name] for e in contract.ENTITIES}
        if row is None:
            for name, t in tables.items():
                if conn.execute(sa.select(sa.func.count()).select_from(t)).scalar():
                    raise ValueError(f"table {name} already holds rows but there is no {STATE_TABLE}: "
                                     "not a demo source; use an empty database")
            prev = None
        else:
            if (row["seed"], row["customers"]) != (seed, customers):
                raise ValueError(f"source was generated with seed={row['seed']}, customers={row['customers']}; "
                                 f"asked for seed={seed}, customers={customers}; use a fresh source")
            if row["generator_version"] != GENERATOR_VERSION:
                raise ValueError(f"source was generated by demo generator version {row['generator_version']}, "
                                 f"this is version {GENERATOR_VERSION}; use a fresh source")
            prev = as_date(row["applied_until"])
            if until < prev:
                raise ValueError(f"source already advanced to {prev.isoformat()}; "
                                 "use a fresh source to go back")
        applied_from = WORLD_START if prev is None else prev + dt.timedelta(days=1)
        changed = {e.name: 0 for e in contract.ENTITIES}
        if prev is None or until > prev:
            gen_task = bar.add_task("generating demo world", total=1)
            world = generate_world(customers, seed, until)
            bar.advance(gen_task)
            after = None if prev is None else end_of_day_us(prev)
            raw = conn.connection.dbapi_connection
            for e in contract.ENTITIES:
                rows = _latest_changes(world[e.name], e.key, after)
                changed[e.name] = len(rows)
                task = bar.add_task(f"writing {e.name}", total=len(rows))
                _upsert(conn, raw, dialect, tables[e.name], e, rows, lambda k, t=task: bar.advance(t, k))
            values = {"seed": seed, "customers": customers, "applied_until": until,
                      "generator_version": GENERATOR_VERSION}
            if row is None:
                conn.execute(state.insert().values(id=1, **values))
            else:
                conn.execute(state.update().where(state.c.id == 1).values(**values))
        totals = {name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar())
                  for name, t in tables.items()}
    return AdvanceResult(applied_from=applied_from, applied_until=until, rows_changed=changed, rows_total=totals)


def _upsert(conn: sa.Connection, raw: Any, dialect: str, table: sa.Table, entity: contract.Entity,
            rows: pd.DataFrame, advance: Callable[[int], None], chunk: int = 20_000) -> None:
    """Insert or update ``rows`` by the entity's key: COPY into a staging table then one
    INSERT ... ON CONFLICT on PostgreSQL, batched upserts on SQLite and MySQL/MariaDB."""
    if rows.empty:
        return
    prep = conn.dialect.identifier_preparer
    qt = prep.format_table(table)
    cols = list(entity.columns)
    qcols = ", ".join(prep.quote(x) for x in cols)
    others = [x for x in cols if x != entity.key]
    values = [_wire_values(rows[x], t, dialect) for x, t in entity.columns.items()]
    data = list(zip(*values))
    cur = raw.cursor()
    try:
        if dialect == "sqlite":
            sql = (f"INSERT INTO {qt} ({qcols}) VALUES ({', '.join('?' * len(cols))}) "
                   f"ON CONFLICT ({prep.quote(entity.key)}) DO UPDATE SET "
                   + ", ".join(f"{prep.quote(x)} = excluded.{prep.quote(x)}" for x in others))
        elif dialect == "postgresql":
            stage = prep.quote(f"_demo_stage_{entity.name}")
            cur.execute(f"CREATE TEMP TABLE {stage} (LIKE {qt}) ON COMMIT DROP")
            for i in range(0, len(data), chunk):
                cur.copy_expert(f"COPY {stage} ({qcols}) FROM STDIN", _pg_copy_text(data[i:i + chunk]))
                advance(len(data[i:i + chunk]))
            cur.execute(f"INSERT INTO {qt} ({qcols}) SELECT {qcols} FROM {stage} "
                        f"ON CONFLICT ({prep.quote(entity.key)}) DO UPDATE SET "
                        + ", ".join(f"{prep.quote(x)} = EXCLUDED.{prep.quote(x)}" for x in others))
            cur.execute(f"DROP TABLE {stage}")
            return
        else:
            sql = (f"INSERT INTO {qt} ({qcols}) VALUES ({', '.join(['%s'] * len(cols))}) "
                   f"ON DUPLICATE KEY UPDATE "
                   + ", ".join(f"{prep.quote(x)} = VALUES({prep.quote(x)})" for x in others))
        for i in range(0, len(data), chunk):
            cur.executemany(sql, data[i:i + chunk])
            advance(len(data[i:i + chunk]))
    finally:
        cur.close()


def source_state(url: str, schema: str | None = None) -> dict | None:
    """How a demo source was made and how far it was advanced (seed, customers,
    applied_until), or None for an empty/new source."""
    engine = _engine(url)
    try:
        state = _state_table(source_metadata(schema), schema)
        if not sa.inspect(engine).has_table(STATE_TABLE, schema=schema):
            return None
        with engine.connect() as conn:
            row = conn.execute(sa.select(state).where(state.c.id == 1)).mappings().first()
        if row is None:
            return None
        return {"seed": int(row["seed"]), "customers": int(row["customers"]),
                "applied_until": as_date(row["applied_until"])}
    finally:
        engine.dispose()
