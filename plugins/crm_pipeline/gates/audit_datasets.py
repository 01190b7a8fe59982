"""Gate 2's derived datasets: frames built from a mart and what it is compared with, each with
its own expectations (coverage of the staging customers, the pyramid's tier sizes, the
segment mix and volume against what is published)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import pandas as pd

from crm_pipeline.gates.audit_inputs import Seeds, read_frame, tier_cutpoints
from crm_pipeline.gates.results import GateError
from crm_pipeline.warehouse import ident

if TYPE_CHECKING:  # pragma: no cover
    from crm_pipeline.warehouse import Warehouse


@dataclass
class Dataset:
    name: str           # shown in messages, e.g. audit.customer_segments
    frame: pd.DataFrame
    expectations: list[dict]
    asset: str = ""     # stable GX asset / suite name (the name may carry run-time numbers)


def expected_tier_counts(n_buyers: int, cutpoints: list[tuple[str, float]] | None = None) -> dict[str, int]:
    """Exact pyramid tier sizes for ``n_buyers`` buying customers.

    ``cutpoints`` are (tier, cumulative share) best tier first; by default those of the dbt
    seed ``value_tier_cutpoints``. As in ``int_value_pyramid.sql``, the buyer at rank p
    belongs to the first tier with ``p - 1 < cumulative_share × n_buyers``, so a tier's
    cumulative size is ``ceil(cumulative_share × n_buyers)``, in exact decimals (a share of
    0.05 of 50 buyers is 2.5, so 3)."""
    cutpoints = cutpoints or tier_cutpoints(Seeds())
    counts: dict[str, int] = {}
    previous = 0
    for tier, share in cutpoints:
        cumulative = min(n_buyers, math.ceil(Fraction(str(share)) * n_buyers))
        cumulative = max(cumulative, previous)
        counts[tier] = cumulative - previous
        previous = cumulative
    return counts


def derived_dataset(wh: "Warehouse", derived: dict, table: str, frame: pd.DataFrame,
                    params: dict, schema: str) -> Dataset | None:
    """The dataset of one ``derived`` check of a mart (None: nothing to compare with yet)."""
    kind = derived["kind"]
    fq = f"{schema}.{table}"
    if kind == "coverage":
        return _coverage(wh, derived, table, schema)
    if kind == "tier_sizes":
        return _tier_sizes(derived, fq, frame, params["$tier_cutpoints"])
    if kind == "mix_vs_published":
        if not params.get("$published_exists"):
            return None
        return _mix_vs_published(derived, fq, frame, params["$published_mix"])
    if kind == "volume_vs_published":
        if not params.get("$published_exists"):
            return None
        return Dataset(f"{fq} vs published ({params['$published_rows']} rows published)", frame,
                       derived.get("expectations", []), f"{fq}_volume_vs_published")
    raise GateError(f"audit_marts.json: unknown derived check kind {kind!r}")


def _coverage(wh: "Warehouse", derived: dict, table: str, schema: str) -> Dataset | None:
    """Each source customer with the mart's key next to it (null: the mart lacks it)."""
    fq = f"{schema}.{table}"
    source = derived.get("source", "staging.stg_crm__customers")
    source_schema, source_table = source.split(".", 1)
    if not wh.table_exists(source_schema, source_table):
        return None  # reported by gate2_params
    key = ident(derived.get("key", "customer_id"))
    df = read_frame(wh, (
        f"select s.{key} as {key}, c.{key} as in_{ident(table)} "
        f"from {ident(source_schema)}.{ident(source_table)} s left join (select distinct {key} from "
        f"{ident(schema)}.{ident(table)}) c on s.{key} = c.{key}"), f"{fq} coverage")
    return Dataset(f"{fq} vs {source} (coverage)", df, derived.get("expectations", []), f"{fq}_coverage")


def _tier_sizes(derived: dict, fq: str, frame: pd.DataFrame, cutpoints: list[tuple[str, float]]) -> Dataset:
    """Actual and expected customers per pyramid tier."""
    column = derived.get("column", "value_tier")
    tiers = [tier for tier, _ in cutpoints]
    if column in frame.columns:
        n_buyers = int(frame[column].isin(tiers).sum())
        actual = frame[column].value_counts()
    else:
        n_buyers, actual = 0, pd.Series(dtype="int64")
    expected = expected_tier_counts(n_buyers, cutpoints)
    df = pd.DataFrame({
        "value_tier": tiers,
        "actual_customers": [int(actual.get(tier, 0)) for tier in tiers],
        "expected_customers": [expected[tier] for tier in tiers],
    })
    if column not in frame.columns:
        df = df.drop(columns=["actual_customers"])  # makes the expectation error → failure
    return Dataset(f"{fq} (tier sizes of {n_buyers} buyers)", df, derived.get("expectations", []),
                   f"{fq}_tier_sizes")


def _mix_vs_published(derived: dict, fq: str, frame: pd.DataFrame, published: pd.DataFrame) -> Dataset:
    """Each segment's share of customers, published and now, and how much it moved."""
    column = derived.get("column", "segment")
    current = frame[column].value_counts() if column in frame.columns else pd.Series(dtype="int64")
    n_published = max(int(published["n"].sum()), 1)
    n_current = max(int(current.sum()), 1)
    published_share = {str(k): int(v) / n_published for k, v in zip(published["segment"], published["n"])}
    current_share = {str(k): int(v) / n_current for k, v in current.items()}
    segments = sorted(set(published_share) | set(current_share))
    df = pd.DataFrame({
        "segment": segments,
        "published_share": [round(published_share.get(x, 0.0), 6) for x in segments],
        "audit_share": [round(current_share.get(x, 0.0), 6) for x in segments],
    })
    df["share_change"] = (df["audit_share"] - df["published_share"]).abs().round(6)
    return Dataset(f"{fq} vs published (segment mix)", df, derived.get("expectations", []), f"{fq}_mix_vs_published")
