"""The demo source generator: determinism, incremental advance, targets, business rules.

Expected values come from the rules the generator must exercise (domain.md section 1
and the demo brief), not from its output: e.g. "the top 20% of customers make 70-85% of
revenue" becomes a band the share must fall in.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import sqlite3
import time
import uuid

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from crm_pipeline import contract as c
from crm_pipeline import demo

D = dt.date
BIG_N, BIG_H = 5000, D(2026, 11, 21)
#: rough CNY per unit, only to compare spend across currencies
FX = {"CNY": 1.0, "USD": 7.2, "EUR": 7.8, "HKD": 0.92}
PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
ALL_TABLES = [e.name for e in c.ENTITIES] + [demo.STATE_TABLE]


def _end(d: dt.date) -> pd.Timestamp:
    return pd.Timestamp(d) + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)


def _sqlite_url(path) -> str:
    return f"sqlite:///{path}"


def _dump(path) -> list[str]:
    """Every table's DDL and rows, exactly as SQLite stores them."""
    con = sqlite3.connect(path)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def _latest(versions: pd.DataFrame, key: str) -> pd.DataFrame:
    return versions.drop_duplicates(key, keep="last").reset_index(drop=True)


# --------------------------------------------------------------------------------------
# determinism and incremental advance (SQLite)
# --------------------------------------------------------------------------------------


def test_same_inputs_give_identical_sources(tmp_path):
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    demo.advance_source(_sqlite_url(a), D(2025, 3, 31), customers=300, seed=11)
    demo.advance_source(_sqlite_url(b), D(2025, 3, 31), customers=300, seed=11)
    dump = _dump(a)
    assert sum(line.startswith('INSERT INTO "orders"') for line in dump) > 500
    assert dump == _dump(b)
    # and another seed is another world
    other = tmp_path / "c.sqlite"
    demo.advance_source(_sqlite_url(other), D(2025, 3, 31), customers=300, seed=12)
    assert _dump(other) != dump


def test_stepwise_equals_one_shot(tmp_path):
    one, steps = tmp_path / "one.sqlite", tmp_path / "steps.sqlite"
    demo.advance_source(_sqlite_url(one), D(2025, 2, 10), customers=300, seed=5)
    applied = []
    for day in (D(2023, 7, 1), D(2024, 1, 31), D(2024, 2, 1), D(2024, 9, 15), D(2025, 2, 9), D(2025, 2, 10)):
        r = demo.advance_source(_sqlite_url(steps), day, customers=300, seed=5)
        applied.append((r.applied_from, r.applied_until))
    assert applied[1] == (D(2023, 7, 2), D(2024, 1, 31))
    assert applied[2] == (D(2024, 2, 1), D(2024, 2, 1))
    assert _dump(one) == _dump(steps)


