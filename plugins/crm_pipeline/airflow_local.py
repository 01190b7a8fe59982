"""Run the real ``crm_nightly`` DAG in this process, with Airflow's metadata in SQLite.

This is what ``crm run`` uses on the embedded default: no scheduler, webserver or
Docker. The environment (``AIRFLOW_HOME`` under the state folder, the DAGs folder, the
connections) must be set before Airflow is first imported, so :func:`configure` runs
before any Airflow import and everything Airflow is imported lazily below it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from crm_pipeline import warm
from crm_pipeline.connections import SOURCE_CONN_ID, WAREHOUSE_CONN_ID
from crm_pipeline.settings import DAGS_DIR

DAG_ID = "crm_nightly"

#: SQLite metadata DB: wait up to a minute for a lock instead of pysqlite's 5 s. With the
#: scheduler, dag-processor, api-server and a CLI command (``airflow backfill create``) all
#: writing one SQLite file on a busy machine, 5 s ran out and the CLI failed with
#: "database is locked". Airflow reads these through ``[database] sql_alchemy_connect_args``
#: (and ``..._async``); it adds its own keys to the dict it gets, hence two dicts.
SQLITE_CONNECT_ARGS = {"timeout": 60}
SQLITE_CONNECT_ARGS_ASYNC = {"timeout": 60}


def sqlite_metadata_env(airflow_home: Path) -> dict[str, str]:
    """The Airflow settings for a SQLite metadata DB in ``airflow_home``."""
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": f"{__name__}.SQLITE_CONNECT_ARGS",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": f"{__name__}.SQLITE_CONNECT_ARGS_ASYNC",
    }


def configure(home: Path, source_url: str | None, warehouse_url: str | None) -> None:
    """Point Airflow, cosmos and the pipeline at ``home`` (call before importing Airflow)."""
    airflow_home = home / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    env = {
        "CRM_HOME": str(home),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        **sqlite_metadata_env(airflow_home),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
        "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos-cache"),
        "AIRFLOW__COSMOS__ENABLE_CACHE": "True",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
        "GX_ANALYTICS_ENABLED": "False",
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    }
    for key, value in env.items():
        os.environ[key] = value
    if source_url:
        os.environ[f"AIRFLOW_CONN_{SOURCE_CONN_ID.upper()}"] = source_url
    if warehouse_url:
        os.environ[f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}"] = warehouse_url


def _quiet() -> None:
    for name in ("airflow", "great_expectations", "cosmos", "alembic", "dbt", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _use_configured_metadata_db() -> None:
    """Airflow binds its metadata engine when first imported; a process that runs the DAG
    for a second state folder (tests, a backfill of another --home) re-binds it here."""
    from airflow import settings

    wanted = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    if settings.SQL_ALCHEMY_CONN != wanted:
        settings.configure_vars()
        settings.reconfigure_orm()


def _metadata_db_ready(db_path: Path, version: str) -> bool:
    import sqlite3

    if not db_path.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(db_path)) as con:
            tables = {r[0] for r in con.execute("select name from sqlite_master where type = 'table'")}
    except sqlite3.Error:
        return False
    marker = db_path.parent / ".crm-db-ready"
    return {"dag_run", "task_instance", "alembic_version"} <= tables and (
        marker.exists() and marker.read_text() == version
    )


def ensure_metadata_db() -> None:
    """Create or migrate Airflow's SQLite metadata database (a few seconds the first time)."""
    import airflow
    from airflow.utils.db import upgradedb

    _use_configured_metadata_db()
    db_path = Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"
    if _metadata_db_ready(db_path, airflow.__version__):
        return
    with contextlib.redirect_stdout(io.StringIO()):
        upgradedb()
    (db_path.parent / ".crm-db-ready").write_text(airflow.__version__)


def load_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR / "crm_nightly.py"))
    if bag.import_errors:
        path, err = next(iter(bag.import_errors.items()))
        raise RuntimeError(f"the DAG file {Path(path).name} does not import: {err.strip().splitlines()[-1]}")
    return bag.dags[DAG_ID]


def run_after_for(as_of: date) -> datetime:
    """The moment a run for ``as_of`` happens: midnight UTC after that day."""
    return datetime.combine(as_of + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)


@contextlib.contextmanager
def output_to(log_path: Path):
    """Send everything written to file descriptors 1 and 2 (Airflow's task logs, dbt's and
    GX's output) to ``log_path``; yields a text stream on the original terminal."""
    import sys

    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved_out), "w", buffering=1)
    with open(log_path, "a", buffering=1) as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            terminal.close()


def prepare():
    """Make this process ready to run the DAG (after :func:`configure`): quiet loggers, the
    metadata database, the DAG loaded, the night's libraries loaded and frozen. Returns the DAG."""
    _quiet()
    ensure_metadata_db()
    dag = load_dag()
    warm.load_and_freeze()
    return dag


def run_dag(as_of: date) -> tuple[str, str]:
    """Run crm_nightly for ``as_of``; returns (Airflow run id, final state)."""
    dag = prepare()
    when = run_after_for(as_of)
    dag_run = dag.test(logical_date=when, run_after=when)
    state = str(getattr(dag_run, "state", "unknown"))
    return dag_run.run_id, state.split(".")[-1].lower()


def task_states(run_id: str) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance.task_id, TaskInstance.state).filter(
            TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run_id
        )
        return {t: str(s).split(".")[-1].lower() for t, s in rows}
