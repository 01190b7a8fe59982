"""Backfills and re-runs on the embedded default (DuckDB, a small demo source).

Run D1, then D2, then D1 again (``crm backfill``), then D2 again: the D1 published rows
are identical both times, re-running D2 changes nothing, history tables hold one row per
customer per date, and the current tables keep showing D2 after D1 is backfilled."""

from __future__ import annotations

from datetime import date

import pytest

from helpers import crm, published_checksum_url, table_checksum

pytestmark = pytest.mark.slow

D1, D2 = date(2026, 6, 29), date(2026, 6, 30)
CUSTOMERS = 300


def test_rerun_and_backfill_are_idempotent(tmp_path):
    home = tmp_path / "home"
    wh = f"duckdb:///{home / 'warehouse.duckdb'}"
    source = f"sqlite:///{home / 'source.sqlite'}"
    made = crm("demo-data", "--home", str(home), "--customers", str(CUSTOMERS), "--until", D1.isoformat())
    assert made.returncode == 0, made.stdout + made.stderr

    r1 = crm("run", "--home", str(home), "--as-of", D1.isoformat(), "--customers", str(CUSTOMERS))
    assert r1.returncode == 0, r1.stdout + r1.stderr
    d1_slice = table_checksum(wh, "customer_segment_history", f"where as_of = '{D1}'")
    d1_full = published_checksum_url(wh)
    assert d1_slice[0] > 0

    r2 = crm("run", "--home", str(home), "--as-of", D2.isoformat(), "--customers", str(CUSTOMERS))
    assert r2.returncode == 0, r2.stdout + r2.stderr
    after_d2 = published_checksum_url(wh)
    assert after_d2 != d1_full

    # backfill D1 (the source is already past D1: pass it explicitly so it is not advanced)
    b = crm("backfill", "--from", D1.isoformat(), "--to", D1.isoformat(), "--home", str(home), "--source", source)
    assert b.returncode == 0, b.stdout + b.stderr
    assert f"{D1}: success" in b.stdout
    # D1's published rows are the same as the first time, and nothing else moved: the
    # current tables still show D2
    assert table_checksum(wh, "customer_segment_history", f"where as_of = '{D1}'") == d1_slice
    assert published_checksum_url(wh) == after_d2

    import duckdb

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        cols = [r[0] for r in con.execute("select column_name from information_schema.columns where "
                                          "table_schema = 'published' and table_name = 'customer_segments'").fetchall()]
        if "as_of" in cols:
            assert con.execute("select distinct as_of from published.customer_segments").fetchall() == [(D2,)]
        history = [r[0] for r in con.execute(
            "select distinct table_name from information_schema.columns where table_schema = 'published' "
            "and column_name = 'customer_id' and table_name in (select table_name from information_schema.columns "
            "where table_schema = 'published' and column_name = 'as_of') and table_name not in "
            "('customer_segments', 'customer_rfm', 'customer_value_tiers', 'customer_churn', "
            "'account_contact_coverage', 'complaint_summary', 'retention_metrics')").fetchall()]
        assert "customer_segment_history" in history
        for t in history:
            total, distinct = con.execute(
                f"select count(*), count(distinct (customer_id, as_of)) from published.{t}").fetchone()
            assert total == distinct, t
        assert [r[0] for r in con.execute(
            "select distinct as_of from published.customer_segment_history order by 1").fetchall()] == [D1, D2]

    # re-running D2 is a no-op for what is published
    r4 = crm("run", "--home", str(home), "--as-of", D2.isoformat(), "--customers", str(CUSTOMERS))
    assert r4.returncode == 0, r4.stdout + r4.stderr
    assert published_checksum_url(wh) == after_d2