def test_nothing_after_until_is_visible(tmp_path):
    until = D(2024, 11, 11)
    path = tmp_path / "s.sqlite"
    demo.advance_source(_sqlite_url(path), until, customers=300, seed=3)
    con = sqlite3.connect(path)
    end = "2024-11-11 23:59:59.999999"
    for e in c.ENTITIES:
        (latest,) = con.execute(f"SELECT max(updated_at) FROM {e.name}").fetchone()
        assert latest is not None and latest <= end, e.name
    # the timestamp format is one fixed width, so text order is time order
    for e in c.ENTITIES:
        for col, t in e.columns.items():
            fmt = {"timestamp": r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$", "date": r"^\d{4}-\d\d-\d\d$"}.get(t)
            if fmt:
                values = [v for (v,) in con.execute(f"SELECT DISTINCT {col} FROM {e.name}") if v is not None]
                assert values and all(re.match(fmt, v) for v in values), (e.name, col)
    assert con.execute("SELECT count(*) FROM orders WHERE order_date > '2024-11-11'").fetchone() == (0,)
    con.close()
    # the same holds for the raw versions
    world = demo.generate_world(300, 3, until)
    for name, df in world.items():
        assert (df["updated_at"] <= _end(until)).all(), name


def test_consecutive_days_change_rows(tmp_path):
    path = tmp_path / "s.sqlite"
    url = _sqlite_url(path)
    first = demo.advance_source(url, D(2025, 6, 9), customers=300, seed=8)
    assert first.applied_from == demo.WORLD_START
    assert first.rows_changed == first.rows_total
    r = demo.advance_source(url, D(2025, 6, 10), customers=300, seed=8)
    assert (r.applied_from, r.applied_until) == (D(2025, 6, 10), D(2025, 6, 10))
    assert r.rows_changed["orders"] > 0
    con = sqlite3.connect(path)
    for e in c.ENTITIES:
        # every row changed in this step carries a version of 2025-06-10, and only those
        (n_day,) = con.execute(
            f"SELECT count(*) FROM {e.name} WHERE updated_at >= '2025-06-10'").fetchone()
        assert n_day == r.rows_changed[e.name], e.name
        (latest,) = con.execute(f"SELECT max(updated_at) FROM {e.name}").fetchone()
        assert latest <= "2025-06-10 23:59:59.999999", e.name
        (total,) = con.execute(f"SELECT count(*) FROM {e.name}").fetchone()
        assert total == r.rows_total[e.name]
    # some rows were updated in place (not only new rows)
    new_orders = r.rows_total["orders"] - first.rows_total["orders"]
    assert r.rows_changed["orders"] > new_orders
    con.close()
    # advancing to the applied day again is a no-op
    again = demo.advance_source(url, D(2025, 6, 10), customers=300, seed=8)
    assert sum(again.rows_changed.values()) == 0 and again.rows_total == r.rows_total


def test_going_back_or_switching_world_raises(tmp_path):
    path = tmp_path / "s.sqlite"
    url = _sqlite_url(path)
    demo.advance_source(url, D(2024, 3, 1), customers=50, seed=1)
    before = _dump(path)
    with pytest.raises(ValueError, match="already advanced to 2024-03-01"):
        demo.advance_source(url, D(2024, 2, 29), customers=50, seed=1)
    with pytest.raises(ValueError, match="seed"):
        demo.advance_source(url, D(2024, 4, 1), customers=50, seed=2)
    with pytest.raises(ValueError, match="customers"):
        demo.advance_source(url, D(2024, 4, 1), customers=51, seed=1)
    assert _dump(path) == before


def test_refuses_foreign_tables(tmp_path):
    path = tmp_path / "s.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE orders (order_id INTEGER PRIMARY KEY, customer_id INTEGER, order_date DATE, "
                "status TEXT, currency TEXT, gross_amount NUMERIC(14,2), cost_amount NUMERIC(14,2), "
                "product_category TEXT, invoice_due_date DATE, paid_amount NUMERIC(14,2), paid_at TIMESTAMP, "
                "written_off_amount NUMERIC(14,2), updated_at TIMESTAMP, is_deleted BOOLEAN)")
    con.execute("INSERT INTO orders (order_id) VALUES (1)")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match="not a demo source"):
        demo.advance_source(_sqlite_url(path), D(2024, 1, 1), customers=10)


def test_extending_the_horizon_keeps_earlier_versions():
    early = demo.generate_world(400, 9, D(2024, 5, 17))
    late = demo.generate_world(400, 9, D(2027, 12, 31))
    for name, df in early.items():
        head = late[name][late[name]["updated_at"] <= _end(D(2024, 5, 17))].reset_index(drop=True)
        pd.testing.assert_frame_equal(df, head, obj=name)
        assert len(late[name]) > len(df), name
    # orders go on after customer acquisition has stopped
    assert late["orders"]["updated_at"].max() > pd.Timestamp("2027-12-01")
    assert late["customers"]["created_at"].max() <= _end(demo.ACQUISITION_END)


# --------------------------------------------------------------------------------------
# PostgreSQL and MariaDB targets: same contents as SQLite
# --------------------------------------------------------------------------------------


def _normalised(url: str, schema: str | None) -> dict[str, list[tuple]]:
    """Table contents with values in one canonical form whatever the engine."""
    engine = sa.create_engine(url)
    out = {}
    try:
        with engine.connect() as conn:
            prefix = f"{schema}." if schema else ""
            for e in c.ENTITIES:
                cols = list(e.columns)
                rows = conn.execute(sa.text(f"SELECT {', '.join(cols)} FROM {prefix}{e.name} ORDER BY {e.key}"))
                norm = []
                for row in rows:
                    vals = []
                    for v, t in zip(row, e.columns.values()):
                        if v is None:
                            vals.append(None)
                        elif t == "money":
                            vals.append(decimal.Decimal(str(v)).quantize(decimal.Decimal("0.01")))
                        elif t == "date":
                            vals.append(v if isinstance(v, str) else v.isoformat())
                        elif t == "timestamp":
                            vals.append(v if isinstance(v, str) else v.isoformat(sep=" ", timespec="microseconds"))
                        elif t == "bool":
                            vals.append(bool(v))
                        else:
                            vals.append(v)
                    norm.append(tuple(vals))
                out[e.name] = norm
            state = conn.execute(sa.text(f"SELECT seed, customers, applied_until FROM {prefix}{demo.STATE_TABLE}")).one()
            out["_state"] = [(state[0], state[1], str(state[2]))]
    finally:
        engine.dispose()
    return out


