"""Every DAG imports cleanly, does no work at import time, and has the pinned daily interval."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_py(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        # a warehouse and source that do not exist: importing must not touch them
        "AIRFLOW_CONN_CRM_WAREHOUSE": f"duckdb:///{tmp_path / 'absent' / 'w.duckdb'}",
        "AIRFLOW_CONN_CRM_SOURCE": "postgresql://nobody@127.0.0.1:1/none",
    }
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=300)


def test_every_dag_imports_without_errors_and_without_side_effects(tmp_path):
    proc = _run_py(
        """
        import json
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder=%r)
        print(json.dumps({"errors": {k: v for k, v in bag.import_errors.items()}, "dags": sorted(bag.dag_ids)}))
        """ % str(ROOT / "dags"),
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["errors"] == {}
    assert "crm_nightly" in out["dags"]
    # importing the DAG created no warehouse file
    assert not (tmp_path / "absent").exists()


def test_timetable_gives_one_full_day_per_run(tmp_path):
    proc = _run_py(
        """
        from datetime import datetime, timezone
        from airflow.dag_processing.dagbag import DagBag
        from airflow.serialization.encoders import coerce_to_core_timetable
        dag = DagBag(dag_folder=%r).dags["crm_nightly"]
        print(sorted(a.uri for a in dag.get_task("publish").outlets))
        print(dag.max_active_runs)
        tt = coerce_to_core_timetable(dag.timetable)
        iv = tt.infer_manual_data_interval(run_after=datetime(2026, 7, 1, tzinfo=timezone.utc))
        print(iv.start.isoformat(), iv.end.isoformat())
        iv = tt.infer_manual_data_interval(run_after=datetime(2026, 7, 1, 9, 30, tzinfo=timezone.utc))
        print(iv.start.isoformat(), iv.end.isoformat())
        """ % str(ROOT / "dags" / "crm_nightly.py"),
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()[-4:]
    # every published table is an Airflow Asset that downstream DAGs can schedule on
    from crm_pipeline.publish import PUBLISHED_TABLES

    assert lines[0] == str(sorted(f"crm://published/{t.name}" for t in PUBLISHED_TABLES))
    lines = lines[1:]
    assert lines[0] == "1"
    # a run after midnight of 1 July covers all of 30 June, and 9:30 the same morning too
    assert lines[1] == "2026-06-30T00:00:00+00:00 2026-07-01T00:00:00+00:00"
    assert lines[2] == "2026-06-30T00:00:00+00:00 2026-07-01T00:00:00+00:00"


def test_as_of_is_the_day_the_interval_covers():
    from crm_pipeline.pipeline import as_of_from_interval

    assert as_of_from_interval(datetime(2026, 7, 1, tzinfo=timezone.utc)) == date(2026, 6, 30)
    assert as_of_from_interval(datetime(2026, 1, 1)) == date(2025, 12, 31)


def test_airflow_cli_waits_for_a_locked_sqlite_metadata_db(tmp_path):
    """Another writer holding the SQLite metadata DB for 20 s (well over pysqlite's default
    5 s busy timeout) delays an Airflow CLI write instead of failing it with
    "database is locked" (what ``airflow backfill create`` hit next to a busy scheduler)."""
    import sqlite3
    import time

    from crm_pipeline.airflow_local import sqlite_metadata_env

    airflow_home = tmp_path / "airflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_HOME": str(airflow_home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "no-dags"), **sqlite_metadata_env(airflow_home)})
    airflow = str(Path(sys.executable).parent / "airflow")
    migrated = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrated.returncode == 0, migrated.stderr[-3000:]

    holder = sqlite3.connect(airflow_home / "airflow.db", isolation_level=None)
    holder.execute("begin immediate")  # the write lock, until commit
    started = time.monotonic()
    writer = subprocess.Popen([airflow, "variables", "set", "crm_lock_probe", "42"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(20)
        assert writer.poll() is None, "the CLI finished while the lock was held"
    finally:
        holder.execute("commit")
        holder.close()
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, (out + err)[-3000:]
    assert time.monotonic() - started >= 20
    with sqlite3.connect(airflow_home / "airflow.db") as con:
        assert con.execute("select count(*) from variable where key = 'crm_lock_probe'").fetchall() == [(1,)]
