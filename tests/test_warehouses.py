"""The same source, run once into DuckDB and once into PostgreSQL, publishes the same rows.

Also checks what BI relies on: every published table has an enforced contract and every
published column is documented in the generated dbt docs.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import date, datetime

import duckdb
import psycopg2
import pytest
from typer.testing import CliRunner

from crm_pipeline.cli import app
from crm_pipeline.publish import PUBLISHED_TABLES
from helpers import comparable, comparable_rows

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

AS_OF = date(2026, 3, 31)
#: a second night in the next quarter: the credit desk's migration, stability and outcome
#: tables then have rows to compare
NEXT = date(2026, 4, 1)
#: wall-clock facts of a run, different by nature between two runs
SECRET = "pw-Zq8rT5xLm2"
VOLATILE_COLUMNS = {"fit_seconds", "fitted_at", "run_id", "published_at", "loaded_at"}
CUSTOMERS = 800


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory):
    import uuid

    base = tmp_path_factory.mktemp("wh")
    runner = CliRunner()
    src_home = base / "src"
    made = runner.invoke(app, ["demo-data", "--home", str(src_home), "--customers", str(CUSTOMERS),
                               "--until", NEXT.isoformat()])
    assert made.exit_code == 0, made.output
    duck_home, pg_home = base / "duck", base / "pg"
    for h in (duck_home, pg_home):
        h.mkdir()
        shutil.copy(src_home / "source.sqlite", h / "source.sqlite")

    name = f"crm_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/test")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"create database {name}")
    # the test server trusts local connections, so any password is accepted: a unique
    # one lets the test prove it never reaches a log, a summary or a dbt artifact
    pg_url = f"postgresql://postgres:{SECRET}@127.0.0.1:5432/{name}"
    try:
        os.environ["CRM_DBT_DOCS"] = "1"  # this run's docs are checked below
        try:
            duck = runner.invoke(app, ["run", "--home", str(duck_home), "--as-of", AS_OF.isoformat(),
                                       "--source", f"sqlite:///{duck_home / 'source.sqlite'}"])
        finally:
            os.environ["CRM_DBT_DOCS"] = "0"
        os.environ["CRM_DBT_DOCS"] = "1"  # dbt artifacts are searched for the password below
        try:
            pg = runner.invoke(app, ["run", "--home", str(pg_home), "--as-of", AS_OF.isoformat(),
                                     "--source", f"sqlite:///{pg_home / 'source.sqlite'}", "--warehouse", pg_url])
        finally:
            os.environ["CRM_DBT_DOCS"] = "0"
        nexts = [runner.invoke(app, ["run", "--home", str(home), "--as-of", NEXT.isoformat(),
                                     "--source", f"sqlite:///{home / 'source.sqlite'}", *extra])
                 for home, extra in ((duck_home, []), (pg_home, ["--warehouse", pg_url]))]
        for done in nexts:
            assert done.exit_code == 0, done.output
        yield duck_home, pg_url, duck, pg, pg_home
    finally:
        with admin.cursor() as cur:
            cur.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (name,))
            cur.execute(f"drop database if exists {name}")
        admin.close()


def test_both_runs_succeed(both_runs):
    _, _, duck, pg, _ = both_runs
    assert duck.exit_code == 0, duck.output
    assert pg.exit_code == 0, pg.output


def test_published_tables_are_identical_row_for_row(both_runs):
    duck_home, pg_url, duck, pg, _ = both_runs
    assert duck.exit_code == 0 and pg.exit_code == 0
    dcon = duckdb.connect(str(duck_home / "warehouse.duckdb"))
    pcon = psycopg2.connect(pg_url)
    try:
        d_tables = {r[0] for r in dcon.execute(
            "select table_name from information_schema.tables where table_schema = 'published'").fetchall()}
        with pcon.cursor() as cur:
            cur.execute("select table_name from information_schema.tables where table_schema = 'published'")
            p_tables = {r[0] for r in cur.fetchall()}
        assert d_tables == p_tables
        required = {t.name for t in PUBLISHED_TABLES if t.required}
        assert required <= d_tables
        compared = 0
        mismatches: list[str] = []
        for table in sorted(d_tables):
            d_cols = [r[0] for r in dcon.execute(
                "select column_name from information_schema.columns where table_schema = 'published' "
                "and table_name = ? order by ordinal_position", (table,)).fetchall()]
            with pcon.cursor() as cur:
                cur.execute("select column_name from information_schema.columns where table_schema = 'published' "
                            "and table_name = %s order by ordinal_position", (table,))
                p_cols = [r[0] for r in cur.fetchall()]
            assert d_cols == p_cols, table
            d_cols = [c for c in d_cols if c not in VOLATILE_COLUMNS]
            cols = ", ".join(d_cols)
            d_rows = comparable_rows(dcon.execute(f"select {cols} from published.{table}").fetchall())
            with pcon.cursor() as cur:
                cur.execute(f"select {cols} from published.{table}")
                p_rows = comparable_rows(cur.fetchall())
            if len(d_rows) != len(p_rows):
                mismatches.append(f"{table}: {len(d_rows)} rows on DuckDB, {len(p_rows)} on PostgreSQL")
                continue
            for d_row, p_row in zip(d_rows, p_rows):
                if d_row != p_row:
                    diff = {c: (a, b) for c, a, b in zip(d_cols, d_row, p_row) if a != b}
                    mismatches.append(f"{table}: first differing row {d_row[:2]}: {diff}")
                    break
            compared += len(d_rows)
        assert not mismatches, "\n".join(mismatches)
        assert compared > CUSTOMERS * 5
    finally:
        dcon.close()
        pcon.close()


def test_the_credit_desk_tables_have_rows_on_both_warehouses(both_runs):
    """After two quarters the migration, stability, exposure and outcome tables are
    published on both warehouses (their rows are compared above)."""
    duck_home, pg_url, *_ = both_runs
    tables = ("credit_grade_migration", "credit_scorecard_stability", "credit_exposure_by_grade",
              "credit_exposure_customers", "credit_grade_outcomes")
    dcon = duckdb.connect(str(duck_home / "warehouse.duckdb"))
    pcon = psycopg2.connect(pg_url)
    try:
        for table in tables:
            sql = f"select count(*) from published.{table}"
            with pcon.cursor() as cur:
                cur.execute(sql)
                assert cur.fetchone()[0] == dcon.execute(sql).fetchone()[0] > 0, table
    finally:
        dcon.close()
        pcon.close()


def test_published_columns_have_contracts_and_docs(both_runs):
    duck_home, *_ = both_runs
    manifest = json.loads((duck_home / "docs" / "dbt" / "manifest.json").read_text())
    catalog = json.loads((duck_home / "docs" / "dbt" / "catalog.json").read_text())
    published = {t.name for t in PUBLISHED_TABLES}
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    catalog_nodes = {n["metadata"]["name"]: n for n in catalog["nodes"].values()}
    checked = 0
    for name in sorted(published & set(models)):
        node = models[name]
        assert node["config"]["contract"]["enforced"], f"{name} has no enforced contract"
        assert node["description"].strip(), f"{name} has no description"
        assert "grain" in node["description"].lower(), f"{name}: the description does not state the grain"
        built_columns = set(catalog_nodes[name]["columns"])
        for col in built_columns:
            doc = node["columns"].get(col, {})
            assert doc.get("description", "").strip(), f"{name}.{col} is not documented"
            assert doc.get("data_type"), f"{name}.{col} has no contract type"
        checked += 1
    assert checked >= 10


def test_the_warehouse_password_never_reaches_logs_summaries_or_dbt_artifacts(both_runs):
    _, pg_url, _, pg, pg_home = both_runs
    assert pg.exit_code == 0, pg.output
    assert SECRET not in pg.output
    assert "***" in pg.output  # the summary names the warehouse with the password masked
    searched = 0
    for path in pg_home.rglob("*"):
        if path.is_file() and path.suffix not in (".sqlite", ".duckdb"):
            data = path.read_bytes()
            assert SECRET.encode() not in data, f"the password is written in {path.relative_to(pg_home)}"
            searched += 1
    # the run's log, the dbt docs artifacts and the Airflow task logs were among them
    names = {p.name for p in pg_home.rglob("*") if p.is_file()}
    assert {"manifest.json", "catalog.json"} <= names
    assert any(n.startswith("run-") and n.endswith(".log") for n in names)
    assert searched > 10


def test_postgres_enforces_the_credit_points_grain_with_a_unique_index(both_runs):
    """On PostgreSQL the kept credit points refuse a second row per (customer, indicator),
    and the grain's data test reads that index from the catalog instead of grouping every
    row; a combination test on a model without such an index still groups."""
    duck_home, pg_url, _, pg, pg_home = both_runs
    assert pg.exit_code == 0, pg.output
    con = psycopg2.connect(pg_url)
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute("select count(*), count(distinct (customer_id, indicator)) "
                        "from intermediate.int_credit_indicator_points")
            n, distinct = cur.fetchone()
            assert n > 100 and n == distinct
            with pytest.raises(psycopg2.errors.UniqueViolation) as refused:
                cur.execute("insert into intermediate.int_credit_indicator_points "
                            "select * from intermediate.int_credit_indicator_points limit 1")
            assert "(customer_id, indicator)" in str(refused.value)
    finally:
        con.close()
    manifest = json.loads((pg_home / "docs" / "dbt" / "manifest.json").read_text())
    combination_tests = {n["name"]: n for n in manifest["nodes"].values()
                         if n["resource_type"] == "test" and n["name"].startswith("unique_combination_of_columns_")}
    points = [n for name, n in combination_tests.items() if "int_credit_indicator_points" in name]
    others = [n for name, n in combination_tests.items() if "int_credit_indicator_points" not in name]
    assert len(points) == 1 and others
    assert "enforced by a unique index" in points[0]["compiled_code"]
    assert "having count(*) > 1" not in points[0]["compiled_code"]
    for node in others:
        assert "having count(*) > 1" in node["compiled_code"], node["name"]
    # DuckDB keeps no such index: there the test groups the rows
    duck_manifest = json.loads((duck_home / "docs" / "dbt" / "manifest.json").read_text())
    duck_points = [n for n in duck_manifest["nodes"].values() if n["resource_type"] == "test"
                   and n["name"].startswith("unique_combination_of_columns_int_credit_indicator_points")]
    assert len(duck_points) == 1 and "having count(*) > 1" in duck_points[0]["compiled_code"]


def test_postgres_raw_tables_are_indexed_on_their_change_time(both_runs):
    """After the first load every raw table of a PostgreSQL warehouse has an index on its
    change time, and the night's watermark (the newest change before the window's end)
    is read through it rather than by scanning every version."""
    from crm_pipeline.contract import ENTITIES

    _, pg_url, _, pg, _ = both_runs
    assert pg.exit_code == 0, pg.output
    con = psycopg2.connect(pg_url)
    try:
        with con.cursor() as cur:
            cur.execute("select tablename, indexdef from pg_indexes where schemaname = 'raw'")
            indexed = {(t, d.split("(")[-1].rstrip(")")) for t, d in cur.fetchall()}
            for entity in ENTITIES:
                assert (entity.name, entity.updated_at) in indexed, f"raw.{entity.name} has no index on {entity.updated_at}"
            cur.execute("explain select max(updated_at) from raw.orders where updated_at < %s",
                        (datetime(2026, 4, 1),))
            plan = "\n".join(r[0] for r in cur.fetchall())
            assert "orders__updated_at" in plan, plan
    finally:
        con.close()


def _seed_rows(name: str) -> list[dict]:
    import csv

    from crm_pipeline.settings import DBT_PROJECT_DIR

    with open(DBT_PROJECT_DIR / "seeds" / f"{name}.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_published_tables_and_columns_carry_their_descriptions_in_both_warehouses(both_runs):
    """BI tools show table and column comments: each published table and column carries
    the description written in the dbt project, read back from DuckDB and PostgreSQL."""
    from crm_pipeline.warehouse import Warehouse, WarehouseConfig

    duck_home, pg_url, duck, pg, _ = both_runs
    assert duck.exit_code == 0 and pg.exit_code == 0
    manifest = json.loads((duck_home / "docs" / "dbt" / "manifest.json").read_text())
    by_relation = {n["alias"]: n for n in manifest["nodes"].values()
                   if n["resource_type"] == "model" and n["path"].startswith("marts")}

    def same(text: str) -> str:
        return " ".join(text.split())

    for url in (f"duckdb:///{duck_home / 'warehouse.duckdb'}", pg_url):
        with Warehouse(WarehouseConfig.from_url(url)) as wh:
            for table in PUBLISHED_TABLES:
                node = by_relation[table.name]
                table_comment, column_comments = wh.comments("published", table.name)
                # the docs site names the published table first (docs_site.publish_names)
                described = node["description"].removeprefix(f"Published as published.{table.name}.")
                assert same(table_comment or "") == same(described), (url, table.name)
                columns = wh.columns("published", table.name)
                assert set(column_comments) == set(columns), (url, table.name)
                for column in columns:
                    assert same(column_comments[column]) == same(node["columns"][column]["description"])


def test_a_grade_row_can_be_read_against_the_published_scorecard_and_cut_offs(both_runs):
    """published.credit_scorecard and published.credit_grade_cutoffs hold the seeds' rules,
    with the infinities as open bounds; worked out here from the seed files."""
    duck_home, pg_url, duck, pg, _ = both_runs
    assert duck.exit_code == 0 and pg.exit_code == 0
    scorecard = {r["indicator"]: r for r in _seed_rows("credit_scorecard")}
    bins = _seed_rows("credit_scorecard_bins")
    cutoffs = sorted(_seed_rows("credit_grade_cutoffs"), key=lambda r: float(r["min_score"]))

    def bound(text: str):
        return None if abs(float(text)) >= 999999999 else round(float(text), 6)

    expected_bins = sorted(
        (b["indicator"], int(b["bin_order"]), bound(b["lower_bound"]), bound(b["upper_bound"]),
         float(b["points"]), float(scorecard[b["indicator"]]["max_points"]),
         scorecard[b["indicator"]]["is_financial"] == "true")
        for b in bins)
    expected_cutoffs = sorted(
        (c["credit_grade"], float(c["min_score"]), float(cutoffs[i + 1]["min_score"]) if i + 1 < len(cutoffs) else None)
        for i, c in enumerate(cutoffs))
    dcon = duckdb.connect(str(duck_home / "warehouse.duckdb"))
    pcon = psycopg2.connect(pg_url)
    try:
        scorecard_sql = ("select indicator, bin_order, lower_bound, upper_bound, points, max_points, is_financial "
                         "from published.credit_scorecard")
        cutoffs_sql = "select credit_grade, min_score, next_grade_min_score from published.credit_grade_cutoffs"
        with pcon.cursor() as cur:
            cur.execute(scorecard_sql)
            pg_bins = cur.fetchall()
            cur.execute(cutoffs_sql)
            pg_cutoffs = cur.fetchall()
        for got_bins, got_cutoffs in ((dcon.execute(scorecard_sql).fetchall(), dcon.execute(cutoffs_sql).fetchall()),
                                      (pg_bins, pg_cutoffs)):
            assert sorted(tuple(comparable(v) for v in r) for r in got_bins) == expected_bins
            assert sorted(tuple(comparable(v) for v in r) for r in got_cutoffs) == expected_cutoffs
        # the maximum of every indicator adds up to the 100-point scorecard, 30 of them financial
        maxima = dict(dcon.execute("select indicator, max(max_points) from published.credit_scorecard "
                                   "group by indicator").fetchall())
        assert float(sum(maxima.values())) == 100
        assert float(sum(v for k, v in maxima.items() if scorecard[k]["is_financial"] == "true")) == 30
    finally:
        dcon.close()
        pcon.close()
