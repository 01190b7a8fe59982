"""Real sources, whole DAG: ``crm run --source URL --warehouse URL`` with a PostgreSQL
source into DuckDB, and a MariaDB source into PostgreSQL (the servers of this machine)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa

from crm_pipeline import demo
from helpers import crm, psycopg2_url

pytestmark = [pytest.mark.slow]

AS_OF = date(2024, 6, 30)
CUSTOMERS = 300
ENTITIES = ("customers", "contacts", "orders", "complaints", "financial_statements")


def source_counts(url: str) -> dict:
    engine = sa.create_engine(psycopg2_url(url))
    end = datetime.combine(AS_OF + timedelta(days=1), datetime.min.time())
    try:
        with engine.connect() as con:
            out = {e: con.execute(sa.text(f"select count(*) from {e} where updated_at < :end"), {"end": end}).scalar()
                   for e in ENTITIES}
            out["live_customers"] = con.execute(sa.text(
                "select count(*) from customers where not is_deleted and created_at < :end"), {"end": end}).scalar()
    finally:
        engine.dispose()
    return out


def check_warehouse(query, expected: dict) -> None:
    total, distinct = query("select count(*), count(distinct customer_id) from published.customer_segments")[0]
    assert total == distinct == expected["live_customers"]
    for entity, extracted, duplicate, staged, quarantined in query(
            "select entity, rows_extracted, rows_duplicate, rows_staged, rows_quarantined from ops.extract_batches"):
        assert extracted == duplicate + staged + quarantined, entity
        assert staged + quarantined == expected[entity], entity


def test_postgres_source_into_duckdb(pg_database, tmp_path):
    demo.advance_source(psycopg2_url(pg_database), AS_OF, customers=CUSTOMERS)
    wh = tmp_path / "warehouse.duckdb"
    result = crm("run", "--home", str(tmp_path / "home"), "--as-of", AS_OF.isoformat(),
                 "--source", pg_database, "--warehouse", f"duckdb:///{wh}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "success" in result.stdout
    import duckdb

    with duckdb.connect(str(wh), read_only=True) as con:
        check_warehouse(lambda sql: con.execute(sql).fetchall(), source_counts(pg_database))


@pytest.mark.mariadb
@pytest.mark.postgres
def test_mariadb_source_into_postgres(mariadb_database, pg_database, tmp_path):
    demo.advance_source(mariadb_database, AS_OF, customers=CUSTOMERS)
    result = crm("run", "--home", str(tmp_path / "home"), "--as-of", AS_OF.isoformat(),
                 "--source", mariadb_database, "--warehouse", pg_database)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "success" in result.stdout
    import psycopg2

    con = psycopg2.connect(pg_database)
    try:
        def query(sql):
            with con.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()

        check_warehouse(query, source_counts(mariadb_database))
    finally:
        con.close()
