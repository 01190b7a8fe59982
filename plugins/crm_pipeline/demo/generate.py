"""The whole demo world up to a horizon: runs the per-entity generators in the order their
facts flow (customers, then contacts and orders, then complaints and statements) and keeps
the row versions made on or before the horizon, with exactly the contract's columns."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from crm_pipeline import contract
from crm_pipeline.demo.complaints import generate_complaints
from crm_pipeline.demo.contacts import generate_contacts
from crm_pipeline.demo.customers import generate_customers
from crm_pipeline.demo.dates import as_date
from crm_pipeline.demo.orders import generate_orders
from crm_pipeline.demo.statements import generate_statements
from crm_pipeline.demo.world import World


def generate_world(customers: int, seed: int, horizon: dt.date) -> dict[str, pd.DataFrame]:
    """Every row version of the demo world whose ``updated_at`` is on or before ``horizon``.

    Returns one DataFrame per contract entity with exactly the contract's columns, one
    row per version, sorted by key and ``updated_at``. Timestamps are ``datetime64[us]``
    (naive UTC, ``NaT`` for NULL), dates ``datetime64[s]`` at midnight, money ``float64``
    rounded to cents (``NaN`` for NULL), ``is_deleted`` ``bool``; nullable integers
    (``complaints.order_id``) are ``Int64``; text is pandas' string dtype. Versions on or
    before a date never change when the horizon is extended.
    """
    world = World(customers, seed, as_date(horizon))
    customer_table, traits = generate_customers(world)
    order_table, order_facts = generate_orders(world, traits)
    tables = {
        "customers": customer_table,
        "contacts": generate_contacts(world, traits),
        "orders": order_table,
        "complaints": generate_complaints(world, traits, order_facts),
        "financial_statements": generate_statements(world, traits),
    }
    horizon_end = np.datetime64(world.horizon_end, "us")
    out = {}
    for entity in contract.ENTITIES:
        df = tables[entity.name]
        df = df[df["updated_at"] <= horizon_end].reset_index(drop=True)
        out[entity.name] = df[list(entity.columns)]
    return out
