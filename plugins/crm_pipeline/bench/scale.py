"""A PostgreSQL source at benchmark scale, generated inside the database: filled with
set-based ``INSERT ... SELECT generate_series`` statements (no row leaves Python), then
advanced one day of changes at a time."""

# ``crm demo-data --scale S|L --source postgresql://...`` fills the five contract tables,
# then ``crm demo-data --scale ... --until D+1`` applies one day of changes. The shapes
# follow the demo world in broad strokes (a skewed customer base, orders in four
# currencies, late and missing payments, returns, re-opened complaints, quarterly
# statements of enterprise customers) so every mart has real work to do; the exact values
# are not the demo generator's.
#
# Scales (customers / orders over ``history_days``):
#
# * ``S``: 100,000 / 2,000,000
# * ``L``: 1,000,000 / 20,000,000
#
# Contacts are 2 per customer, complaints 1 per 100 orders, financial statements 4
# quarters for two customers in five. ``history_factor=2`` doubles the history (twice the
# days, twice the orders and complaints) with the same customers, which is what the
# benchmark's "same increment on twice the history" runs on.
#
# One day of changes (``advance_day``) touches about 0.3% of the orders: half new orders
# of that day, half changes to existing ones (payments, returns, write-offs, soft deletes),
# plus a proportional number of complaint, contact and customer changes. The same day on
# a source with twice the history applies the same number of changes.

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import sqlalchemy as sa

from crm_pipeline.connections import sqlalchemy_url
from crm_pipeline.contract import ENTITIES
from crm_pipeline.demo import source_metadata

SCALES: dict[str, tuple[int, int]] = {"S": (100_000, 2_000_000), "L": (1_000_000, 20_000_000)}
DEFAULT_HISTORY_DAYS = 365
#: share of the orders one day of changes touches (half new orders, half changed ones)
DAILY_CHANGE_SHARE = 0.003
STATE_TABLE = "_scale_state"


@dataclass
class ScaleResult:
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    applied_until: date | None = None
    #: "filled", "advanced" or "unchanged"
    action: str = "filled"


def parse_scale(scale: str) -> tuple[int, int]:
    """``S``, ``L`` or ``CUSTOMERSxORDERS`` (e.g. ``2000x40000``) → (customers, orders)."""
    key = scale.strip().upper().replace("_", "").replace(",", "")
    if key in SCALES:
        return SCALES[key]
    parts = key.split("X")
    if len(parts) == 2 and all(p.isdigit() and int(p) > 0 for p in parts):
        return int(parts[0]), int(parts[1])
    raise ValueError(f"unknown scale {scale!r}: use S, L or CUSTOMERSxORDERS such as 2000x40000")


def state(url: str) -> dict | None:
    """What ``fill``/``advance_day`` recorded in the source, or None for another source."""
    engine = _engine(url)
    try:
        with engine.connect() as con:
            if not sa.inspect(con).has_table(STATE_TABLE):
                return None
            row = con.execute(sa.text(f"select customers, orders, history_days, as_of, applied_until "
                                      f"from {STATE_TABLE}")).one_or_none()
    finally:
        engine.dispose()
    if row is None:
        return None
    return dict(zip(("customers", "orders", "history_days", "as_of", "applied_until"), row))


def ensure(url: str, *, customers: int, orders: int, until: date, history_factor: int = 1,
           history_days: int = DEFAULT_HISTORY_DAYS) -> ScaleResult:
    """Bring a scaled source to the end of ``until``: fill it when it holds another
    world (or none), else apply the missing days one by one."""
    st = state(url)
    same = (st is not None and st["customers"] == customers and st["orders"] == orders * history_factor
            and st["history_days"] == history_days * history_factor and st["applied_until"] <= until)
    if not same:
        return fill(url, customers=customers, orders=orders, as_of=until, history_days=history_days,
                    history_factor=history_factor)
    if st["applied_until"] == until:
        return ScaleResult(rows=_counts_url(url), applied_until=until, action="unchanged")
    started = time.perf_counter()
    day = st["applied_until"]
    while day < until:
        day += timedelta(days=1)
        result = advance_day(url, day, changes=max(2, round(orders * DAILY_CHANGE_SHARE)))
    result.seconds = time.perf_counter() - started
    result.action = "advanced"
    return result


def _counts_url(url: str) -> dict[str, int]:
    engine = _engine(url)
    try:
        return _counts(engine)
    finally:
        engine.dispose()


