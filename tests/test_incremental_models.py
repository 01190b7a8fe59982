"""Models that keep their rows between runs: the credit snapshot and the latest orders.

**Credit snapshot.** Grades for a quarter read only data known by the last day of the
quarter before, so the credit intermediates (int_credit_indicators,
int_credit_indicator_points, int_credit_grades) are incremental: a run inside the same
quarter with the same fingerprint keeps the stored rows, any other run computes them
again. To tell "kept" from "computed again to the same values", the test changes stored
values by hand:

* D1: first build of quarter Q2; every row carries one 32-hex fingerprint.
* one indicator value of one customer set to 9999, and that customer's graded total
  score to 12.34 (fingerprints kept) → D2, same quarter: both are still there (kept), and
  the mart customer_credit_grades shows the kept grade row.
* the stored fingerprints made stale → D3, same quarter: computed again, every row equal
  to D1's (the 9999 and the 12.34 gone), the same fingerprint as D1.
* D4 in the next quarter: only the new quarter's rows, under a new fingerprint.

**Latest orders.** int_orders_latest (and int_orders, derived from it) recomputes only the orders with a version the
run may read that the previous build could not. After every run (full first build, three
incremental ones, then a backfill of D2 that rebuilds everything) it must hold exactly
what the as-of rule gives, written here by hand against raw: per order the version with
the newest (updated_at, _loaded_at, _batch_id) among those visible by as_of and changed
before its end, unless that version is a soft delete.
"""

from __future__ import annotations

import re
import statistics
from datetime import date
from decimal import Decimal

import duckdb
import pytest

from helpers import crm

pytestmark = pytest.mark.slow

D1, D2, D3 = date(2026, 5, 14), date(2026, 5, 15), date(2026, 5, 16)
D4 = date(2026, 7, 1)
CUSTOMERS = 300


def _indicators(path) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("select customer_id, grade_quarter, ind_order_frequency, ind_debt_ratio, "
                           "_input_fingerprint from intermediate.int_credit_indicators order by customer_id").fetchall()
    finally:
        con.close()


def _grade(path, customer: int) -> tuple:
    """(ind_order_frequency, total_score, grade_quarter) the mart customer_credit_grades shows."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("select ind_order_frequency, total_score, grade_quarter from audit.customer_credit_grades "
                           "where customer_id = ?", (customer,)).fetchone()
    finally:
        con.close()


def _docs_stage(path) -> dict:
    """The details of the latest run's docs stage."""
    return _stage_details(path, "docs")


def _stage_details(path, stage: str) -> dict:
    """The details of the latest run's stage ``stage``."""
    import json

    con = duckdb.connect(str(path), read_only=True)
    try:
        status, details = con.execute("select status, details from ops.run_stages where stage = ? "
                                      "order by started_at desc limit 1", (stage,)).fetchone()
    finally:
        con.close()
    assert status == "ok"
    return json.loads(details) if isinstance(details, str) else details


def _execute(path, sql: str, params=()) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute(sql, params)
    finally:
        con.close()


ORDER_COLUMNS = ("order_id, customer_id, order_date, status, currency, gross_amount, cost_amount, paid_amount, "
                 "written_off_amount, product_category, invoice_due_date, paid_at, updated_at")


def _built(con, relation: str) -> set[date]:
    """The as_of dates of the builds that wrote the rows of a kept table."""
    return {r[0] for r in con.execute(f"select distinct _built_as_of from {relation}").fetchall()}


