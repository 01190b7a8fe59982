"""The benchmark's PostgreSQL databases: URLs of sibling databases on the source's server
(the scaled sources and the PostgreSQL warehouses), created or dropped and created again
through the server's maintenance database."""

from __future__ import annotations

import psycopg2
from psycopg2 import sql
from sqlalchemy.engine import make_url


def plain_postgres_url(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as libpq and psycopg2 read it."""
    return url.replace("postgresql+psycopg2://", "postgresql://")


def database_url(url: str, dbname: str) -> str:
    """``url`` with another database."""
    return make_url(url).set(database=dbname).render_as_string(hide_password=False)


def database_name(url: str) -> str:
    return make_url(url).database or "postgres"


def _admin_connection(url: str):
    """An autocommit connection to the server's maintenance database (``postgres``): the
    named one may not exist yet."""
    con = psycopg2.connect(plain_postgres_url(database_url(url, "postgres")))
    con.autocommit = True
    return con


def recreate_database(url: str, dbname: str) -> str:
    """Drop and create ``dbname`` on the server of ``url``; its URL."""
    con = _admin_connection(url)
    with con.cursor() as cur:
        cur.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s "
                    "and pid <> pg_backend_pid()", (dbname,))
        cur.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(dbname)))
        cur.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    con.close()
    return database_url(url, dbname)


def ensure_database(url: str, dbname: str) -> str:
    """Create ``dbname`` on the server of ``url`` unless it exists; its URL."""
    con = _admin_connection(url)
    with con.cursor() as cur:
        cur.execute("select 1 from pg_database where datname = %s", (dbname,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    con.close()
    return database_url(url, dbname)
