"""The credit desk end to end (docs/rules.md, "Grades from the first night" and
"Monitoring the scorecard"), on the embedded warehouse.

A warehouse's first night (2026-06-30) grades the quarter from 2026-04-01 with data
through 2026-03-31, but its history was loaded after that day: many rows hold only a
version changed later. Every customer that existed at the cut-off must be graded, and a
grade must name the indicators that rest on a version from after the cut-off. The
expectation is worked out here with pandas from raw, by the rule itself: per key, the
latest version known at the cut-off, else the earliest of the first load; then each input's business
date (created, ordered, opened, period end) decides whether the row counts.

The next night (2026-07-01, the next quarter) knows the true past: nothing is
reconstructed, the first quarter's published grades stay as they were, and the migration
matrix and the total score's stability index equal those computed here from the two
quarters' published grades.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date, datetime

import duckdb
import pandas as pd
import pytest

from helpers import crm

pytestmark = pytest.mark.slow

FIRST, NEXT = date(2026, 6, 30), date(2026, 7, 1)
THROUGH, CUTOFF_END = date(2026, 3, 31), datetime(2026, 4, 1)

#: which inputs each indicator is computed from (docs/rules.md, the scorecard)
INPUTS = {
    "years_as_customer": {"customers"}, "complaint_rate": {"complaints", "orders"}, "dispute_count": {"complaints"},
    "contact_completeness": {"contacts"}, "key_role_coverage": {"contacts"},
    "on_time_payment_rate": {"orders"}, "avg_days_past_due": {"orders"}, "max_days_overdue": {"orders"},
    "overdue_count": {"orders"}, "written_off_amount": {"orders"},
    "debt_ratio": {"financial_statements"}, "current_ratio": {"financial_statements"},
    "credit_utilisation": {"customers", "orders"},
    "order_frequency": {"orders"}, "revenue_growth_qoq": {"orders"}, "purchase_regularity": {"orders"},
    "product_breadth": {"orders"},
    "net_margin": {"financial_statements"}, "return_on_assets": {"financial_statements"},
    "gross_margin_brought": {"orders"},
}
ORDER = list(INPUTS)  # scorecard order


def _at_cutoff(versions: pd.DataFrame, key: str, as_of: date) -> pd.DataFrame:
    """Per key: the latest version known at the cut-off, else (history loaded after it)
    the earliest of the first load, with a column reconstructed; soft-deleted picks
    dropped."""
    v = versions[versions["_visible_from"] <= pd.Timestamp(as_of)].copy()
    v["known"] = (v["_visible_from"] <= pd.Timestamp(THROUGH)) & (v["updated_at"] < pd.Timestamp(CUTOFF_END))
    first_load = v["_as_of"].min()
    assert first_load > pd.Timestamp(THROUGH)  # the first night's load is after the cut-off
    picks = []
    for _, rows in v.groupby(key):
        known = rows[rows["known"]]
        loaded_first = rows[rows["_as_of"] == first_load]
        if len(known):
            pick = known.sort_values(["updated_at", "_loaded_at"]).iloc[-1].copy()
            pick["reconstructed"] = False
        elif len(loaded_first):
            pick = loaded_first.sort_values(["updated_at", "_loaded_at"]).iloc[0].copy()
            pick["reconstructed"] = True
        else:  # reached the warehouse after the first load: waits for the next quarter
            continue
        picks.append(pick)
    out = pd.DataFrame(picks)
    return out[~out["is_deleted"].fillna(False).astype(bool)]


def _expected_first_night(path) -> tuple[set[int], dict[int, str]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        raw = {t: con.execute(f"select * from raw.{t}").df()
               for t in ("customers", "orders", "complaints", "contacts", "financial_statements")}
    finally:
        con.close()
    customers = _at_cutoff(raw["customers"], "customer_id", FIRST)
    customers = customers[customers["created_at"] < pd.Timestamp(CUTOFF_END)]
    graded = set(customers["customer_id"].astype(int))
    flagged: dict[int, set[str]] = defaultdict(set)
    for _, c in customers[customers["reconstructed"]].iterrows():
        flagged[int(c["customer_id"])].add("customers")
    orders = _at_cutoff(raw["orders"], "order_id", FIRST)
    orders = orders[orders["order_date"] <= pd.Timestamp(THROUGH)]
    complaints = _at_cutoff(raw["complaints"], "complaint_id", FIRST)
    complaints = complaints[complaints["opened_at"] < pd.Timestamp(CUTOFF_END)]
    contacts = _at_cutoff(raw["contacts"], "contact_id", FIRST)
    for name, frame in (("orders", orders), ("complaints", complaints), ("contacts", contacts)):
        for cid in frame.loc[frame["reconstructed"], "customer_id"].astype(int):
            flagged[cid].add(name)
    statements = _at_cutoff(raw["financial_statements"], "statement_id", FIRST)
    statements = statements[statements["period_end"] <= pd.Timestamp(THROUGH)]
    chosen = statements.sort_values(["period_end", "updated_at", "statement_id"]).groupby("customer_id").tail(1)
    for cid in chosen.loc[chosen["reconstructed"], "customer_id"].astype(int):
        flagged[cid].add("financial_statements")
    lists = {cid: ",".join(i for i in ORDER if INPUTS[i] & flagged.get(cid, set())) for cid in graded}
    return graded, lists


def _psi(current: pd.Series, previous: pd.Series, floor: float = 0.0001) -> float:
    cur, prev = current.value_counts(normalize=True), previous.value_counts(normalize=True)
    total = 0.0
    for band in set(cur.index) | set(prev.index):
        a, e = max(cur.get(band, 0.0), floor), max(prev.get(band, 0.0), floor)
        total += (a - e) * math.log(a / e)
    return total


def test_the_first_night_grades_everyone_and_says_what_was_reconstructed(tmp_path):
    home = tmp_path / "home"
    made = crm("demo-data", "--home", str(home), "--customers", "300", "--until", NEXT.isoformat())
    assert made.returncode == 0, made.stdout + made.stderr
    wh = home / "warehouse.duckdb"
    env = {"CRM_GATE_MAX_QUARANTINE_SHARE": "1"}

    first = crm("run", "--home", str(home), "--as-of", FIRST.isoformat(), env=env)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    graded, lists = _expected_first_night(wh)
    con = duckdb.connect(str(wh), read_only=True)
    try:
        rows = con.execute("select customer_id, grade_quarter, is_reconstructed, reconstructed_indicators "
                           "from published.customer_credit_grades").fetchall()
        q2 = con.execute("select * from published.customer_credit_grades order by customer_id").fetchall()
    finally:
        con.close()
    assert {r[0] for r in rows} == graded and len(rows) == len(graded)
    assert {r[1] for r in rows} == {date(2026, 4, 1)}
    got = {r[0]: r[3] for r in rows}
    assert got == lists
    assert all(r[2] == (r[3] != "") for r in rows)
    reconstructed = sum(1 for v in lists.values() if v)
    assert 0 < reconstructed < len(graded)
    assert f"{reconstructed:,} of {len(graded):,} customers graded partly from reconstructed data" in first.stdout

    second = crm("run", "--home", str(home), "--as-of", NEXT.isoformat(), env=env)
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    assert "reconstructed data" not in second.stdout
    con = duckdb.connect(str(wh), read_only=True)
    try:
        grades = con.execute("select customer_id, grade_quarter, credit_grade, total_score, is_reconstructed "
                             "from published.customer_credit_grades").df()
        q2_again = con.execute("select * from published.customer_credit_grades where grade_quarter = '2026-04-01' "
                               "order by customer_id").fetchall()
        migration = con.execute("select from_grade, to_grade, customers, previous_grade_quarter "
                                "from published.credit_grade_migration").fetchall()
        psi = con.execute("select distinct psi, status from published.credit_scorecard_stability "
                          "where measure = 'total_score'").fetchall()
    finally:
        con.close()
    q3 = grades[grades["grade_quarter"] == pd.Timestamp(NEXT)]
    assert len(q3) and not q3["is_reconstructed"].any()
    assert q2_again == q2  # a quarter's published grades never change

    # the migration matrix, counted here from the two quarters' published grades
    before = grades[grades["grade_quarter"] == pd.Timestamp(2026, 4, 1)].set_index("customer_id")["credit_grade"]
    now = q3.set_index("customer_id")["credit_grade"]
    pairs = pd.concat([before.rename("f"), now.rename("t")], axis=1)
    pairs = pairs.fillna({"f": "(new)", "t": "(no longer graded)"}).value_counts()
    assert sorted((f, t, n) for f, t, n, _ in migration) == sorted((f, t, int(n)) for (f, t), n in pairs.items())
    assert {m[3] for m in migration} == {date(2026, 4, 1)}

    # the total score's stability index, from 10-point bands (100 in the last band)
    def bands(scores: pd.Series) -> pd.Series:
        return scores.astype(float).map(lambda s: min(math.floor(s / 10) * 10, 90))

    expected = _psi(bands(q3["total_score"]), bands(grades.loc[grades["grade_quarter"] == pd.Timestamp(2026, 4, 1),
                                                              "total_score"]))
    assert len(psi) == 1 and float(psi[0][0]) == pytest.approx(expected, abs=1e-6)
    assert psi[0][1] == ("shift" if expected > 0.25 else "watch" if expected >= 0.10 else "stable")
