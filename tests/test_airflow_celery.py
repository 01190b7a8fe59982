"""One night of ``crm_nightly`` run by Airflow on the Celery executor publishes what an
in-process ``crm run`` of the same date publishes, both into PostgreSQL warehouses.

The stack is the one ``docker/compose.yaml``'s ``celery`` profile describes, started here
without Docker: Debian's ``redis-server`` on a free loopback port (the broker, nothing kept
on disk), Airflow's metadata database and the Celery result backend in PostgreSQL, and
four Airflow processes from this project's environment: ``scheduler``, ``dag-processor``,
``api-server`` (the workers' execution API) and one ``celery worker``. The DAG is
serialized paused, the night for D is made as a one-date backfill (the data interval
[D, D+1), as the schedule would make it; a manual trigger's interval follows the moment
it is made), and the DAG is unpaused once the api-server answers.

Checked: the run and each of its tasks succeeded; every task went through Celery (one
``SUCCESS`` row per task instance in the result backend, and the worker's log names the
tasks); the run's data interval is D's day; and every table of ``published`` equals the
in-process run's, row for row (wall-clock columns aside, ``helpers.table_checksum``).
The worker uses the project's Celery settings (``crm_pipeline.celery_config``), so it
loads the night's libraries once before its first task.

Runtime on a 2-core machine: about 3-5 minutes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import psycopg2
import pytest

import airflow_stack
from helpers import published_checksum_url, table_checksum

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

DAG_ID = "crm_nightly"
D = date(2026, 6, 30)
CUSTOMERS = 200
START_TIMEOUT = 240
NIGHT_TIMEOUT = 10 * 60
#: both nights pseudonymise with the same salt, so their hashed columns can be compared
PII_SALT = "celery-test-salt"


def _psql(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg2.connect(url) as con, con.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _stack_env(home: Path, meta_url: str, broker_url: str) -> dict[str, str]:
    return {
        **airflow_stack.base_env(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url.replace("postgresql://", "postgresql+psycopg2://", 1),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + meta_url,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "crm_pipeline.celery_config.CELERY_CONFIG",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        # one secret for the api-server and the worker's task tokens
        "AIRFLOW__API_AUTH__JWT_SECRET": "celery-test-only-secret",
        "CRM_PII_SALT": PII_SALT,
    }


def test_a_night_on_the_celery_executor_publishes_what_an_in_process_run_publishes(tmp_path, pg_databases):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (Debian package redis-server; .ci/run installs it)")
    home_a, home_b = tmp_path / "A", tmp_path / "B"
    made = subprocess.run([sys.executable, "-m", "crm_pipeline.cli", "demo-data", "--home", str(home_a),
                           "--customers", str(CUSTOMERS), "--until", D.isoformat()],
                          env=airflow_stack.clean_env(), cwd=airflow_stack.ROOT, capture_output=True, text=True,
                          timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    home_b.mkdir()
    shutil.copy2(home_a / "source.sqlite", home_b / "source.sqlite")
    wh_a, wh_b, meta = pg_databases(), pg_databases(), pg_databases()

    (redis_port,) = airflow_stack.free_ports(1)
    env = _stack_env(home_b, meta, f"redis://127.0.0.1:{redis_port}/0")
    env.update({"AIRFLOW_CONN_CRM_SOURCE": f"sqlite:///{home_b / 'source.sqlite'}", "AIRFLOW_CONN_CRM_WAREHOUSE": wh_b})
    logs = {name: tmp_path / f"{name}.log" for name in ("crm-run", "redis", "scheduler", "dag-processor",
                                                         "api-server", "worker")}
    procs: dict[str, subprocess.Popen] = {}

    def airflow(*args: str, timeout: float = 300) -> None:
        done = subprocess.run([airflow_stack.AIRFLOW_BIN, *args], env=env, cwd=airflow_stack.ROOT,
                              capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"airflow {' '.join(args)}:\n{(done.stdout + done.stderr)[-4000:]}"

    try:
        # the in-process night of the same date, beside the stack's start-up
        procs["crm-run"] = airflow_stack.start(
            [sys.executable, "-m", "crm_pipeline.cli", "run", "--home", str(home_a), "--as-of", D.isoformat(),
             "--warehouse", wh_a], {**airflow_stack.clean_env(), "CRM_PII_SALT": PII_SALT}, logs["crm-run"])
        procs["redis"] = airflow_stack.start(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "", "--appendonly", "no",
             "--dir", str(tmp_path)], env, logs["redis"])
        airflow("db", "migrate")
        airflow("dags", "reserialize", timeout=START_TIMEOUT)
        assert _psql(meta, "select is_paused from dag where dag_id = %s", (DAG_ID,)) == [(True,)]
        # one night for D: a manual trigger's data interval follows the moment it is made
        # (yesterday), a one-date backfill's is the date's own day
        airflow("backfill", "create", "--dag-id", DAG_ID, "--from-date", D.isoformat(), "--to-date", D.isoformat(),
                "--reprocess-behavior", "completed", "--max-active-runs", "1")
        for name, cmd in (("api-server", ["api-server"]), ("scheduler", ["scheduler"]),
                          ("dag-processor", ["dag-processor"]),
                          ("worker", ["celery", "worker", "--concurrency", "1", "--without-mingle",
                                      "--without-gossip"])):
            procs[name] = airflow_stack.start([airflow_stack.AIRFLOW_BIN, *cmd], env, logs[name])
        watched = [(procs[n], logs[n]) for n in ("redis", "api-server", "scheduler", "dag-processor", "worker")]
        health = f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}/api/v2/monitor/health"

        def api_up() -> bool:
            try:
                with urllib.request.urlopen(health, timeout=5) as resp:
                    return resp.status == 200
            except OSError:
                return False

        airflow_stack.wait("the api-server", api_up, START_TIMEOUT, watched)
        airflow("dags", "unpause", DAG_ID)

        def night_done():
            rows = _psql(meta, "select state from dag_run where dag_id = %s", (DAG_ID,))
            return rows if rows and all(r[0] in ("success", "failed") for r in rows) else None

        started = time.monotonic()
        states = airflow_stack.wait("the night on the Celery worker", night_done, NIGHT_TIMEOUT, watched)
        print(f"the night took {time.monotonic() - started:.0f} s after the api-server answered")
        tasks = _psql(meta, "select task_id, state from task_instance where dag_id = %s order by task_id", (DAG_ID,))
        assert states == [("success",)], f"{states}; tasks: {tasks}\n{airflow_stack.tail(logs['worker'])}"
        assert tasks and all(s == "success" for _, s in tasks), tasks
        interval = _psql(meta, "select data_interval_start::date, data_interval_end::date from dag_run")
        assert interval == [(D, D + timedelta(days=1))], interval

        # every task instance went through the broker and was run by the worker. The task
        # reports its state to the API server before its Celery task returns, so the run can
        # be marked done a moment before the worker stores the last result: wait for it.
        def celery_results():
            return _psql(meta, "select count(*) from celery_taskmeta where status = 'SUCCESS'")[0][0]

        airflow_stack.wait_until(lambda: celery_results() >= len(tasks), 60)
        assert celery_results() == len(tasks), (celery_results(), tasks)
        worker_log = logs["worker"].read_text(errors="replace")
        assert all(task_id in worker_log for task_id, _ in tasks), airflow_stack.tail(logs["worker"], 80)
        # the worker loaded the night's libraries once, before its first task (warm.py)
        assert "the night's libraries are loaded" in worker_log
        assert worker_log.index("the night's libraries are loaded") < worker_log.index("Executing workload")

        try:
            crm_rc = procs["crm-run"].wait(NIGHT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"crm run did not finish:\n{airflow_stack.tail(logs['crm-run'])}")
        assert crm_rc == 0, airflow_stack.tail(logs["crm-run"], 80)
    finally:
        for name in ("worker", "scheduler", "dag-processor", "api-server", "crm-run", "redis"):
            airflow_stack.stop(procs.get(name), 60)
    for name, proc in procs.items():
        assert not airflow_stack.group_members(proc.pid), f"{name}: processes are still running"

    rows = table_checksum(wh_a, "customer_segments")[0]
    assert rows > 0
    assert _psql(wh_b, "select max(as_of) from published.customer_segment_history") == [(D,)]
    assert published_checksum_url(wh_b) == published_checksum_url(wh_a)
