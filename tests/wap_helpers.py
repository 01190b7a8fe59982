"""Helpers of the write-audit-publish, bad-input, BI-role and PII tests.

(Kept apart from ``tests/helpers.py``, which other test modules own.)

* ``published_checksum(wh)``: an ordered checksum of every table of ``published`` (table
  names, column names and every row, all columns), to prove a stopped run changed nothing.
* ``baseline_home(tmp_path_factory)``: one small demo source (300 customers) and one
  warehouse built by a real ``crm run`` for ``BASE_AS_OF``, made once per test session and
  copied (``copy_home``) by each test that changes it.
* ``synthetic_audit(wh, as_of, ...)``: small hand-made audit tables, enough for
  ``publish()`` without running dbt.
* ``run_cli`` (in-process) and ``run_cli_process`` (a fresh process: what a terminal shows).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from crm_pipeline.warehouse import Warehouse, WarehouseConfig

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BASE_AS_OF = date(2026, 6, 30)
BASE_CUSTOMERS = 300

_BASELINE: dict[str, Path] = {}


def _norm(v) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, float):
        return repr(round(v, 9)) if v == v else "nan"
    if isinstance(v, Decimal):
        return str(v.normalize()) if v == v else "NaN"
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return repr(v)


def published_checksum(wh: Warehouse, schema: str = "published") -> str:
    """md5 over every table of ``schema``: its name, its columns and all rows in sorted order."""
    h = hashlib.md5()
    for table in wh.tables(schema):
        cols = wh.columns(schema, table)
        h.update(f"table {table} ({', '.join(cols)})\n".encode())
        rows = sorted("\x1f".join(_norm(v) for v in row) for row in wh.query(f"select * from {schema}.{table}"))
        for r in rows:
            h.update(r.encode("utf-8", "surrogatepass"))
            h.update(b"\n")
    return h.hexdigest()


def open_wh(url_or_path) -> Warehouse:
    return Warehouse(WarehouseConfig.from_url(str(url_or_path)))


def run_cli(args: list[str]):
    """``crm <args>`` in-process, as a user would run it; returns the click Result.

    ``crm run`` exports the connections and ``CRM_HOME`` into the process environment for
    Airflow; they are restored afterwards, so that a later ``crm run --home OTHER`` in this
    test session cannot silently fall back to this run's warehouse (the exported
    ``AIRFLOW_CONN_CRM_WAREHOUSE`` wins over ``--home`` in ``cli._warehouse_url``)."""
    from typer.testing import CliRunner

    from crm_pipeline.cli import app

    saved = dict(os.environ)
    try:
        return CliRunner().invoke(app, [str(a) for a in args])
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update(saved)


def run_cli_process(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    """``crm <args>`` in a fresh process (its own Airflow configuration); stdout and stderr
    are exactly what a user's terminal would show."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_CONN_CRM", "AIRFLOW__", "AIRFLOW_HOME", "CRM_HOME", "CRM_FAULT"))}
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "crm_pipeline.cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT)


def baseline_home(tmp_path_factory) -> Path:
    """The session's baseline: demo source + one successful ``crm run`` (DuckDB).

    ``CRM_TEST_BASELINE_HOME`` may name an existing baseline folder (made by the same two
    commands) to skip the run while iterating on the tests; tests only ever copy it."""
    reuse = os.environ.get("CRM_TEST_BASELINE_HOME")
    if reuse and (Path(reuse) / "warehouse.duckdb").exists():
        return Path(reuse)
    if "home" not in _BASELINE:
        home = tmp_path_factory.mktemp("wap-baseline") / "home"
        made = run_cli(["demo-data", "--home", home, "--customers", BASE_CUSTOMERS, "--until", BASE_AS_OF.isoformat()])
        assert made.exit_code == 0, made.output
        result = run_cli(["run", "--home", home, "--as-of", BASE_AS_OF.isoformat(), "--customers", BASE_CUSTOMERS,
                          "--source", f"sqlite:///{home / 'source.sqlite'}",
                          "--warehouse", f"duckdb:///{home / 'warehouse.duckdb'}"])
        assert result.exit_code == 0, result.output
        _BASELINE["home"] = home
    return _BASELINE["home"]


def copy_home(src: Path, dst: Path) -> Path:
    """A private copy of a state folder (warehouse with its WAL, source, Airflow metadata)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("logs", "docs", "*.publish.lock"))
    return dst


# -- synthetic audit tables ----------------------------------------------------------


def synthetic_audit(wh: Warehouse, as_of: date, customers: int = 20, variant: int = 0) -> None:
    """(Re)create the three required current audit tables and one history table.

    ``variant`` changes the values, so a second publish has something to change."""
    wh.ensure_schemas()
    wh.execute("create schema if not exists audit")
    for t in ("customer_segments", "customer_rfm", "customer_value_tiers", "segment_profiles"):
        wh.execute(f"drop table if exists audit.{t}")
    wh.execute("create table audit.customer_segments (customer_id bigint, segment varchar, as_of date)")
    wh.execute("create table audit.customer_rfm (customer_id bigint, recency_days integer, "
               "monetary decimal(14,2), as_of date)")
    wh.execute("create table audit.customer_value_tiers (customer_id bigint, value_tier varchar, as_of date)")
    wh.execute("create table audit.segment_profiles (as_of date, segment varchar, customers bigint)")
    segs = ["Champion", "Loyal", "At risk", "Prospect"]
    for cid in range(1, customers + 1):
        seg = segs[(cid + variant) % len(segs)]
        wh.execute("insert into audit.customer_segments values (?, ?, ?)", (cid, seg, as_of))
        wh.execute("insert into audit.customer_rfm values (?, ?, ?, ?)",
                   (cid, (cid * 7 + variant) % 365, Decimal(f"{cid * 10 + variant}.50"), as_of))
        wh.execute("insert into audit.customer_value_tiers values (?, ?, ?)",
                   (cid, "VIP" if cid == 1 else "Small", as_of))
    for i, seg in enumerate(segs):
        wh.execute("insert into audit.segment_profiles values (?, ?, ?)", (as_of, seg, 5 + i + variant))
