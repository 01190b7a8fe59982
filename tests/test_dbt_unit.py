"""dbt unit tests (every business rule with hand-worked rows) on DuckDB and on PostgreSQL.

The nightly build leaves unit tests out (they test SQL, not data); CI runs them here on
both adapters, after building every model empty (`--empty`) so their inputs exist.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import psycopg2
import pytest

from crm_pipeline.warehouse import Warehouse, WarehouseConfig

ROOT = Path(__file__).resolve().parents[1]
DBT_DIR = ROOT / "dbt_project"


def _dbt(args: list[str], env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    return subprocess.run(
        ["dbt", *args, "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
         "--target-path", str(tmp / "target"), "--log-path", str(tmp / "logs"),
         "--vars", "{as_of: '2026-06-30'}"],
        env=full, capture_output=True, text=True, timeout=900,
    )


def _run_unit_tests(env: dict[str, str], tmp: Path, url: str) -> None:
    with Warehouse(WarehouseConfig.from_url(url)) as wh:
        wh.ensure_raw_tables()
        wh.ensure_pii_salt()
        # the CLV step's tables are dbt sources, made by the Python step before the marts
        from crm_pipeline import clv_step

        clv_step.ensure_tables(wh)
    built = _dbt(["build", "--empty", "--exclude-resource-type", "unit_test", "--exclude-resource-type", "test"], env, tmp)
    assert built.returncode == 0, built.stdout[-4000:]
    tested = _dbt(["test", "--select", "test_type:unit"], env, tmp)
    assert tested.returncode == 0, tested.stdout[-6000:]
    summary = [line for line in tested.stdout.splitlines() if "Done. PASS=" in line][-1]
    passed = int(summary.split("PASS=")[1].split()[0])
    import json

    manifest = json.loads((tmp / "target" / "manifest.json").read_text())
    defined = len(manifest.get("unit_tests", {}))
    assert defined >= 16
    assert passed == defined, summary
    assert "ERROR=0" in summary and "FAIL" not in summary.split("Done.")[1].replace("FAIL=0", "")


def test_dbt_unit_tests_on_duckdb(tmp_path):
    path = tmp_path / "unit.duckdb"
    _run_unit_tests({"CRM_DBT_TARGET": "duckdb", "CRM_DUCKDB_PATH": str(path)}, tmp_path, f"duckdb:///{path}")


@pytest.mark.postgres
def test_dbt_unit_tests_on_postgres(tmp_path):
    name = f"crm_unit_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/test")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"create database {name}")
    try:
        _run_unit_tests(
            {"CRM_DBT_TARGET": "postgres", "CRM_PG_HOST": "127.0.0.1", "CRM_PG_PORT": "5432",
             "CRM_PG_USER": "postgres", "CRM_PG_DBNAME": name},
            tmp_path, f"postgresql://postgres@127.0.0.1:5432/{name}",
        )
    finally:
        with admin.cursor() as cur:
            cur.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (name,))
            cur.execute(f"drop database if exists {name}")
        admin.close()
