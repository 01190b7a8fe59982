"""Shared test helpers.

NOTE (extraction engineer): this file was accidentally overwritten at ~10:23 while two of
us were writing it at the same time; the first part below is a RECONSTRUCTION of the
helpers other test files import (BASE_AS_OF, baseline_home, copy_home, open_wh,
published_checksum, run_cli, synthetic_audit) from how they are used — the author of
test_bad_input.py / test_publish.py / test_bi_role.py should check it against the
original. The second part (published checksums by URL, running ``crm`` in a subprocess)
is used by test_sources.py and test_backfill.py.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------
# reconstructed shared helpers
# ---------------------------------------------------------------------------------------
BASE_AS_OF = date(2026, 6, 30)
BASE_CUSTOMERS = 300


def open_wh(url: str):
    """A Warehouse for a URL (use as a context manager)."""
    from crm_pipeline.warehouse import Warehouse, WarehouseConfig

    return Warehouse(WarehouseConfig.from_url(url))


def run_cli(args: list[str]):
    """``crm`` in this process through typer's CliRunner (``.exit_code``, ``.output``)."""
    from typer.testing import CliRunner

    from crm_pipeline.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


_BASELINE: dict[str, Path] = {}


def baseline_home(tmp_path_factory) -> Path:
    """A state folder with a small demo source and one real ``crm run`` for BASE_AS_OF,
    built once per test session. Copy it (``copy_home``) before changing anything."""
    if "home" not in _BASELINE:
        home = tmp_path_factory.mktemp("baseline") / "home"
        made = run_cli(["demo-data", "--home", str(home), "--customers", str(BASE_CUSTOMERS),
                        "--until", BASE_AS_OF.isoformat()])
        assert made.exit_code == 0, made.output
        result = run_cli(["run", "--home", str(home), "--as-of", BASE_AS_OF.isoformat(),
                          "--customers", str(BASE_CUSTOMERS),
                          "--source", f"sqlite:///{home / 'source.sqlite'}",
                          "--warehouse", f"duckdb:///{home / 'warehouse.duckdb'}"])
        assert result.exit_code == 0, result.output
        _BASELINE["home"] = home
    return _BASELINE["home"]


def copy_home(src: Path, dst: Path) -> Path:
    """A copy of a state folder (source, warehouse, Airflow metadata) to change freely."""
    dst = Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.wal", "cosmos-cache"))
    return dst


def synthetic_audit(wh, as_of: date, variant: int = 0, customers: int = 20) -> None:
    """Audit tables for every published table, small and made up (``customers`` rows in
    each current table; ``variant`` changes the values), so publish can be tested
    without running dbt."""
    from crm_pipeline.publish import AUDIT_SCHEMA, PUBLISHED_TABLES

    wh.ensure_schemas()
    wh.execute(f"create schema if not exists {AUDIT_SCHEMA}")
    quarter = f"{as_of.year}-Q{(as_of.month - 1) // 3 + 1}"
    for t in PUBLISHED_TABLES:
        wh.execute(f"drop table if exists {AUDIT_SCHEMA}.{t.name}")
        key_col = "grade_quarter varchar" if t.key == "grade_quarter" else "as_of date"
        wh.execute(f"create table {AUDIT_SCHEMA}.{t.name} (customer_id bigint, {key_col}, "
                   f"segment varchar, value double precision)")
        key_value = quarter if t.key == "grade_quarter" else as_of
        for cid in range(1, customers + 1):
            wh.execute(f"insert into {AUDIT_SCHEMA}.{t.name} values (?, ?, ?, ?)",
                       (cid, key_value, f"segment-{(cid + variant) % 4}", float(cid * 10 + variant)))


def published_checksum(wh_or_url, schema: str = "published") -> dict[str, tuple[int, str]]:
    """An ordered checksum of every table in ``published``: table → (rows, sha256).
    Takes an open Warehouse or a warehouse URL."""
    if isinstance(wh_or_url, str):
        return published_checksum_url(wh_or_url, schema)
    wh = wh_or_url
    out = {}
    for table in wh.tables(schema):
        cols = [c for c in wh.columns(schema, table) if not VOLATILE.search(c)]
        rows = wh.query(f"select {', '.join(cols)} from {schema}.{table}")
        out[table] = _digest(cols, rows)
    return out


# ---------------------------------------------------------------------------------------
# checksums by URL and the crm command in a subprocess (test_sources, test_backfill)
# ---------------------------------------------------------------------------------------
#: columns that legitimately differ between two runs of the same date (timings, ids,
#: clocks); they are left out of the published checksum
VOLATILE = re.compile(r"^(run_id|published_at|loaded_at|_loaded_at|fitted_at|generated_at|seconds)$|_seconds$")

def _value_text(v) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, float):
        return repr(round(v, 9)) if v == v else "nan"
    if isinstance(v, Decimal):
        return repr(round(float(v), 9))
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return str(v)


def _connect(warehouse_url: str):
    if warehouse_url.startswith("duckdb:///"):
        import duckdb

        return "duckdb", duckdb.connect(warehouse_url[len("duckdb:///"):], read_only=True)
    import psycopg2

    return "postgres", psycopg2.connect(warehouse_url.replace("postgresql+psycopg2://", "postgresql://"))


def _query(kind, con, sql, params=()):
    if kind == "duckdb":
        cur = con.execute(sql, list(params))
        return [d[0] for d in cur.description], cur.fetchall()
    with con.cursor() as cur:
        cur.execute(sql.replace("?", "%s"), params or None)
        return [d[0] for d in cur.description], cur.fetchall()


def published_tables(warehouse_url: str, schema: str = "published") -> list[str]:
    kind, con = _connect(warehouse_url)
    try:
        _, rows = _query(kind, con, "select table_name from information_schema.tables where table_schema = ? "
                                    "order by table_name", (schema,))
        return [r[0] for r in rows]
    finally:
        con.close()


def table_checksum(warehouse_url: str, table: str, where: str = "", schema: str = "published") -> tuple[int, str]:
    """(rows, sha256) of a table's rows, sorted, over its non-volatile columns."""
    kind, con = _connect(warehouse_url)
    try:
        cols, _ = _query(kind, con, f"select * from {schema}.{table} where 1 = 0")
        keep = [c for c in cols if not VOLATILE.search(c)]
        _, rows = _query(kind, con, f"select {', '.join(keep)} from {schema}.{table} {where}")
    finally:
        con.close()
    return _digest(keep, rows)


def _digest(cols: list[str], rows: list) -> tuple[int, str]:
    lines = sorted("\x1f".join(_value_text(v) for v in r) for r in rows)
    h = hashlib.sha256(("\x1f".join(cols) + "\n").encode())
    for line in lines:
        h.update(line.encode("utf-8", "surrogatepass") + b"\n")
    return len(lines), h.hexdigest()


def published_checksum_url(warehouse_url: str, schema: str = "published") -> dict[str, tuple[int, str]]:
    """An ordered checksum of every table in ``published`` of the warehouse at a URL."""
    return {t: table_checksum(warehouse_url, t, schema=schema) for t in published_tables(warehouse_url, schema)}


def crm(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the ``crm`` command in a fresh process (each run imports Airflow afresh)."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "crm_pipeline.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=PROJECT_ROOT, timeout=timeout)


def psycopg2_url(url: str) -> str:
    """The URL for SQLAlchemy with psycopg2 (SQLAlchemy 2.1 defaults to psycopg 3 for postgresql://)."""
    return url.replace("postgresql://", "postgresql+psycopg2://", 1) if url.startswith("postgresql://") else url