def _check_latest_orders(path, as_of: date) -> set[date]:
    """int_orders_latest equals the hand-written as-of rule; returns its _built_as_of dates."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        expected = con.execute(
            f"select {ORDER_COLUMNS} from (select *, row_number() over (partition by order_id "
            f"order by updated_at desc, _loaded_at desc, _batch_id desc) as rk from raw.orders "
            f"where _visible_from <= ? and updated_at < cast(? as date) + interval 1 day) "
            f"where rk = 1 and not coalesce(is_deleted, false) order by order_id", (as_of, as_of)).fetchall()
        got = con.execute(f"select {ORDER_COLUMNS} from intermediate.int_orders_latest order by order_id").fetchall()
        built = _built(con, "intermediate.int_orders_latest")
    finally:
        con.close()
    assert len(expected) > 1000
    assert got == expected, f"as_of {as_of}: {len(got)} rows, expected {len(expected)}"
    return built


def _check_int_orders(path, as_of: date) -> set[date]:
    """int_orders equals its rule applied afresh to int_orders_latest (written here by hand:
    the orders dated by as_of, amounts converted with seed fx_rates; purchases are placed,
    shipped and returned orders; net revenue and margin count placed and shipped ones);
    returns its _built_as_of dates."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        expected = con.execute(
            "select order_id, customer_id, order_date, status, status in ('placed', 'shipped', 'returned'), "
            "case when status in ('placed', 'shipped') then gross_amount else 0 end, "
            "case when status in ('placed', 'shipped') then gross_amount - cost_amount else 0 end, "
            "paid_amount, paid_at from (select o.order_id, o.customer_id, o.order_date, o.status, o.paid_at, "
            "cast(o.gross_amount * fx.rate_to_reporting as decimal(18, 2)) as gross_amount, "
            "cast(o.cost_amount * fx.rate_to_reporting as decimal(18, 2)) as cost_amount, "
            "cast(coalesce(o.paid_amount, 0) * fx.rate_to_reporting as decimal(18, 2)) as paid_amount "
            "from intermediate.int_orders_latest o join config.fx_rates fx on o.currency = fx.currency "
            "where o.order_date <= ?) order by order_id", (as_of,)).fetchall()
        got = con.execute(
            "select order_id, customer_id, order_date, status, is_purchase, net_revenue, gross_margin, "
            "paid_amount, paid_at from intermediate.int_orders order by order_id").fetchall()
        built = _built(con, "intermediate.int_orders")
        versions = con.execute("select count(distinct _code_version) from intermediate.int_orders").fetchone()[0]
    finally:
        con.close()
    assert len(expected) > 1000
    assert got == expected, f"int_orders: {len(got)} rows, expected {len(expected)}"
    assert versions == 1
    return built


