"""Bulk paths of a PostgreSQL warehouse: frames written with COPY (CSV written by Arrow,
pandas for what Arrow cannot type) and numeric queries read with COPY. The expected
values are the frames' own, written out by hand."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from crm_pipeline.warehouse import Warehouse, WarehouseConfig

pytestmark = pytest.mark.postgres

EXPECTED = [
    (1, "", date(2025, 6, 15), datetime(2025, 6, 15, 10, 0, 0, 123456), 1.5, 7, True, Decimal("1.20")),
    (2, None, None, None, None, None, None, None),
    (3, 'say "hi", then\nleave', date(2025, 1, 1), datetime(2025, 1, 1), None, 3, False, Decimal("3.00")),
    (4, "ünï 张", date(2024, 2, 29), datetime(2024, 2, 29, 23, 59, 59, 999999), 1e-7, -5, True, Decimal("-4.50")),
]


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "id": [1, 2, 3, 4],
        "s": ["", None, 'say "hi", then\nleave', "ünï 张"],
        "d": [date(2025, 6, 15), None, date(2025, 1, 1), date(2024, 2, 29)],
        "ts": pd.Series([datetime(2025, 6, 15, 10, 0, 0, 123456), None, datetime(2025, 1, 1),
                         datetime(2024, 2, 29, 23, 59, 59, 999999)], dtype="datetime64[us]"),
        "f": [1.5, np.nan, np.nan, 1e-7],  # NaN is NULL
        "i": pd.array([7, None, 3, -5], dtype="Int64"),
        "b": pd.array([True, None, False, True], dtype="boolean"),
        "n": [Decimal("1.20"), None, Decimal("3"), Decimal("-4.5")],
    })


def _table(wh: Warehouse) -> None:
    wh.execute("create table bulk_t (id integer, s text, d date, ts timestamp, f double precision, "
               "i bigint, b boolean, n numeric(18, 2))")


def test_append_df_round_trips_nulls_empty_strings_quotes_and_microseconds(pg_database):
    with Warehouse(WarehouseConfig.from_url(pg_database)) as wh:
        _table(wh)
        assert wh.append_df("public", "bulk_t", _frame()) == 4
        rows = wh.query("select * from bulk_t order by id")
    assert rows == EXPECTED


def test_append_df_falls_back_to_pandas_for_mixed_object_columns(pg_database):
    """A column holding ints and strings cannot be an Arrow column: written as text."""
    frame = pd.DataFrame({"id": [1, 2, 3], "s": [5, "five", None]})
    with Warehouse(WarehouseConfig.from_url(pg_database)) as wh:
        wh.execute("create table mixed_t (id integer, s text)")
        wh.append_df("public", "mixed_t", frame)
        rows = wh.query("select id, s from mixed_t order by id")
    assert rows == [(1, "5"), (2, "five"), (3, None)]


def test_query_numeric_df_reads_numbers_and_nulls(pg_database):
    with Warehouse(WarehouseConfig.from_url(pg_database)) as wh:
        _table(wh)
        wh.append_df("public", "bulk_t", _frame())
        df = wh.query_numeric_df("select id, f, i, n from bulk_t order by id")
    assert list(df.columns) == ["id", "f", "i", "n"]
    assert df["id"].tolist() == [1, 2, 3, 4]
    assert df["n"].tolist()[0] == 1.2 and df["n"].tolist()[3] == -4.5
    assert np.isnan(df["n"].tolist()[1]) and np.isnan(df["f"].tolist()[2])
    assert df["i"].fillna(0).tolist() == [7, 0, 3, -5]


def _dbt_session_work_mem(url: str, tmp_path, monkeypatch) -> str:
    """``work_mem`` as a dbt model's session on this warehouse sees it (``dbt show``)."""
    from dbt.cli.main import dbtRunner

    from crm_pipeline.settings import DBT_PROJECT_DIR

    for key, value in WarehouseConfig.from_url(url).dbt_env().items():
        monkeypatch.setenv(key, value)
    res = dbtRunner().invoke([
        "show", "--inline", "select current_setting('work_mem') as work_mem", "--project-dir",
        str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR), "--target", "postgres",
        "--target-path", str(tmp_path / "dbt-target"), "--log-path", str(tmp_path / "dbt-logs"), "--quiet",
    ])
    assert res.success, res.exception
    return res.result.results[0].agate_table.rows[0][0]


def test_dbt_sessions_on_postgres_get_their_work_mem(pg_database, tmp_path, monkeypatch):
    """PostgreSQL's default work_mem (4MB) spills every large join; dbt's sessions get
    CRM_PG_WORK_MEM (256MB unless set) through libpq's PGOPTIONS, and a work_mem the
    user already put in PGOPTIONS is theirs to keep."""
    from crm_pipeline.connections import pg_session_options

    monkeypatch.delenv("PGOPTIONS", raising=False)
    monkeypatch.delenv("CRM_PG_WORK_MEM", raising=False)
    assert pg_session_options() == "-c work_mem=256MB"
    assert _dbt_session_work_mem(pg_database, tmp_path, monkeypatch) == "256MB"

    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=0 -c work_mem=1GB")
    assert pg_session_options() == "-c statement_timeout=0 -c work_mem=1GB"
    monkeypatch.setenv("CRM_PG_WORK_MEM", "64MB")
    assert pg_session_options() == "-c statement_timeout=0 -c work_mem=1GB -c work_mem=64MB"
    assert _dbt_session_work_mem(pg_database, tmp_path, monkeypatch) == "64MB"

    monkeypatch.setenv("CRM_PG_WORK_MEM", "lots")
    with pytest.raises(ValueError, match="CRM_PG_WORK_MEM='lots'"):
        pg_session_options()
