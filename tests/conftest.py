"""Shared fixtures: a temporary state folder per test module, database URLs of this machine."""

from __future__ import annotations

import os
import uuid

import pytest

PG_URL = os.environ.get("CRM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("CRM_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


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