def _check_order_totals(path) -> set[date]:
    """int_customer_order_totals equals per-customer totals of int_orders' purchases,
    written here by hand (the median interval between purchase days in Python); returns
    its _built_as_of dates."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        expected = con.execute(
            "with p as (select * from intermediate.int_orders where is_purchase), "
            "d as (select customer_id, order_date, sum(net_revenue) as r from p group by 1, 2) "
            "select customer_id, min(order_date), max(order_date), count(*), "
            "sum(r) - arg_min(r, order_date), "
            "(select count(*) from p where p.customer_id = d.customer_id), "
            "(select sum(net_revenue) from p where p.customer_id = d.customer_id), "
            "(select count(distinct product_category) from p where p.customer_id = d.customer_id) "
            "from d group by customer_id order by customer_id").fetchall()
        got = con.execute(
            "select customer_id, first_order_date, last_order_date, order_days, repeat_days_net_revenue, "
            "orders_to_date, total_net_revenue, product_categories "
            "from intermediate.int_customer_order_totals order by customer_id").fetchall()
        built = _built(con, "intermediate.int_customer_order_totals")
        days = con.execute("select distinct customer_id, order_date from intermediate.int_orders "
                           "where is_purchase order by 1, 2").fetchall()
        medians = dict(con.execute("select customer_id, median_interval_days "
                                   "from intermediate.int_customer_order_totals").fetchall())
    finally:
        con.close()
    assert len(expected) > 100
    assert got == expected, f"int_customer_order_totals: {len(got)} rows, expected {len(expected)}"
    # the median gap between consecutive purchase days, worked out here in Python
    by_customer: dict[int, list[date]] = {}
    for customer, day in days:
        by_customer.setdefault(customer, []).append(day)
    want = {c: (Decimal(str(statistics.median([(b - a).days for a, b in zip(d, d[1:])]))).quantize(Decimal("0.01"))
                if len(d) > 1 else None) for c, d in by_customer.items()}
    assert any(v is not None for v in want.values())
    assert medians == want
    return built


def _check_spells(path) -> set[date]:
    """int_retention_spells equals the activity spells worked out here from int_orders'
    purchase days (a new spell after a gap of more than 365 days; a spell ends 364 days
    after its last purchase day); returns its _built_as_of dates."""
    from datetime import timedelta

    con = duckdb.connect(str(path), read_only=True)
    try:
        days = con.execute("select distinct customer_id, order_date from intermediate.int_orders "
                           "where is_purchase order by 1, 2").fetchall()
        got = con.execute("select customer_id, spell_no, spell_start, spell_end, next_spell_start "
                          "from intermediate.int_retention_spells order by 1, 2").fetchall()
        built = _built(con, "intermediate.int_retention_spells")
    finally:
        con.close()
    spells: list[list] = []
    for customer, day in days:
        if spells and spells[-1][0] == customer and (day - spells[-1][4]).days <= 365:
            spells[-1][4] = day
        else:
            number = spells[-1][1] + 1 if spells and spells[-1][0] == customer else 1
            spells.append([customer, number, day, None, day])
    expected = []
    for i, (customer, number, start, _, last) in enumerate(spells):
        following = spells[i + 1] if i + 1 < len(spells) and spells[i + 1][0] == customer else None
        expected.append((customer, number, start, last + timedelta(days=364), following[2] if following else None))
    assert len(expected) > 100
    assert got == expected, f"int_retention_spells: {len(got)} rows, expected {len(expected)}"
    return built


def _check_window_totals(path, as_of: date) -> set[date]:
    """int_customer_window_totals equals the window sums worked out here in Python from
    int_orders' purchases (the default settings: 365-day windows ending on as_of, and on
    as_of - 365 days for the prior ones); returns its _built_as_of dates."""
    from datetime import timedelta

    con = duckdb.connect(str(path), read_only=True)
    try:
        purchases = con.execute("select customer_id, order_date, net_revenue, gross_margin "
                                "from intermediate.int_orders where is_purchase").fetchall()
        got = {r[0]: r[1:] for r in con.execute(
            "select customer_id, trailing_net_revenue, trailing_gross_margin, trailing_orders, "
            "basis_net_revenue, year_net_revenue, prior_year_net_revenue, prior_year_orders, "
            "prior_basis_net_revenue, prior_basis_gross_margin "
            "from intermediate.int_customer_window_totals").fetchall()}
        built = _built(con, "intermediate.int_customer_window_totals")
    finally:
        con.close()
    current = (as_of - timedelta(days=364), as_of)
    prior = (as_of - timedelta(days=729), as_of - timedelta(days=365))
    sums: dict[int, list] = {}
    zero = Decimal("0.00")
    for customer, day, revenue, margin in purchases:
        for lo, hi, offset in ((*current, 0), (*prior, 3)):
            if lo <= day <= hi:
                row = sums.setdefault(customer, [zero, zero, 0, zero, zero, 0])
                row[offset] += revenue
                row[offset + 1] += margin
                row[offset + 2] += 1
    expected = {c: (r[0], r[1], r[2], r[0], r[0], r[3], r[5], r[3], r[4]) for c, r in sums.items()}
    assert len(expected) > 100
    assert got == expected, f"int_customer_window_totals as of {as_of}: {len(got)} rows, expected {len(expected)}"
    return built


def _changed_customers(path) -> set[int]:
    """The customers the last run recomputed in the kept per-customer models."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {r[0] for r in con.execute("select customer_id from intermediate.int_orders_changes").fetchall()}
    finally:
        con.close()


