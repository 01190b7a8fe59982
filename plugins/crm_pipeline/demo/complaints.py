"""The demo's complaints: about orders (more often about returns), billing disputes over
invoices that end up written off, bursts of several complaints from one customer, and the
odd complaint about the account; each goes through progress, resolution with or without
compensation, and sometimes a reopening."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_pipeline.demo.customers import CustomerTraits
from crm_pipeline.demo.dates import DAY, HOUR, MINUTE, whole_us
from crm_pipeline.demo.orders import OrderFacts
from crm_pipeline.demo.versions import (RESET, change_columns, money, reset_to_nan, text_columns, ts_col, us_col,
                                        versions)
from crm_pipeline.demo.vocabulary import COMPLAINT_CATEGORIES, COMPLAINT_CHANNELS, COMPLAINT_DESCRIPTIONS
from crm_pipeline.demo.world import World


def _openings(world: World, customers: CustomerTraits, orders: OrderFacts) -> list[tuple]:
    """Every complaint that is ever opened, by origin: tuples of (origin, customer, key,
    order id or -1, opened at, category index) with arrays for all but the origin."""
    rand, cid = world.rand, customers.customer_id
    cust, seq = orders.customer_id, orders.seq
    parts = []

    # 0, 1) about an order, within 30 days; returns come with a complaint more often
    normal = ~orders.cancelled & ~orders.returned & (rand.uniform("q.o", cust, seq) < 0.025)
    opened = orders.placed_at + whole_us(rand.between(1, 30, "q.ot", cust, seq) * DAY)
    category = rand.choice([35, 25, 10, 15, 15], "q.ocat", cust, seq)
    parts.append((0, cust[normal], seq[normal], orders.order_id[normal], opened[normal], category[normal]))
    about_return = orders.returned & (rand.uniform("q.r", cust, seq) < 0.25)
    opened = orders.returned_at - whole_us(rand.between(0, 48, "q.rt", cust, seq) * HOUR)
    category = np.array([1, 4, 0])[rand.choice([50, 30, 20], "q.rcat", cust, seq)]
    parts.append((1, cust[about_return], seq[about_return], orders.order_id[about_return], opened[about_return],
                  category[about_return]))
    # 2) billing disputes over invoices that end up written off
    dispute = orders.written_off & (rand.uniform("q.w", cust, seq) < 0.5)
    opened = orders.due_at + whole_us(rand.between(10, 60, "q.wt", cust, seq) * DAY)
    parts.append((2, cust[dispute], seq[dispute], orders.order_id[dispute], opened[dispute],
                  np.full(len(cust), 2)[dispute]))
    # 3) bursts: several complaints from one customer within three weeks
    burst = ~customers.prospect & (rand.uniform("q.b", cid) < np.where(customers.enterprise, 0.035, 0.012))
    burst_at = customers.first_order_at + whole_us(rand.between(30, 900, "q.bt", cid) * DAY)
    burst_size = 3 + rand.below(4, "q.bn", cid)
    burst_cust = np.repeat(cid[burst], burst_size[burst])
    burst_nth = (np.arange(len(burst_cust))
                 - np.repeat(np.cumsum(burst_size[burst]) - burst_size[burst], burst_size[burst]))
    burst_opened = burst_at[burst_cust - 1] + whole_us(rand.between(0, 21, "q.bo", burst_cust, burst_nth) * DAY)
    cause = rand.below(5, "q.bcause", burst_cust)
    burst_category = np.where(rand.uniform("q.bsame", burst_cust, burst_nth) < 0.7, cause,
                              rand.below(5, "q.bcat", burst_cust, burst_nth))
    # linked to the customer's last live order of the past 90 days, if there is one
    live = ~orders.cancelled
    left = pd.DataFrame({"customer_id": burst_cust, "t": burst_opened,
                         "i": np.arange(len(burst_cust))}).sort_values(["t", "i"])
    right = pd.DataFrame({"customer_id": cust[live], "t": orders.placed_at[live],
                          "order_id": orders.order_id[live]}).sort_values(["t", "order_id"])
    linked = pd.merge_asof(left, right, on="t", by="customer_id", direction="backward",
                           tolerance=90 * DAY, allow_exact_matches=False).sort_values("i")
    burst_order = linked["order_id"].to_numpy(np.float64, na_value=np.nan)
    burst_order = np.where(np.isnan(burst_order), -1, burst_order).astype(np.int64)
    parts.append((3, burst_cust, burst_nth, burst_order, burst_opened, burst_category))
    # 4) the odd complaint about the account rather than an order
    general = ~customers.prospect & (rand.uniform("q.g", cid) < 0.06)
    general_opened = customers.created_at + whole_us(rand.between(30, 1000, "q.gt", cid) * DAY)
    general_category = np.array([3, 2, 4])[rand.choice([60, 25, 15], "q.gcat", cid)]
    parts.append((4, cid[general], np.zeros(general.sum(), dtype=np.int64), np.full(general.sum(), -1),
                  general_opened[general], general_category[general]))
    return parts


def generate_complaints(world: World, customers: CustomerTraits, orders: OrderFacts) -> pd.DataFrame:
    """The complaints' row versions."""
    rand = world.rand
    parts = _openings(world, customers, orders)
    # a complaint's random numbers are keyed by (origin, key_a, key_b)
    origin = np.concatenate([np.full(len(x[1]), x[0]) for x in parts])
    key_a = np.concatenate([x[1] for x in parts])
    key_b = np.concatenate([x[2] for x in parts])
    order_ref = np.concatenate([x[3] for x in parts])
    opened = np.concatenate([x[4] for x in parts])
    category_i = np.concatenate([x[5] for x in parts])
    keep = opened <= world.horizon_end
    origin, key_a, key_b, order_ref, opened, category_i = (
        x[keep] for x in (origin, key_a, key_b, order_ref, opened, category_i))
    cust = np.concatenate([x[1] for x in parts])[keep]  # every origin is keyed by customer
    opening_order = np.lexsort((key_b, key_a, origin, opened))
    origin, key_a, key_b, order_ref, opened, category_i, cust = (
        x[opening_order] for x in (origin, key_a, key_b, order_ref, opened, category_i, cust))
    n_complaints = len(origin)
    complaint_id = np.arange(1, n_complaints + 1)
    keys = (origin, key_a, key_b)

    severity = 1 + np.where(origin == 3, rand.choice([15, 30, 35, 20], "q.sev", *keys),
                            rand.choice([40, 35, 18, 7], "q.sev", *keys))
    channel = np.array(COMPLAINT_CHANNELS, dtype=object)[rand.choice([35, 20, 25, 15, 5], "q.ch", *keys)]
    description_i = rand.below(3, "q.desc", *keys)
    category = np.array(COMPLAINT_CATEGORIES, dtype=object)[category_i]
    description = np.array([COMPLAINT_DESCRIPTIONS[cg][d] for cg, d in zip(category, description_i)], dtype=object)

    in_progress = rand.uniform("q.prog", *keys) < 0.85
    progress_at = opened + whole_us(rand.between(30, 2880, "q.progt", *keys) * MINUTE)
    never = rand.uniform("q.never", *keys) < 0.03
    median_days = np.array([0, 2.0, 4.0, 7.0, 12.0])[severity]
    resolved_at = np.maximum(opened + whole_us(median_days * np.exp(0.7 * rand.normal("q.res", *keys)) * DAY),
                             np.where(in_progress, progress_at, opened) + HOUR)
    resolved = ~never
    compensation_p = np.array([0, 0.05, 0.15, 0.35, 0.6])[severity]
    compensation_median = np.array([0, 80, 300, 1500, 6000.0])[severity]
    compensation = np.where(
        rand.uniform("q.comp", *keys) < compensation_p,
        np.maximum(10, np.round(compensation_median * np.exp(0.6 * rand.normal("q.compv", *keys)), -1)), 0)
    reopen = resolved & (rand.uniform("q.reopen", *keys) < 0.07)
    reopen_at = resolved_at + whole_us(rand.between(2, 30, "q.reopent", *keys) * DAY)
    resolved_again = reopen & (rand.uniform("q.reres", *keys) < 0.85)
    resolved_again_at = reopen_at + whole_us(rand.between(1, 20, "q.rerest", *keys) * DAY)
    extra = np.where(rand.uniform("q.extra", *keys) < 0.3, np.round(compensation_median * 0.5, -1), 0)

    base = {
        "complaint_id": complaint_id,
        "customer_id": cust,
        "order_id": order_ref.astype(np.float64),
        "opened_at": opened,
        "category": category,
        "severity": severity,
        "channel": channel,
        "status": np.full(n_complaints, "open", dtype=object),
        "resolved_at": np.full(n_complaints, np.nan),
        "compensation_amount": np.zeros(n_complaints),
        "description": description,
        "updated_at": opened,
        "is_deleted": np.zeros(n_complaints),
    }
    events = [
        {"complaint_id": complaint_id[in_progress], "updated_at": progress_at[in_progress],
         "status": np.full(in_progress.sum(), "in_progress", dtype=object)},
        {"complaint_id": complaint_id[resolved], "updated_at": resolved_at[resolved],
         "status": np.full(resolved.sum(), "resolved", dtype=object),
         "resolved_at": resolved_at[resolved].astype(np.float64),
         "compensation_amount": compensation[resolved] * 100.0},
        {"complaint_id": complaint_id[reopen], "updated_at": reopen_at[reopen],
         "status": np.full(reopen.sum(), "reopened", dtype=object),
         "resolved_at": np.full(reopen.sum(), RESET)},
        {"complaint_id": complaint_id[resolved_again], "updated_at": resolved_again_at[resolved_again],
         "status": np.full(resolved_again.sum(), "resolved", dtype=object),
         "resolved_at": resolved_again_at[resolved_again].astype(np.float64),
         "compensation_amount": ((compensation + extra) * 100.0)[resolved_again]},
    ]
    df = versions("complaint_id", base, events)
    order_col = df["order_id"].to_numpy(np.float64)
    return pd.DataFrame({
        "complaint_id": df["complaint_id"].to_numpy(np.int64),
        "customer_id": df["customer_id"].to_numpy(np.int64),
        "order_id": pd.array(np.where(order_col < 0, np.nan, order_col), dtype="Int64"),
        "opened_at": us_col(df["opened_at"]),
        **text_columns(df, "category", "channel", "status", "description"),
        "severity": df["severity"].to_numpy(np.int64),
        "resolved_at": ts_col(reset_to_nan(df["resolved_at"])),
        "compensation_amount": money(df["compensation_amount"]),
        **change_columns(df),
    })
