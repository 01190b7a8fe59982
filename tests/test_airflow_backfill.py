"""``crm backfill`` and Airflow 3's own backfill (scheduler) publish the same rows.

Two state folders read the same demo source (made once up to D2, then copied):

* home A: ``crm backfill --from D1 --to D2`` (each date in order, ``dag.test`` in-process);
* home B: the real Airflow 3 stack (``airflow standalone``: scheduler, dag-processor,
  api-server, triggerer; LocalExecutor; SQLite metadata DB) running the backfill made
  before it starts (``airflow db migrate``, ``airflow dags reserialize`` with the DAG
  paused, ``airflow backfill create --dag-id crm_nightly --from-date D1 --to-date D2
  --reprocess-behavior completed --max-active-runs 1``); ``airflow dags unpause`` once
  the api-server answers.

Then every history table's D1 and D2 rows, and the whole ``published`` schema (the current
tables show D2 in both), are compared without the wall-clock columns (run ids, timings,
``published_at``...); every backfill run in B must have succeeded.

What Airflow 3.3.2 does, checked here rather than assumed:

* The DAG's timetable is ``CronDataIntervalTimetable("0 0 * * *")``; a backfill selects runs
  by *logical date*, which for this timetable is the start of the data interval. So
  ``--from-date D1 --to-date D2`` creates exactly the runs with intervals [D1, D1+1) and
  [D2, D2+1), i.e. ``as_of`` D1 and D2 (their run ids carry the run date,
  ``backfill__<D+1>``). The test asserts the intervals in the metadata DB.
* A backfill's concurrency is its own (``--max-active-runs``, default 10): the DAG's
  ``max_active_runs=1`` does not apply. Without ``--max-active-runs 1`` both dates run at
  once against one DuckDB file, D1's dbt models read D2's extracted rows and D1's history
  slice comes out different (seen while writing this test), so the flag is required.
* Backfill runs only start while the DAG is unpaused (the scheduler skips paused DAGs;
  the 3.3.2 CLI has no "keep paused" option). Unpausing a ``catchup=False`` DAG makes the
  scheduler create one scheduled run for the latest interval (as_of yesterday), which would
  run at the same time as the backfill (different concurrency pools), write the same DuckDB
  file and publish a newer as_of. The stack here therefore runs with
  ``[scheduler] use_job_schedule = False``: the scheduler creates no scheduled runs at all but
  still starts queued backfill runs, so B ends with exactly D1 and D2 like A. DAGs are
  created unpaused (``dags_are_paused_at_creation = False``).

The stack is stopped in a ``finally`` with SIGINT (SIGTERM to the standalone process leaves
its children behind): first to its components, then to ``airflow standalone`` itself (see
``airflow_stack.stop`` for why not all at once), with SIGTERM and SIGKILL to the process group only as a
fallback; the test then checks that nothing of the group is left. A process started from a
non-interactive shell's background job inherits SIGINT as *ignored*, and a Python started
that way never turns SIGINT into KeyboardInterrupt: the stack is started with SIGINT reset
to the default so that it can be stopped at all.

Runtime on a 2-core machine: about 3-5 minutes (A runs next to B's start-up and first run).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import pytest

from crm_pipeline.airflow_local import sqlite_metadata_env
import airflow_stack
from helpers import published_checksum_url, table_checksum

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "crm_nightly"
D1, D2 = date(2026, 6, 29), date(2026, 6, 30)
CUSTOMERS = 300
#: history tables keyed by as_of (customer_credit_grades is keyed by quarter; it is covered
#: by the whole-schema comparison)
HISTORY_TABLES = ("customer_segment_history", "segment_profiles", "segment_migration", "pareto_concentration",
                  "customer_lifetime_value", "clv_model_runs")
DAG_PARSE_TIMEOUT = 240
BACKFILL_TIMEOUT = 12 * 60
CRM_BACKFILL_TIMEOUT = 10 * 60


def _stack_env(home: Path) -> dict[str, str]:
    (trigger_logs_port,) = airflow_stack.free_ports(1)
    return {
        **airflow_stack.base_env(home),
        **sqlite_metadata_env(home / "airflow"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # the triggerer's log server (8794 by default)
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_logs_port),
        "AIRFLOW_CONN_CRM_SOURCE": f"sqlite:///{home / 'source.sqlite'}",
        "AIRFLOW_CONN_CRM_WAREHOUSE": f"duckdb:///{home / 'warehouse.duckdb'}",
    }


def _meta(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows from Airflow's metadata DB ([] while it does not exist yet or is being migrated)."""
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError:
        return []




