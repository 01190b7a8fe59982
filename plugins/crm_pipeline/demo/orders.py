"""The demo's orders: every buyer's first order, then repeat orders as a seasonal Poisson
process until churn or bad debt; what was ordered and for how much, and what happened to
each order afterwards (shipping, cancellation, return, payment on time, late or partial,
write-off, deletion)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from crm_pipeline import contract
from crm_pipeline.demo.customers import CustomerTraits
from crm_pipeline.demo.dates import DAY, HOUR, MINUTE, YEAR, season, season_max, whole_us
from crm_pipeline.demo.versions import change_columns, date_col, money, text_columns, ts_col, versions
from crm_pipeline.demo.vocabulary import FX_TO_CNY, PRODUCT_CATEGORIES
from crm_pipeline.demo.world import World

#: candidate repeat orders drawn per customer and round
_ROUND = 16


@dataclass(frozen=True)
class OrderFacts:
    """Per order (arrays in ``order_id`` order), what the complaints depend on; times in µs."""

    order_id: np.ndarray
    customer_id: np.ndarray
    #: the order's number among its customer's candidate orders (0: the first order)
    seq: np.ndarray
    placed_at: np.ndarray
    cancelled: np.ndarray
    returned: np.ndarray
    returned_at: np.ndarray
    written_off: np.ndarray
    due_at: np.ndarray


def _order_times(world: World, customers: CustomerTraits) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer, seq, placed at) of every order placed up to the horizon, in placing order."""
    rand, horizon_end = world.rand, world.horizon_end
    cid, first_at, stop_at = customers.customer_id, customers.first_order_at, customers.stops_buying_at
    # the first order of every buyer ...
    buyers = ~customers.prospect & (first_at <= horizon_end)
    cust_parts = [cid[buyers]]
    seq_parts = [np.zeros(buyers.sum(), dtype=np.int64)]
    placed_parts = [first_at[buyers]]
    # ... then repeat orders: a thinned Poisson process in rounds of candidates
    individual = ~customers.enterprise
    peak_rate = customers.orders_per_year * season_max(individual) / YEAR  # per µs
    rows = np.nonzero(customers.repeat_buyer & (first_at <= horizon_end))[0]
    last_at = first_at[rows].astype(np.float64)
    first_seq = 1
    while len(rows):
        seq = first_seq + np.arange(_ROUND)
        gaps = rand.exponential("o.gap", cid[rows, None], seq[None, :]) / peak_rate[rows, None]
        at = last_at[:, None] + np.cumsum(gaps, axis=1)
        row_i, seq_i = np.nonzero((at <= horizon_end) & (at < stop_at[rows, None]))
        rr = rows[row_i]
        candidate_at = at[row_i, seq_i]
        candidate_seq = seq[seq_i]
        day = np.floor(candidate_at / DAY).astype(np.int64)
        accept = (rand.uniform("o.thin", cid[rr], candidate_seq)
                  < season(day, individual[rr]) / season_max(individual[rr]))
        accept &= ~((candidate_at >= customers.dormant_from[rr]) & (candidate_at < customers.dormant_until[rr]))
        rr, candidate_seq, day = rr[accept], candidate_seq[accept], day[accept]
        time_of_day = np.where(customers.enterprise[rr],
                               30 * MINUTE + rand.uniform("o.tod", cid[rr], candidate_seq) * 10 * HOUR,
                               rand.uniform("o.tod", cid[rr], candidate_seq) * 16 * HOUR)
        placed = np.maximum(day * DAY + whole_us(time_of_day), first_at[rr] + 5 * MINUTE)
        cust_parts.append(cid[rr])
        seq_parts.append(candidate_seq)
        placed_parts.append(placed)
        last_at = at[:, -1]
        alive = (last_at <= horizon_end) & (last_at < stop_at[rows])
        rows, last_at = rows[alive], last_at[alive]
        first_seq += _ROUND
    cust, seq, placed = np.concatenate(cust_parts), np.concatenate(seq_parts), np.concatenate(placed_parts)
    keep = placed <= horizon_end
    cust, seq, placed = cust[keep], seq[keep], placed[keep]
    placing_order = np.lexsort((seq, cust, placed))
    return cust[placing_order], seq[placing_order], placed[placing_order]