def _server_or_skip(url: str) -> sa.Engine:
    engine = sa.create_engine(url)
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"server not reachable: {exc}")
    return engine


def _check_server_target(url: str, schema: str, tmp_path) -> None:
    reference = tmp_path / "ref.sqlite"
    demo.advance_source(_sqlite_url(reference), D(2025, 2, 10), customers=200, seed=21)
    first = demo.advance_source(url, D(2024, 12, 31), customers=200, seed=21, schema=schema)
    assert first.rows_total["orders"] > 0
    second = demo.advance_source(url, D(2025, 2, 10), customers=200, seed=21, schema=schema)
    assert sum(second.rows_changed.values()) > 0
    with pytest.raises(ValueError, match="already advanced"):
        demo.advance_source(url, D(2025, 1, 1), customers=200, seed=21, schema=schema)
    got = _normalised(url, schema)
    want = _normalised(_sqlite_url(reference), None)
    for name in want:
        assert got[name] == want[name], name
    # the declared column types are the contract's
    inspector = sa.inspect(sa.create_engine(url))
    cols = {col["name"]: col["type"] for col in inspector.get_columns("orders", schema=schema)}
    assert isinstance(cols["gross_amount"], sa.Numeric) and cols["gross_amount"].scale == 2
    assert isinstance(cols["order_date"], sa.Date) and not isinstance(cols["order_date"], sa.DateTime)
    assert isinstance(cols["updated_at"], sa.DateTime)
    indexes = {tuple(ix["column_names"]) for ix in inspector.get_indexes("orders", schema=schema)}
    assert ("updated_at",) in indexes
    assert inspector.get_pk_constraint("orders", schema=schema)["constrained_columns"] == ["order_id"]


@pytest.mark.postgres
def test_postgres_target(tmp_path):
    engine = _server_or_skip(PG_URL)
    schema = f"demo_test_{uuid.uuid4().hex[:10]}"
    try:
        _check_server_target(PG_URL, schema, tmp_path)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()