def test_crm_backfill_and_airflow_backfill_publish_the_same_rows(tmp_path):
    home_a, home_b = tmp_path / "A", tmp_path / "B"
    made = subprocess.run([sys.executable, "-m", "crm_pipeline.cli", "demo-data", "--home", str(home_a),
                           "--customers", str(CUSTOMERS), "--until", D2.isoformat()],
                          env=airflow_stack.clean_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    home_b.mkdir()
    shutil.copy2(home_a / "source.sqlite", home_b / "source.sqlite")

    env_b = _stack_env(home_b)
    meta_db = home_b / "airflow" / "airflow.db"
    airflow_bin = str(Path(sys.executable).parent / "airflow")
    crm_log, stack_log = tmp_path / "crm-backfill.log", tmp_path / "standalone.log"
    crm_proc = standalone = None
    started = time.monotonic()
    try:
        # A and B use separate state folders, so they may run side by side (saves ~1.5 min)
        crm_proc = airflow_stack.start([sys.executable, "-m", "crm_pipeline.cli", "backfill", "--from", D1.isoformat(),
                           "--to", D2.isoformat(), "--home", str(home_a)], airflow_stack.clean_env(), crm_log)

        # B: the metadata DB, the serialized DAG (paused) and the backfill are made before
        # the stack starts; the DAG is unpaused once the api-server answers. Made next to
        # a running scheduler and dag-processor, `backfill create` failed now and then
        # with SQLite's "database is locked", at once and not after the busy timeout (a
        # read transaction that must become a write while another process writes gets
        # SQLITE_BUSY without waiting); unpaused before the api-server is up, the first
        # task failed to reach the execution API.
        def airflow(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
            return subprocess.run([airflow_bin, *args], env=env or env_b, cwd=ROOT, capture_output=True,
                                  text=True, timeout=timeout)

        def ok(done: subprocess.CompletedProcess) -> None:
            assert done.returncode == 0, f"{' '.join(done.args[1:])}:\n{(done.stdout + done.stderr)[-4000:]}"

        ok(airflow("db", "migrate"))
        ok(airflow("dags", "reserialize", timeout=DAG_PARSE_TIMEOUT,
                   env={**env_b, "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True"}))
        assert _meta(meta_db, "select filename, stacktrace from import_error") == []
        assert _meta(meta_db, "select is_paused from dag where dag_id = ?", (DAG_ID,)) == [(1,)]
        ok(airflow("backfill", "create", "--dag-id", DAG_ID, "--from-date", D1.isoformat(), "--to-date",
                   D2.isoformat(), "--reprocess-behavior", "completed", "--max-active-runs", "1"))

        runs = _meta(meta_db, "select run_id, date(logical_date), date(data_interval_start), "
                              "date(data_interval_end) from dag_run where dag_id = ? and run_type = 'backfill' "
                              "order by logical_date", (DAG_ID,))
        assert [r[1:] for r in runs] == [
            (d.isoformat(), d.isoformat(), (d + timedelta(days=1)).isoformat()) for d in (D1, D2)
        ], runs
        assert _meta(meta_db, "select max_active_runs from backfill") == [(1,)]
        assert _meta(meta_db, "select count(*) from dag_run where run_type != 'backfill'") == [(0,)]

        standalone = airflow_stack.start([airflow_bin, "standalone"], env_b, stack_log)
        health = f"http://127.0.0.1:{env_b['AIRFLOW__API__PORT']}/api/v2/monitor/health"

        def api_up():
            try:
                with urllib.request.urlopen(health, timeout=5) as resp:
                    return resp.status == 200
            except OSError:
                return False

        airflow_stack.wait("the api-server in B", api_up, DAG_PARSE_TIMEOUT, [(standalone, stack_log)])
        for attempt in range(5):  # a one-row write; SQLite may refuse it at once while the stack starts
            unpaused = airflow("dags", "unpause", DAG_ID)
            if unpaused.returncode == 0 or "database is locked" not in unpaused.stdout + unpaused.stderr:
                break
            time.sleep(2)
        ok(unpaused)
        try:
            crm_rc = crm_proc.wait(CRM_BACKFILL_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"crm backfill did not finish in {CRM_BACKFILL_TIMEOUT} s:\n{airflow_stack.tail(crm_log)}")
        crm_out = crm_log.read_text(errors="replace")
        assert crm_rc == 0, crm_out
        assert f"{D1}: success" in crm_out and f"{D2}: success" in crm_out, crm_out
        assert crm_out.index(f"{D1}: success") < crm_out.index(f"{D2}: success")

        def backfill_done():
            states = _meta(meta_db, "select run_id, state from dag_run where dag_id = ? and run_type = 'backfill'",
                           (DAG_ID,))
            return states if len(states) == 2 and all(s in ("success", "failed") for _, s in states) else None

        states = airflow_stack.wait("the two backfill runs in B to finish", backfill_done,
                       BACKFILL_TIMEOUT - (time.monotonic() - started), [(standalone, stack_log)])
        failed_tasks = _meta(meta_db, "select run_id, task_id, state from task_instance where dag_id = ? "
                                      "and state not in ('success', 'skipped')", (DAG_ID,))
        assert all(s == "success" for _, s in states), f"{states}; tasks: {failed_tasks}\n{airflow_stack.tail(stack_log)}"
        # the scheduler ran them one after the other, D1 first
        spans = _meta(meta_db, "select date(logical_date), start_date, end_date from dag_run "
                               "where run_type = 'backfill' order by logical_date")
        assert spans[0][2] <= spans[1][1], spans
        assert _meta(meta_db, "select count(*) from dag_run where run_type != 'backfill'") == [(0,)]
    finally:
        stop_started = time.monotonic()
        escalated = airflow_stack.stop(standalone, 60, spare_leader=True)
        print(f"stack stopped in {time.monotonic() - stop_started:.1f} s; escalated: {escalated}")
        airflow_stack.stop(crm_proc, 30)
    assert not airflow_stack.group_members(standalone.pid), "processes of the Airflow stack are still running"

    wh_a = f"duckdb:///{home_a / 'warehouse.duckdb'}"
    wh_b = f"duckdb:///{home_b / 'warehouse.duckdb'}"
    for table in HISTORY_TABLES:
        for day in (D1, D2):
            where = f"where as_of = '{day}'"
            a, b = table_checksum(wh_a, table, where), table_checksum(wh_b, table, where)
            assert a == b, f"published.{table} as_of {day}: crm backfill {a} != Airflow backfill {b}"
    assert table_checksum(wh_a, "customer_segment_history", f"where as_of = '{D1}'")[0] > 0
    assert table_checksum(wh_b, "customer_segment_history", f"where as_of not in ('{D1}', '{D2}')")[0] == 0
    # nothing else differs either: both end with D2 in the current tables
    assert published_checksum_url(wh_a) == published_checksum_url(wh_b)