def _engine(url: str) -> sa.Engine:
    engine = sa.create_engine(sqlalchemy_url(url))
    if engine.dialect.name != "postgresql":
        engine.dispose()
        raise ValueError("a scaled source is generated inside PostgreSQL: pass --source postgresql://...")
    return engine


def _ts(d: date) -> str:
    return f"timestamp '{d.isoformat()} 00:00:00'"


def fill(url: str, *, customers: int, orders: int, as_of: date, history_days: int = DEFAULT_HISTORY_DAYS,
         history_factor: int = 1, seed: float = 0.42) -> ScaleResult:
    """Replace the source's contract tables with a generated world that ends on ``as_of``."""
    if customers < 1 or orders < 1:
        raise ValueError("customers and orders must be at least 1")
    if history_factor < 1:
        raise ValueError("history_factor must be at least 1")
    started = time.perf_counter()
    days = history_days * history_factor
    n_orders = orders * history_factor
    engine = _engine(url)
    try:
        md = source_metadata(None)
        with engine.begin() as con:
            for e in ENTITIES:
                con.execute(sa.text(f"drop table if exists {e.name} cascade"))
            con.execute(sa.text(f"drop table if exists {STATE_TABLE}"))
        md.create_all(engine, tables=[md.tables[e.name] for e in ENTITIES])
        with engine.begin() as con:
            con.execute(sa.text("set local synchronous_commit = off"))
            con.execute(sa.text("select setseed(:s)"), {"s": seed})
            for sql in _fill_sql(customers, n_orders, as_of, days):
                con.execute(sa.text(sql))
            con.execute(sa.text(f"create table {STATE_TABLE} (customers bigint, orders bigint, history_days int, "
                                f"as_of date, applied_until date)"))
            con.execute(sa.text(f"insert into {STATE_TABLE} values (:c, :o, :d, :a, :a)"),
                        {"c": customers, "o": n_orders, "d": days, "a": as_of})
        _settle(engine)
        result = ScaleResult(rows=_counts(engine), applied_until=as_of)
    finally:
        engine.dispose()
    result.seconds = time.perf_counter() - started
    return result