@pytest.mark.mariadb
def test_mariadb_target(tmp_path):
    engine = _server_or_skip(MARIADB_URL)
    database = f"demo_test_{uuid.uuid4().hex[:10]}"
    try:
        _check_server_target(MARIADB_URL, database, tmp_path)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{database}`")
        engine.dispose()


# --------------------------------------------------------------------------------------
# the default world: size, speed and the business rules it must exercise
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world() -> dict[str, pd.DataFrame]:
    return demo.generate_world(BIG_N, 42, BIG_H)


@pytest.fixture(scope="module")
def state(world) -> dict[str, pd.DataFrame]:
    return {e.name: _latest(world[e.name], e.key) for e in c.ENTITIES}


def test_default_source_is_fast_and_complete(tmp_path, state):
    started = time.perf_counter()
    r = demo.advance_source(_sqlite_url(tmp_path / "source.sqlite"), BIG_H)
    elapsed = time.perf_counter() - started
    assert elapsed < 20, f"default generation took {elapsed:.1f}s"
    assert r.rows_total == {name: len(df) for name, df in state.items()}
    assert r.rows_total["customers"] == BIG_N


def test_versions_are_well_formed(world):
    for e in c.ENTITIES:
        df = world[e.name]
        assert list(df.columns) == list(e.columns), e.name
        # one row per version, strictly later than the previous version of the same key
        key, ts = df[e.key].to_numpy(), df["updated_at"].to_numpy()
        same = key[1:] == key[:-1]
        assert (key[1:] >= key[:-1]).all() and (ts[1:][same] > ts[:-1][same]).all(), e.name
        assert not df["is_deleted"].isna().any()
        # nothing after the horizon, but changes right up to it
        assert df["updated_at"].max() <= _end(BIG_H), e.name
        if e.name in ("orders", "contacts"):
            assert df["updated_at"].max() >= pd.Timestamp(BIG_H), e.name
        # keys are 1..n without gaps: ids assigned in creation order
        assert set(df[e.key]) == set(range(1, df[e.key].nunique() + 1)), e.name
        first = df.drop_duplicates(e.key, keep="first")
        if e.name != "customers":
            created = world["customers"].drop_duplicates("customer_id").set_index("customer_id")["created_at"]
            assert (first["updated_at"].to_numpy() >= created.loc[first["customer_id"]].to_numpy()).all(), e.name
        assert (first["updated_at"] >= pd.Timestamp(demo.WORLD_START)).all()
        # ids grow with creation time
        assert first.sort_values(e.key)["updated_at"].is_monotonic_increasing, e.name


def test_values_are_in_the_contract(world):
    cu, o, q = world["customers"], world["orders"], world["complaints"]
    assert set(cu["customer_type"]) == set(c.CUSTOMER_TYPES)
    assert set(cu["acquisition_channel"]) == set(c.ACQUISITION_CHANNELS)
    assert set(cu["status"]) == set(c.CUSTOMER_STATUSES)
    assert set(o["status"]) == set(c.ORDER_STATUSES)
    assert set(o["currency"]) == set(c.KNOWN_CURRENCIES)
    assert set(q["status"]) == set(c.COMPLAINT_STATUSES)
    assert set(q["severity"]) == set(c.COMPLAINT_SEVERITIES)
    assert set(q["category"]) == {"delivery", "quality", "billing_dispute", "service", "product"}
    assert set(world["contacts"]["role"]) == set(c.CONTACT_ROLES)
    assert (cu["updated_at"] >= cu["created_at"]).all()
    assert (q["updated_at"] >= q["opened_at"]).all()
    for col in ("customer_id", "name", "customer_type", "region", "acquisition_channel", "account_manager",
                "status", "created_at"):
        assert cu[col].notna().all(), col
    for col in ("customer_id", "order_date", "status", "currency", "gross_amount", "cost_amount",
                "product_category", "invoice_due_date", "paid_amount", "written_off_amount"):
        assert o[col].notna().all(), col
    assert (o["gross_amount"] > 0).all() and (o["paid_amount"] >= 0).all()
    assert (o["paid_amount"] + o["written_off_amount"] <= o["gross_amount"] + 0.005).all()
    # orders belong to their first version's day; the invoice is due 60 (enterprise) or 30 days later
    first = o.drop_duplicates("order_id")
    assert (first["order_date"] == first["updated_at"].dt.normalize()).all()
    assert (first["status"] == "placed").all()
    kind = cu.drop_duplicates("customer_id").set_index("customer_id")["customer_type"]
    term = (first["invoice_due_date"] - first["order_date"]).dt.days
    assert (term == np.where(kind.loc[first["customer_id"]].to_numpy() == "enterprise", 60, 30)).all()
    paid = o[o["paid_at"].notna()]
    placed = first.set_index("order_id")["updated_at"]
    assert (paid["paid_at"].to_numpy() > placed.loc[paid["order_id"]].to_numpy()).all()
    # complaints: resolved_at exactly while resolved, always after opening; orders belong to the customer
    assert ((q["status"] == "resolved") == q["resolved_at"].notna()).all()
    assert (q["resolved_at"].dropna() > q.loc[q["resolved_at"].notna(), "opened_at"]).all()
    linked = q.dropna(subset=["order_id"])
    owner = first.set_index("order_id")["customer_id"]
    assert (owner.loc[linked["order_id"].astype(int)].to_numpy() == linked["customer_id"].to_numpy()).all()
    assert (placed.loc[linked["order_id"].astype(int)].to_numpy() < linked["opened_at"].to_numpy()).all()
    assert (q["compensation_amount"] >= 0).all()


def test_spend_is_heavy_tailed(state):
    o = state["orders"]
    live = o[~o["status"].isin(["cancelled", "returned"]) & ~o["is_deleted"]]
    live = live.assign(cny=live["gross_amount"] * live["currency"].map(FX))
    for since in (None, BIG_H - dt.timedelta(days=365)):
        part = live if since is None else live[live["order_date"] > pd.Timestamp(since)]
        rev = np.sort(part.groupby("customer_id")["cny"].sum().to_numpy())[::-1]
        n = len(rev)
        top20 = rev[: int(np.ceil(0.2 * n))].sum() / rev.sum()
        assert 0.65 <= top20 <= 0.9, (since, top20)
        # the top 1% stands out from the next 4%
        assert rev[: n // 100].mean() > 2 * rev[n // 100: n // 20].mean()


def test_buyer_mix(state):
    cu, o = state["customers"], state["orders"]
    days = o[o["status"] != "cancelled"].groupby("customer_id")["order_date"].nunique()
    assert 0.02 <= 1 - len(days) / len(cu) <= 0.10  # prospects: never bought
    assert 0.20 <= (days == 1).mean() <= 0.45  # one-time buyers among buyers
    assert (days >= 10).sum() > 0.1 * len(days)  # and plenty of repeat buyers
    assert 0.35 <= (cu["customer_type"] == "enterprise").mean() <= 0.45
    cny = (o["currency"] == "CNY").mean()
    assert 0.6 <= cny <= 0.95


def test_seasonality(state):
    o = state["orders"]
    per_day = o.groupby("order_date").size().reindex(pd.date_range("2023-07-01", BIG_H), fill_value=0)

    def rate(a, b):
        return per_day[a:b].mean()

    assert rate("2025-11-01", "2025-12-31") > 1.2 * rate("2025-07-01", "2025-08-31")  # Q4 peak
    cny = rate("2025-01-22", "2025-02-08")  # Chinese New Year 2025-01-29
    assert cny < 0.6 * rate("2025-01-04", "2025-01-21") and cny < 0.6 * rate("2025-02-09", "2025-02-26")


def test_dormant_and_churned_customers(state):
    o = state["orders"]
    o = o[o["status"] != "cancelled"].sort_values(["customer_id", "order_date"])
    gap = o.groupby("customer_id")["order_date"].diff().dt.days
    orders_per = o.groupby("customer_id").size()
    # dormant: a 180+ day pause, then buying again, by customers who otherwise buy often
    frequent = orders_per[orders_per >= 8].index
    pause = o.assign(gap=gap)[o["customer_id"].isin(frequent) & (gap >= 180)]
    assert pause["customer_id"].nunique() >= 20
    # churned: repeat buyers silent for more than a year
    last = o.groupby("customer_id")["order_date"].max()
    repeat = orders_per[orders_per >= 3].index
    silent = (last.loc[repeat] < pd.Timestamp(BIG_H - dt.timedelta(days=365))).mean()
    assert 0.05 <= silent <= 0.5


def test_payments_late_payers_and_bad_debt(world, state):
    o, cu = state["orders"], state["customers"]
    paid = o[o["paid_at"].notna()]
    late = paid["paid_at"].dt.normalize() > paid["invoice_due_date"]
    assert 0.03 <= late.mean() <= 0.25
    late_share = late.groupby(paid["customer_id"]).mean()
    assert (late_share[paid.groupby("customer_id").size() >= 5] >= 0.5).sum() >= 20  # habitual late payers
    bad = o[o["written_off_amount"] > 0]
    assert len(bad) >= 10
    assert (bad["paid_amount"] < bad["gross_amount"]).all()
    assert np.allclose(bad["paid_amount"] + bad["written_off_amount"], bad["gross_amount"])
    assert (cu["status"] == "blocked").sum() >= 5
    # orders change after the fact: shipped, paid, returned weeks later, cancelled, deleted
    versions = world["orders"].groupby("order_id").size()
    assert (versions >= 3).mean() > 0.5
    assert {"returned", "cancelled", "shipped", "placed"} <= set(o["status"])
    assert 0.01 <= (o["status"] == "returned").mean() <= 0.1
    assert 0 < o["is_deleted"].sum() < 0.02 * len(o)
    margin = (o["gross_amount"] - o["cost_amount"]) / o["gross_amount"]
    assert (margin > 0).mean() >= 0.95 and (margin < 0).sum() > 0
    assert margin[margin > 0].between(0.09, 0.51).all()


def test_complaints(world, state):
    q = state["complaints"].sort_values(["customer_id", "opened_at"])
    # bursts: three or more complaints from one customer within 30 days
    third = q.groupby("customer_id")["opened_at"].shift(-2)
    bursts = q[(third - q["opened_at"]) <= pd.Timedelta(days=30)]["customer_id"].nunique()
    assert bursts >= 10
    assert q["status"].isin(["open", "in_progress", "reopened"]).sum() > 0  # still open
    assert (q["compensation_amount"] > 0).mean() > 0.05
    assert q["order_id"].isna().sum() > 0 and q["order_id"].notna().mean() > 0.5
    history = world["complaints"]
    reopened = history.loc[history["status"] == "reopened", "complaint_id"].unique()
    assert len(reopened) >= 10
    was_resolved = history[history["complaint_id"].isin(reopened) & (history["status"] == "resolved")]
    assert was_resolved["complaint_id"].nunique() == len(reopened)  # re-opened after resolution


def test_contacts(world, state):
    k, cu = state["contacts"], state["customers"]
    kind = cu.set_index("customer_id")["customer_type"]
    per = k.groupby("customer_id").size().reindex(cu["customer_id"], fill_value=0)
    ent = per[kind.loc[per.index] == "enterprise"]
    ind = per[kind.loc[per.index] == "individual"]
    assert ent.between(1, 6).all() and set(ent) == set(range(1, 7))
    assert ind.between(0, 1).all() and set(ind) == {0, 1}
    assert set(k.loc[k["customer_id"].isin(ent.index), "role"]) == set(c.CONTACT_ROLES)
    live = k[~k["is_deleted"]]
    stale = live["last_verified_at"] < pd.Timestamp(BIG_H - dt.timedelta(days=365))
    assert 0.1 <= stale.mean() <= 0.6
    mails = live.dropna(subset=["email"]).assign(norm=lambda d: d["email"].str.strip().str.lower())
    dup_mail = mails[mails.duplicated(["customer_id", "norm"], keep=False)]
    assert dup_mail.groupby(["customer_id", "norm"])["email"].nunique().max() > 1  # differently cased
    assert live.dropna(subset=["phone"]).duplicated(["customer_id", "phone"]).sum() >= 5
    assert k["is_deleted"].sum() > 0
    assert world["contacts"].groupby("contact_id").size().max() > 2  # re-verified over time
    assert k["email"].dropna().str.contains("@").all()


def test_names_managers_and_changes(world, state):
    cu = state["customers"]
    chinese = cu["name"].str.contains(r"[\u4e00-\u9fff]")
    assert 0.5 <= chinese.mean() <= 0.98
    assert cu["name"].str.endswith("有限公司").sum() > 100
    assert cu["name"].str.fullmatch(r"[\u4e00-\u9fff]{2,3}").sum() > 100  # people like 张伟
    assert cu["name"].str.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+").sum() > 10  # and Latin names
    assert 15 <= cu["account_manager"].nunique() <= 25
    assert cu["region"].nunique() >= 5 and cu["industry"].nunique() >= 5
    ent = cu["customer_type"] == "enterprise"
    assert cu.loc[~ent, "credit_limit"].isna().all() and cu.loc[~ent, "industry"].isna().all()
    assert (cu.loc[ent, "credit_limit"] >= 0).all() and (cu.loc[ent & (cu["status"] != "blocked"), "credit_limit"] > 0).all()
    history = world["customers"]
    assert (history.groupby("customer_id")["account_manager"].nunique() > 1).mean() > 0.05
    assert (history[history["customer_type"] == "enterprise"].groupby("customer_id")["credit_limit"].nunique() > 1).sum() > 50


def test_financial_statements(world, state):
    f, cu = state["financial_statements"], state["customers"]
    kind = cu.set_index("customer_id")["customer_type"]
    assert (kind.loc[f["customer_id"]] == "enterprise").all()  # individuals file nothing
    filers = f["customer_id"].nunique() / (kind == "enterprise").sum()
    assert 0.6 <= filers <= 0.8
    pe = f["period_end"]
    assert ((pe + pd.Timedelta(days=1)).dt.day == 1).all() and pe.dt.month.isin([3, 6, 9, 12]).all()
    assert not f.duplicated(["customer_id", "period_end"]).any()
    filed = world["financial_statements"].drop_duplicates("statement_id")
    lag = (filed["updated_at"] - filed["period_end"]).dt.days
    assert (lag >= 1).all() and lag.between(30, 62).mean() > 0.8
    # quarterly: consecutive filings of one customer are one quarter apart
    step = f.sort_values(["customer_id", "period_end"]).groupby("customer_id")["period_end"].diff().dt.days
    assert step.dropna().between(90, 92).all()
    assert 0.05 <= (f["net_profit"] < 0).mean() <= 0.5  # some loss-making
    assert ((f["total_liabilities"] / f["total_assets"]) > 0.85).mean() > 0.03  # some highly leveraged
    assert (f["current_liabilities"] <= f["total_liabilities"]).all()
    assert (f["current_assets"] <= f["total_assets"]).all() and (f["revenue"] > 0).all()
