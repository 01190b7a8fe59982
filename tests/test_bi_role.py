"""The BI role on PostgreSQL: ``crm_bi_reader`` reads ``published`` and nothing else.

After a publish, ``set role crm_bi_reader`` can select from every published table; it
cannot read raw, quarantine, audit, ops, staging, intermediate or config, cannot create a
table anywhere, cannot write to a published table, and all of this still holds after a
second publish (current tables are dropped and re-created by the swap). Privileges given
to the role by hand beyond that are taken back by the next publish.
"""

from __future__ import annotations

from datetime import date

import pytest

from crm_pipeline.publish import BI_ROLE, publish
from wap_helpers import open_wh, synthetic_audit

pytestmark = pytest.mark.postgres

D1, D2 = date(2026, 6, 29), date(2026, 6, 30)
CLOSED_SCHEMAS = ("raw", "quarantine", "audit", "ops", "staging", "intermediate", "config")


def _warehouse(url: str) -> None:
    """Every schema the pipeline and dbt create, each with a table (staging: a view)."""
    with open_wh(url) as wh:
        synthetic_audit(wh, D1)
        for schema in CLOSED_SCHEMAS:
            wh.execute(f"create schema if not exists {schema}")
        wh.execute("create table if not exists raw.customers (customer_id bigint, name text)")
        wh.execute("insert into raw.customers values (1, 'Zhang Wei')")
        wh.execute("create table if not exists quarantine.customers (_key text, _record text)")
        wh.execute("create table if not exists ops.secrets_like (k text)")
        wh.execute("create table if not exists intermediate.int_x (a int)")
        wh.execute("create table if not exists config.fx_rates (currency text, rate numeric)")
        wh.execute("create or replace view staging.stg_crm__customers as select * from raw.customers")


def _as_bi(url: str):
    import psycopg2

    con = psycopg2.connect(url)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f"set role {BI_ROLE}")
    return con


def _allowed(con, sql: str):
    with con.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall() if cur.description else None


def _refused(con, sql: str) -> str:
    import psycopg2

    with pytest.raises(psycopg2.Error) as err:
        with con.cursor() as cur:
            cur.execute(sql)
    assert err.value.pgcode == "42501", f"{sql!r} failed with {err.value.pgcode}: {err.value}"  # insufficient_privilege
    return str(err.value)


def _check_role(url: str) -> None:
    with open_wh(url) as wh:
        published = wh.tables("published")
        attrs = wh.query("select rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolbypassrls from pg_roles "
                         "where rolname = ?", (BI_ROLE,))
    assert attrs == [(False, False, False, False, False)]
    assert {"customer_segments", "customer_rfm", "customer_value_tiers", "segment_profiles"} <= set(published)
    con = _as_bi(url)
    try:
        for t in published:
            _allowed(con, f"select count(*) from published.{t}")
        assert _allowed(con, "select count(*) from published.customer_segments") == [(20,)]
        for schema, table in (("raw", "customers"), ("quarantine", "customers"), ("audit", "customer_segments"),
                              ("ops", "published_versions"), ("staging", "stg_crm__customers"),
                              ("intermediate", "int_x"), ("config", "fx_rates")):
            _refused(con, f"select * from {schema}.{table}")
        _refused(con, "create table published.bi_scratch (a int)")
        _refused(con, "create table public.bi_scratch (a int)")
        _refused(con, "create schema bi_scratch")
        _refused(con, "create view published.bi_view as select 1 as a")
        _refused(con, "insert into published.customer_segments (customer_id, segment) values (-1, 'x')")
        _refused(con, "update published.customer_segments set segment = 'x'")
        _refused(con, "delete from published.customer_segments")
        _refused(con, "truncate published.customer_segments")
        _refused(con, "drop table published.customer_segments")
        _refused(con, "alter table published.customer_segments add column x int")
        _refused(con, "insert into published.segment_profiles values ('2026-01-01', 'x', 1)")
    finally:
        con.close()


def test_bi_reader_reads_published_only(pg_database):
    _warehouse(pg_database)
    with open_wh(pg_database) as wh:
        publish(wh, D1, "run-1")
    _check_role(pg_database)


def test_grants_survive_a_second_publish_and_extra_rights_are_taken_back(pg_database):
    _warehouse(pg_database)
    with open_wh(pg_database) as wh:
        publish(wh, D1, "run-1")
        # someone widens the role by hand between two runs
        wh.execute(f"grant usage on schema raw to {BI_ROLE}")
        wh.execute(f"grant select on raw.customers to {BI_ROLE}")
        wh.execute(f"grant usage, create on schema audit to {BI_ROLE}")
        wh.execute(f"grant insert, update, delete on published.segment_profiles to {BI_ROLE}")
        wh.execute(f"grant create on schema published to {BI_ROLE}")
        wh.execute(f"grant pg_read_all_data to {BI_ROLE}")
        synthetic_audit(wh, D2, variant=1)
        publish(wh, D2, "run-2")
        members = wh.scalar("select count(*) from pg_auth_members m join pg_roles r on r.oid = m.member "
                            "where r.rolname = ?", (BI_ROLE,))
    assert members == 0
    _check_role(pg_database)
    con = _as_bi(pg_database)
    try:  # the second publish's rows are what BI sees
        assert _allowed(con, "select count(distinct as_of) from published.segment_profiles") == [(2,)]
    finally:
        con.close()


def test_current_tables_have_planner_statistics_when_bi_first_reads_them(pg_database):
    """A current table is re-created by every publish; PostgreSQL knows its size (pg_class's
    reltuples, -1 for a table never analysed) as soon as the publish commits."""
    _warehouse(pg_database)
    with open_wh(pg_database) as wh:
        for day, variant in ((D1, 0), (D2, 1)):
            synthetic_audit(wh, day, customers=20 + variant * 5, variant=variant)
            publish(wh, day, f"run-{variant}")
            for table in ("customer_segments", "customer_rfm", "customer_value_tiers"):
                rows = wh.scalar(f"select count(*) from published.{table}")
                estimate = wh.scalar(f"select reltuples from pg_class where oid = 'published.{table}'::regclass")
                assert rows == 20 + variant * 5 and estimate == rows, (day, table, estimate)
