"""Shared fixtures: a temporary state folder per test module, database URLs of this machine."""

from __future__ import annotations

import collections
import os
import uuid

import pytest

PG_URL = os.environ.get("CRM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("CRM_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


#: the files whose tests take longest (a suite's --durations), slowest first: each file runs
#: on one worker (--dist loadfile), and starting the long ones first keeps a long file from
#: running alone at the end while the other worker idles (pyproject.toml: --no-loadscope-reorder)
SLOWEST_FILES_FIRST = (
    "test_spark.py", "test_bench.py", "test_run_records.py", "test_night_sequence.py", "test_incremental_models.py",
    "test_airflow_backfill.py", "test_secrets.py", "test_warehouses.py",
    "test_airflow_celery.py", "test_credit_desk.py",
)


def pytest_collection_modifyitems(config, items):
    """The slowest files first, then the others by their number of tests (what xdist's
    own reordering does); a file's tests keep their order."""
    rank = {name: i for i, name in enumerate(SLOWEST_FILES_FIRST)}
    tests_in = collections.Counter(item.path.name for item in items)
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), -tests_in[item.path.name], item.path.name))


@pytest.fixture(autouse=True, scope="session")
def _lean_runs():
    """Full DAG runs in tests skip dbt docs generation (tests that check docs turn it on)."""
    previous = os.environ.get("CRM_DBT_DOCS")
    os.environ["CRM_DBT_DOCS"] = "0"
    yield
    if previous is None:
        os.environ.pop("CRM_DBT_DOCS", None)
    else:
        os.environ["CRM_DBT_DOCS"] = previous


def _pg_admin_url(dbname: str = "test") -> str:
    return PG_URL.rsplit("/", 1)[0] + "/" + dbname


@pytest.fixture()
def pg_databases():
    """Makes fresh PostgreSQL databases for one test (``pg_databases()`` returns a new
    one's URL each call) and drops them all afterwards."""
    import psycopg2

    admin = psycopg2.connect(_pg_admin_url())
    admin.autocommit = True
    names: list[str] = []

    def make() -> str:
        name = f"crm_test_{uuid.uuid4().hex[:10]}"
        with admin.cursor() as cur:
            cur.execute(f"create database {name}")
        names.append(name)
        return _pg_admin_url(name)

    try:
        yield make
    finally:
        with admin.cursor() as cur:
            for name in names:
                cur.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s "
                    "and pid <> pg_backend_pid()",
                    (name,),
                )
                cur.execute(f"drop database if exists {name}")
        admin.close()


@pytest.fixture()
def pg_database(pg_databases):
    """A fresh PostgreSQL database for one test, dropped afterwards; yields its URL."""
    return pg_databases()


@pytest.fixture()
def mariadb_database():
    """A fresh MariaDB database for one test, dropped afterwards; yields its URL."""
    import pymysql

    name = f"crm_test_{uuid.uuid4().hex[:10]}"
    con = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    with con.cursor() as cur:
        cur.execute(f"create database {name} character set utf8mb4")
    try:
        yield MARIADB_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with con.cursor() as cur:
            cur.execute(f"drop database if exists {name}")
        con.close()