def generate_orders(world: World, customers: CustomerTraits) -> tuple[pd.DataFrame, OrderFacts]:
    """The orders' row versions and the facts the complaints need."""
    rand = world.rand
    cust, seq, placed = _order_times(world, customers)
    order_id = np.arange(1, len(cust) + 1)
    pos = cust - 1
    enterprise = customers.enterprise[pos]
    n_orders = len(cust)

    # what was ordered and for how much
    currency = customers.currency[pos].astype(object)
    other = enterprise & (rand.uniform("o.fx", cust, seq) < 0.04)
    currency = np.where(other, np.array(contract.KNOWN_CURRENCIES, dtype=object)[rand.below(4, "o.fxc", cust, seq)],
                        currency)
    value_cny = customers.spend_scale[pos] * np.exp(0.45 * rand.normal("o.val", cust, seq) - 0.1)
    fx = np.array([FX_TO_CNY[x] for x in currency])
    gross = np.maximum(100, np.rint(value_cny / fx * 100)).astype(np.int64)
    negative = rand.uniform("o.neg", cust, seq) < 0.02
    margin = np.where(negative, rand.between(-0.2, -0.01, "o.margin", cust, seq),
                      rand.between(0.10, 0.50, "o.margin", cust, seq))
    cost = np.rint(gross * (1 - margin)).astype(np.int64)
    rank = np.floor(customers.category_breadth[pos] * rand.uniform("o.cat", cust, seq) ** 1.5).astype(np.int64)
    category = np.array(PRODUCT_CATEGORIES, dtype=object)[customers.category_preference[pos, rank]]
    order_day = placed // DAY
    term = np.where(enterprise, 60, 30)
    due_day = order_day + term
    due_us = due_day * DAY

    # what happened to it afterwards
    cancelled = rand.uniform("o.cancel", cust, seq) < 0.025
    cancel_at = placed + whole_us(rand.between(10, 2880, "o.cancelt", cust, seq) * MINUTE)
    ship_at = placed + whole_us(np.where(enterprise, rand.between(4, 120, "o.ship", cust, seq),
                                         rand.between(2, 72, "o.ship", cust, seq)) * HOUR)
    bad_order = customers.bad_debtor[pos] & (placed >= customers.bad_debt_at[pos] - 120 * DAY) & ~cancelled
    dispute = enterprise & ~bad_order & ~cancelled & (rand.uniform("o.dispute", cust, seq) < 0.004)
    returned = (~cancelled & ~bad_order & ~dispute
                & (rand.uniform("o.ret", cust, seq) < np.where(enterprise, 0.025, 0.06)))
    returned_at = ship_at + whole_us(rand.between(7, 45, "o.rett", cust, seq) * DAY)
    prepaid = ~enterprise & (rand.uniform("o.prepaid", cust, seq) < 0.85)
    late_payer = customers.late_payer[pos]
    late = (late_payer & (rand.uniform("o.late", cust, seq) < 0.7)) | (rand.uniform("o.late2", cust, seq) < 0.04)
    pay_time_of_day = whole_us(rand.between(0.5, 10.5, "o.paytod", cust, seq) * HOUR)
    on_time = placed + whole_us(rand.between(0.2, 0.95, "o.payt", cust, seq) * term * DAY)
    late_at = due_us + DAY * (1 + np.floor(rand.uniform("o.latet", cust, seq)
                                           * np.where(late_payer, 90, 25)).astype(np.int64)) + pay_time_of_day
    pay_at = np.where(prepaid, placed + whole_us(rand.between(1, 30, "o.prept", cust, seq) * MINUTE),
                      np.where(late, late_at, on_time))
    paid_share = np.where(bad_order, np.where(rand.uniform("o.partial", cust, seq) < 0.4,
                                              rand.between(0.1, 0.6, "o.frac", cust, seq), 0.0),
                          np.where(dispute, rand.between(0.5, 0.95, "o.frac", cust, seq), 1.0))
    pay_at = np.where(bad_order | dispute,
                      due_us + whole_us(rand.between(0, 60, "o.ppt", cust, seq) * DAY) + pay_time_of_day, pay_at)
    paid = np.rint(gross * paid_share).astype(np.int64)
    pays = ~cancelled & (paid > 0) & ~(returned & (pay_at > returned_at))
    write_off = bad_order | dispute
    write_off_at = due_us + whole_us(np.where(bad_order, rand.between(150, 240, "o.wot", cust, seq),
                                              rand.between(90, 200, "o.wot", cust, seq)) * DAY)
    deleted = cancelled & (rand.uniform("o.del", cust, seq) < 0.15)
    deleted_at = cancel_at + whole_us(rand.between(3, 60, "o.delt", cust, seq) * DAY)
    facts = OrderFacts(order_id=order_id, customer_id=cust, seq=seq, placed_at=placed, cancelled=cancelled,
                       returned=returned, returned_at=returned_at, written_off=write_off, due_at=due_us)

    base = {
        "order_id": order_id,
        "customer_id": cust,
        "order_date": order_day * DAY,
        "status": np.full(n_orders, "placed", dtype=object),
        "currency": currency,
        "gross_amount": gross,
        "cost_amount": cost,
        "product_category": category,
        "invoice_due_date": due_us,
        "paid_amount": np.zeros(n_orders),
        "paid_at": np.full(n_orders, np.nan),
        "written_off_amount": np.zeros(n_orders),
        "updated_at": placed,
        "is_deleted": np.zeros(n_orders),
    }
    ship = ~cancelled
    events = [
        {"order_id": order_id[cancelled], "updated_at": cancel_at[cancelled],
         "status": np.full(cancelled.sum(), "cancelled", dtype=object)},
        {"order_id": order_id[ship], "updated_at": ship_at[ship],
         "status": np.full(ship.sum(), "shipped", dtype=object)},
        {"order_id": order_id[returned], "updated_at": returned_at[returned],
         "status": np.full(returned.sum(), "returned", dtype=object)},
        {"order_id": order_id[pays], "updated_at": pay_at[pays],
         "paid_amount": paid[pays].astype(np.float64), "paid_at": pay_at[pays].astype(np.float64)},
        {"order_id": order_id[write_off], "updated_at": write_off_at[write_off],
         "written_off_amount": (gross - np.where(pays, paid, 0))[write_off].astype(np.float64)},
        {"order_id": order_id[deleted], "updated_at": deleted_at[deleted], "is_deleted": np.ones(deleted.sum())},
    ]
    df = versions("order_id", base, events)
    table = pd.DataFrame({
        "order_id": df["order_id"].to_numpy(np.int64),
        "customer_id": df["customer_id"].to_numpy(np.int64),
        "order_date": date_col(df["order_date"].to_numpy(np.int64)),
        **text_columns(df, "status", "currency", "product_category"),
        "gross_amount": money(df["gross_amount"]),
        "cost_amount": money(df["cost_amount"]),
        "invoice_due_date": date_col(df["invoice_due_date"].to_numpy(np.int64)),
        "paid_amount": money(df["paid_amount"]),
        "paid_at": ts_col(df["paid_at"].to_numpy(np.float64)),
        "written_off_amount": money(df["written_off_amount"]),
        **change_columns(df),
    })
    return table, facts