def _settle(engine: sa.Engine, *, vacuum: bool = True) -> None:
    """Analyze the contract tables; after a fill, vacuum and freeze them too, so every
    timed read finds them as a settled source is: the first scan of freshly written rows
    otherwise sets their hint bits and writes every page again, and whichever reader came
    first (a reference reader or the pipeline) paid for it. A day's changes are only
    analyzed: a night reads them through the updated_at index, and a vacuum after them
    scans both indexes of the orders whole."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as con:
        for e in ENTITIES:
            con.execute(sa.text(f"vacuum (freeze, analyze) {e.name}" if vacuum else f"analyze {e.name}"))


def _fill_sql(customers: int, orders: int, as_of: date, days: int) -> list[str]:
    end = as_of + timedelta(days=1)
    start = end - timedelta(days=days)
    # customers exist before the history starts; low ids buy most (power-law skew)
    skew = f"least({customers}, 1 + floor({customers} * power(random(), 2.5)))::bigint"
    order_day = f"({_ts(start)} + floor(random() * {days}) * interval '1 day')"
    return [
        f"""insert into customers
        select g, 'Customer ' || g,
               case when g % 5 = 0 then 'individual' else 'enterprise' end,
               (array['technology','manufacturing','retail','logistics','healthcare','finance',
                      'education','construction','energy','food_beverage'])[1 + g % 10],
               (array['North','East','South','Central','Southwest','Northwest','Northeast'])[1 + (g / 10) % 7],
               (array['self_developed','advertising','referral'])[1 + (g / 3) % 3],
               (array['李娜','王强','陈静','刘洋','张敏','杨磊','赵丽','黄涛'])[1 + g % 8],
               round((20000 + (g * 7919 % 1000) * 1000)::numeric, 2),
               case when g % 97 = 0 then 'inactive' else 'active' end,
               created, created + interval '1 hour', false
        from generate_series(1::bigint, {customers}::bigint) as g
        cross join lateral (select {_ts(start)} - (1 + g % 1500) * interval '1 day'
                                   + (g % 86400) * interval '1 second' as created) as t""",
        f"""insert into contacts
        select g, 1 + (g - 1) / 2, 'Contact ' || g,
               (array['Purchasing Manager','Engineer','CTO','CFO','Operator'])[1 + g % 5],
               'contact' || g || '@example.com', '+86 138' || lpad((g % 100000000)::text, 8, '0'),
               (array['coach','user','technical','economic'])[1 + (g * 31 + g / 2) % 4],
               case when g % 3 = 0 then null else {_ts(start)} - (g % 300) * interval '1 day' end,
               {_ts(start)} - (g % 300) * interval '1 day' + interval '2 hours', false
        from generate_series(1::bigint, {2 * customers}::bigint) as g""",
        # each customer buys during an active span of 20-100% of the history, then stops
        # (the churn BG/NBD estimates); purchases are uniform inside the span
        f"""insert into orders
        select g, cust, d::date, status, currency, gross, round(gross * 0.62, 2),
               (array['hardware','software','services','consumables','spare_parts','training'])[1 + g % 6],
               (d + interval '30 days')::date,
               case when paid then gross end,
               case when paid then pay_ts end,
               case when g % 211 = 0 then round(gross * 0.5, 2) else 0 end,
               greatest(d + (g % 36000) * interval '1 second', case when paid then pay_ts end),
               g % 1009 = 0
        from (
          select g, cust,
                 {_ts(start)} + floor(random() * {days} * (0.2 + 0.8 * ((cust * 2654435761) % 1000) / 1000.0))
                   * interval '1 day' as d,
                 (array['placed','shipped','shipped','shipped','shipped','cancelled','returned'])[1 + g % 7] as status,
                 (array['CNY','CNY','CNY','CNY','CNY','USD','EUR','HKD'])[1 + (g / 7) % 8] as currency,
                 round((50 * exp(random() * 5))::numeric, 2) as gross,
                 random() < 0.85 as paid, random() as u
          from (select g, {skew} as cust from generate_series(1::bigint, {orders}::bigint) as g) as s
        ) as o
        cross join lateral (select least(d + (u * 60) * interval '1 day', {_ts(end)} - interval '1 second') as pay_ts) as p""",
        f"""insert into complaints
        select g, cust, order_id, opened,
               (array['delivery','quality','billing_dispute','service','product'])[1 + g % 5],
               1 + (g % 4)::int,
               (array['phone','email','wechat','web','on_site'])[1 + g % 5],
               case when resolved is null then (array['open','in_progress'])[1 + g % 2]
                    when g % 13 = 0 then 'reopened' else 'resolved' end,
               resolved,
               case when g % 9 = 0 then round((g % 5000)::numeric, 2) end,
               'complaint ' || g,
               coalesce(resolved, opened) + interval '1 minute', false
        from (
          select g, {skew} as cust, 1 + (g * 97) % {orders} as order_id,
                 {order_day} + (g % 80000) * interval '1 second' as opened
          from generate_series(1::bigint, {max(1, orders // 100)}::bigint) as g
        ) as x
        cross join lateral (
          select case when g % 4 = 0 or opened + interval '5 days' >= {_ts(end)} then null
                      else opened + (1 + g % 4) * interval '1 day' end as resolved) as r""",
        f"""insert into financial_statements
        select row_number() over (order by cust, q), cust, period_end,
               rev, round(rev * (0.02 + (cust % 20) / 200.0), 2), assets, round(assets * (0.3 + (cust % 7) / 10.0), 2),
               round(assets * 0.45, 2), round(assets * (0.2 + (cust % 5) / 20.0), 2),
               period_end + interval '45 days', false
        from (
          select cust, q,
                 (date_trunc('quarter', {_ts(end)} - interval '45 days') - interval '1 day'
                    - (q * interval '3 months'))::date as period_end,
                 round((1000000 + (cust * 7919 % 100000) * 100)::numeric, 2) as rev,
                 round((2000000 + (cust * 104729 % 100000) * 150)::numeric, 2) as assets
          from generate_series(1::bigint, {customers}::bigint) as cust
          cross join generate_series(0, 3) as q
          where cust % 5 in (1, 2)
        ) as s""",
    ]


def advance_day(url: str, day: date, *, changes: int | None = None) -> ScaleResult:
    """Apply one day of changes (to the end of ``day``) to a scaled source.

    ``changes`` is the number of order changes (new + changed); by default
    ``DAILY_CHANGE_SHARE`` of the orders in the source. Days
    must be applied in order; applying the day already applied is a no-op."""
    started = time.perf_counter()
    engine = _engine(url)
    try:
        with engine.begin() as con:
            if not sa.inspect(con).has_table(STATE_TABLE):
                raise ValueError("this source was not filled with `crm demo-data --scale`")
            customers, orders, _days, _as_of, applied = con.execute(sa.text(
                f"select customers, orders, history_days, as_of, applied_until from {STATE_TABLE}")).one()
            if day <= applied:
                return ScaleResult(rows=_counts(engine), seconds=0.0, applied_until=applied, action="unchanged")
            if day != applied + timedelta(days=1):
                raise ValueError(f"the source is at {applied}; apply {applied + timedelta(days=1)} first")
            n = int(changes if changes is not None else max(2, round(orders * DAILY_CHANGE_SHARE)))
            con.execute(sa.text("select setseed(:s)"), {"s": (day.toordinal() % 1000) / 1000.0})
            for sql in _day_sql(day, customers, n):
                con.execute(sa.text(sql))
            con.execute(sa.text(f"update {STATE_TABLE} set applied_until = :d"), {"d": day})
        _settle(engine, vacuum=False)
        result = ScaleResult(rows=_counts(engine), applied_until=day, action="advanced")
    finally:
        engine.dispose()
    result.seconds = time.perf_counter() - started
    return result


def _day_sql(day: date, customers: int, n: int) -> list[str]:
    start, end = _ts(day), _ts(day + timedelta(days=1))
    new, changed = n - n // 2, n // 2
    at = f"{start} + (8 * 3600 + (g * 37) % 36000) * interval '1 second'"
    skew = f"least({customers}, 1 + floor({customers} * power(random(), 2.5)))::bigint"
    small = max(1, n // 100)
    return [
        # new orders of the day
        f"""insert into orders
        select m + g, {skew}, date '{day.isoformat()}', 'placed',
               (array['CNY','CNY','CNY','CNY','USD','EUR'])[1 + g % 6],
               round((50 * exp(random() * 5))::numeric, 2), 0, 'services',
               date '{(day + timedelta(days=30)).isoformat()}', null, null, 0, {at}, false
        from (select max(order_id) as m from orders) as mx, generate_series(1::bigint, {new}::bigint) as g""",
        # changes to existing orders: payments, returns, write-offs, soft deletes
        f"""update orders o set
               paid_amount = case when x.kind < 6 then o.gross_amount else o.paid_amount end,
               paid_at = case when x.kind < 6 then x.at else o.paid_at end,
               status = case when x.kind = 6 then 'returned' else o.status end,
               written_off_amount = case when x.kind = 7 then round(o.gross_amount * 0.3, 2) else o.written_off_amount end,
               is_deleted = (x.kind = 8) or o.is_deleted,
               cost_amount = coalesce(o.cost_amount, 0),
               updated_at = x.at
        from (select distinct on (id) id, kind, at from (
                select 1 + floor(random() * (select max(order_id) from orders))::bigint as id,
                       (g % 9)::int as kind, {at} as at
                from generate_series(1::bigint, {changed}::bigint) as g) as r order by id) as x
        where o.order_id = x.id and o.updated_at < {start}""",
        # complaints: new ones and re-opened ones
        f"""insert into complaints
        select m + g, {skew}, null, {at}, 'service', 1 + (g % 4)::int, 'phone', 'open', null, null,
               'complaint of ' || date '{day.isoformat()}', {at} + interval '1 minute', false
        from (select max(complaint_id) as m from complaints) as mx, generate_series(1::bigint, {small}::bigint) as g""",
        f"""update complaints c set status = 'reopened', resolved_at = null, updated_at = {end} - interval '1 hour'
        where complaint_id in (select complaint_id from complaints where status = 'resolved'
                               and updated_at < {start} order by complaint_id desc limit {small})""",
        # contacts re-verified, customers changed
        f"""update contacts set last_verified_at = {start} + interval '10 hours', updated_at = {start} + interval '10 hours'
        where contact_id in (select 1 + floor(random() * {2 * customers})::bigint from generate_series(1, {small}))""",
        f"""update customers set credit_limit = credit_limit + 1000, updated_at = {start} + interval '11 hours'
        where customer_id in (select 1 + floor(random() * {customers})::bigint from generate_series(1, {small}))""",
    ]


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as con:
        return {e.name: int(con.execute(sa.text(f"select count(*) from {e.name}")).scalar_one()) for e in ENTITIES}