def _customers_changed_on(path, day: date) -> set[int]:
    """The customers of the order versions the run for `day` loaded, or with that order date."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {r[0] for r in con.execute("select customer_id from raw.orders where _as_of = ? or order_date = ?",
                                          (day, day)).fetchall()}
    finally:
        con.close()


def _run(home, as_of: date, env: dict | None = None) -> None:
    # a 300-customer demo day has a handful of rows per entity, of which the demo breaks some
    done = crm("run", "--home", str(home), "--as-of", as_of.isoformat(),
               env={"CRM_GATE_MAX_QUARANTINE_SHARE": "1", "CRM_DBT_DOCS": "1", **(env or {})})
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]


def test_credit_snapshot_and_latest_orders_keep_their_rows_between_runs(tmp_path):
    home = tmp_path / "home"
    made = crm("demo-data", "--home", str(home), "--customers", str(CUSTOMERS), "--until", D4.isoformat())
    assert made.returncode == 0, made.stdout + made.stderr
    wh = home / "warehouse.duckdb"

    _run(home, D1)
    assert _check_latest_orders(wh, D1) == {D1}
    assert _check_int_orders(wh, D1) == {D1}
    assert _check_order_totals(wh) == {D1}
    assert _check_spells(wh) == {D1}
    assert _check_window_totals(wh, D1) == {D1}
    # D1's order totals, put back after D2 below: a kept table one build behind the others
    _execute(wh, "create table intermediate.order_totals_d1 as select * from intermediate.int_customer_order_totals")
    assert "kept" not in _docs_stage(wh)  # the first run generates the dbt docs
    # each dbt stage records its models' seconds and its data tests' (count, seconds in
    # all, the slowest by name), so that a slow night names what made it slow
    for dbt_stage in ("dbt_staging", "dbt_marts"):
        details = _stage_details(wh, dbt_stage)
        assert "int_orders" in details["model_seconds"] or "customer_rfm" in details["model_seconds"]
        tests = details["test_seconds"]
        assert tests["n"] > 20 and 0 < len(tests["slowest"]) <= 10
        assert not set(tests["slowest"]) & set(details["model_seconds"]), tests["slowest"]
        assert tests["seconds"] >= sum(tests["slowest"].values()) - 0.01
    index = home / "docs" / "dbt" / "index.html"
    generated_at = index.stat().st_mtime_ns
    # generating the docs only describes the project: none of the kept models' or the
    # credit snapshot's state lookups (each a scan of a kept table) ran for it
    docs_log = (home / "docs" / "dbt" / "logs" / "dbt.log").read_text()
    assert "Building catalog" in docs_log and "select cast(max(_built_as_of)" not in docs_log
    assert "_input_fingerprint = '" not in docs_log
    first = _indicators(wh)
    assert len(first) > 100
    fingerprints = {r[4] for r in first}
    assert len(fingerprints) == 1 and re.fullmatch(r"[0-9a-f]{32}", next(iter(fingerprints)))
    assert {r[1] for r in first} == {date(2026, 4, 1)}
    customer = first[0][0]
    assert first[0][2] != 9999

    graded = _grade(wh, customer)
    assert graded[1] != Decimal("12.34") and graded[2] == date(2026, 4, 1)
    _execute(wh, "update intermediate.int_credit_indicators set ind_order_frequency = 9999 where customer_id = ?",
             (customer,))
    _execute(wh, "update intermediate.int_credit_grades set total_score = 12.34 where customer_id = ?", (customer,))
    dbt_logs = tmp_path / "dbt-logs"
    _run(home, D2, env={"DBT_LOG_PATH": str(dbt_logs)})
    # the credit snapshot counted raw once for D2 (int_credit_indicators: its pre-hook and
    # its SELECT each render the fingerprint), not once per snapshot model: the points
    # and the grades take it from the indicators' rows
    dbt_sql = "\n".join(p.read_text(errors="replace") for p in dbt_logs.rglob("dbt.log*"))
    raw_counts = dbt_sql.count("select 'complaints' as t, count(*) as n")
    assert 1 <= raw_counts <= 2, raw_counts
    assert _check_latest_orders(wh, D2) == {D1, D2}  # only the changed orders were rewritten
    assert _check_int_orders(wh, D2) == {D1, D2}
    assert _check_order_totals(wh) == {D1, D2}
    assert _check_spells(wh) == {D1, D2}
    assert _check_window_totals(wh, D2) == {D1, D2}
    # the run date reaches dbt outside its vars: both dbt stages of D2 reuse the parse
    # of D1 instead of parsing the project from scratch
    d2_log = (home / "logs" / f"run-{D2.isoformat()}.log").read_text()
    assert d2_log.count("Running with dbt") == 2
    assert "Unable to do partial parsing" not in d2_log and "Starting full parse" not in d2_log
    # the same dbt project and target: the docs of D1 are kept, not generated again
    assert "kept" in _docs_stage(wh) and index.stat().st_mtime_ns == generated_at
    kept = _indicators(wh)
    assert kept[0][:2] == (customer, date(2026, 4, 1)) and kept[0][2] == 9999
    assert kept[1:] == first[1:]
    # the mart publishes the kept grade row (graded at D1, before the 9999)
    assert _grade(wh, customer) == (graded[0], Decimal("12.34"), date(2026, 4, 1))

    # the order totals as D1 left them (as when D2's build stopped before them): the next
    # run must also recompute the customers whose orders changed on D2
    d2_changed = _changed_customers(wh)
    assert d2_changed
    _execute(wh, "create or replace table intermediate.int_customer_order_totals as "
                 "select * from intermediate.order_totals_d1")
    _execute(wh, "drop table intermediate.order_totals_d1")
    with pytest.raises(AssertionError):  # stale: D2's changes are missing
        _check_order_totals(wh)
    for table in ("int_credit_indicators", "int_credit_indicator_points", "int_credit_grades"):
        _execute(wh, f"update intermediate.{table} set _input_fingerprint = 'stale'")
    # int_orders rows computed by other code are all computed again
    _execute(wh, "update intermediate.int_orders set _code_version = 0")
    _run(home, D3)
    assert _indicators(wh) == first
    assert _grade(wh, customer) == graded
    # the changes are found from the oldest kept build (the totals' D1): D2's orders are
    # recomputed again with D3's, the rest of D1's rows are kept
    assert _check_latest_orders(wh, D3) == {D1, D3}
    assert _check_int_orders(wh, D3) == {D3}
    assert _check_order_totals(wh) >= {D1, D3}
    # some of D2's customers had no change of their own on D3: only the catch-up mended them
    assert d2_changed - _customers_changed_on(wh, D3), "D3 changed the same customers as D2: the check proves nothing"
    assert _check_spells(wh) >= {D1, D3}
    assert _check_window_totals(wh, D3) >= {D1, D3}
    # a table left by code that had fewer columns: computed again with the new ones
    _execute(wh, "alter table intermediate.int_orders drop column _code_version")
    _execute(wh, "alter table intermediate.int_orders_latest drop column _raw_loaded_through")

    _run(home, D4)
    next_quarter = _indicators(wh)
    assert {r[1] for r in next_quarter} == {date(2026, 7, 1)}
    assert len({r[4] for r in next_quarter}) == 1 and next_quarter[0][4] not in fingerprints
    assert _check_latest_orders(wh, D4) == {D4}
    assert _check_int_orders(wh, D4) == {D4}
    assert D4 in _check_order_totals(wh)
    assert D4 in _check_spells(wh)
    assert D4 in _check_window_totals(wh, D4)

    # a backfill of an earlier date computes every order for that date
    _run(home, D2)
    assert _check_latest_orders(wh, D2) == {D2}
    assert _check_int_orders(wh, D2) == {D2}
    assert _check_order_totals(wh) == {D2}
    assert _check_spells(wh) == {D2}
    assert _check_window_totals(wh, D2) == {D2}
