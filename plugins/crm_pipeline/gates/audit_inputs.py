"""What gate 2 reads besides the marts themselves: warehouse tables as frames, the pyramid's
cut points, and the run-time parameters (``$name``) of ``audit_marts.json``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from crm_pipeline.errors import first_line
from crm_pipeline.gates.coercion import inferred_kind
from crm_pipeline.gates.results import MESSAGE_CHARS, GateError, GateSettings
from crm_pipeline.settings import DBT_SEEDS_DIR
from crm_pipeline.warehouse import ident

if TYPE_CHECKING:  # pragma: no cover
    from crm_pipeline.warehouse import Warehouse


def read_frame(wh: "Warehouse", sql: str, what: str) -> pd.DataFrame:
    try:
        df = wh.query_df(sql)
    except Exception as exc:
        raise GateError(f"gate 2 cannot read {what}: {first_line(exc, MESSAGE_CHARS)}") from None
    # psycopg2 returns numeric as Decimal objects: GX compares those one by one, so use floats
    for col in df.columns:
        if df[col].dtype == object and inferred_kind(df[col]) == "decimal":
            df[col] = df[col].astype("float64")
    return df


def tier_cutpoints(wh: "Warehouse | None" = None) -> list[tuple[str, float]]:
    """Cut points from the warehouse seed table, else the seed CSV, else the pyramid's usual shares."""
    if wh is not None:
        try:
            if wh.table_exists("config", "value_tier_cutpoints"):
                df = wh.query_df("select value_tier, cumulative_share from config.value_tier_cutpoints "
                                 "order by cumulative_share")
                if len(df):
                    return [(str(t), float(c)) for t, c in zip(df["value_tier"], df["cumulative_share"])]
        except Exception:  # fall back to the CSV below
            pass
    csv = DBT_SEEDS_DIR / "value_tier_cutpoints.csv"
    if csv.exists():
        df = pd.read_csv(csv).sort_values("cumulative_share")
        return [(str(t), float(c)) for t, c in zip(df["value_tier"], df["cumulative_share"])]
    return [("VIP", 0.01), ("Major", 0.05), ("Ordinary", 0.20), ("Small", 1.0)]


def substitute(value: Any, params: dict[str, Any]) -> Any:
    """``value`` with each ``$name`` replaced by its run-time parameter."""
    if isinstance(value, str) and value.startswith("$"):
        if value not in params:
            raise GateError(f"audit_marts.json uses unknown parameter {value}")
        return params[value]
    if isinstance(value, list):
        return [substitute(v, params) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, params) for k, v in value.items()}
    return value


def gate2_params(wh: "Warehouse", spec: dict, settings: GateSettings,
                 expected_customers: int | None, failures: list[str]) -> dict[str, Any]:
    """The ``$name`` parameters: the thresholds, the expected customer count, the allowed
    segments, what BI sees now (``published_segments``) and the pyramid's cut points."""
    params: dict[str, Any] = {
        "$max_segment_mix_shift": settings.max_segment_mix_shift,
        "$max_segment_drop_share": settings.max_segment_drop_share,
    }
    # every source customer present: the staging count (or the caller's number)
    if expected_customers is None:
        source = spec.get("customer_source", "staging.stg_crm__customers")
        schema, table = source.split(".", 1)
        if wh.table_exists(schema, table):
            expected_customers = int(wh.scalar(f"select count(*) from {ident(schema)}.{ident(table)}"))
        else:
            failures.append(f"gate 2 failed: {source} does not exist, so the customer count cannot be checked")
    params["$expected_customers"] = expected_customers if expected_customers is not None else -1
    # the allowed segments: the seed of segment rules
    rules_source = spec.get("segment_rules_source", "config.segment_rules")
    schema, table = rules_source.split(".", 1)
    if wh.table_exists(schema, table):
        segments = wh.query_df(f"select distinct segment from {ident(schema)}.{ident(table)}")
        params["$segments"] = sorted(str(v) for v in segments["segment"].dropna())
    else:
        failures.append(f"gate 2 failed: {rules_source} does not exist, so segment names cannot be checked")
        params["$segments"] = []
    # what BI sees now
    published = spec.get("published_segments", "published.customer_segments")
    schema, table = published.split(".", 1)
    params["$published_exists"] = wh.table_exists(schema, table)
    if params["$published_exists"]:
        n_published = int(wh.scalar(f"select count(*) from {ident(schema)}.{ident(table)}"))
        params["$published_rows"] = n_published
        params["$min_rows_vs_published"] = int(math.ceil(n_published * (1 - settings.max_segment_drop_share) - 1e-9))
        params["$published_mix"] = wh.query_df(
            f"select segment, count(*) as n from {ident(schema)}.{ident(table)} group by segment")
    params["$tier_cutpoints"] = tier_cutpoints(wh)
    return params
