"""What gate 2 reads besides the marts themselves: warehouse tables as frames, the dbt seeds
its rules come from (``{"seed": ..., "column": ...}`` in ``audit_marts.json``), and the
run-time parameters (``$name``) of that file."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterator

import pandas as pd

from crm_pipeline.errors import first_line
from crm_pipeline.gates.coercion import inferred_kind, jsonable
from crm_pipeline.gates.results import MESSAGE_CHARS, GateError, GateSettings
from crm_pipeline.settings import DBT_SEEDS_DIR
from crm_pipeline.warehouse import ident

if TYPE_CHECKING:  # pragma: no cover
    from crm_pipeline.warehouse import Warehouse

#: the seed of the pyramid: each tier's cumulative share of buyers, best tier first
TIER_SEED = "value_tier_cutpoints"
_AGGREGATES = ("min", "max", "sum")
_REFERENCE_KEYS = {"seed", "column", "aggregate", "extra_values"}


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


class Seeds:
    """The dbt seeds (``dbt_project/seeds/<seed>.csv``) that gate 2's rules come from.

    A seed is read as dbt loaded it into the warehouse (``<schema>.<seed>``, the table the
    marts were built from) or, where the warehouse has no such table (no warehouse given,
    or one dbt has not seeded), from its CSV file. A seed in neither place, or a column a
    seed lacks, is a ``GateError``: no rule has a second home to fall back on."""

    def __init__(self, wh: "Warehouse | None" = None, schema: str = "config"):
        self.wh = wh
        self.schema = schema
        self._frames: dict[str, pd.DataFrame] = {}

    def frame(self, seed: str) -> pd.DataFrame:
        if seed not in self._frames:
            self._frames[seed] = self._read(seed)
        return self._frames[seed]

    def _read(self, seed: str) -> pd.DataFrame:
        try:
            table = f"{ident(self.schema)}.{ident(seed)}"
        except ValueError:
            raise GateError(f"gate 2: {seed!r} is not a seed name") from None
        if self.wh is not None and self.wh.table_exists(self.schema, seed):
            return read_frame(self.wh, f"select * from {table}", f"the seed {table}")
        path = DBT_SEEDS_DIR / f"{seed}.csv"
        if not path.is_file():
            where = f"the warehouse has no table {table} and " if self.wh is not None else ""
            raise GateError(f"gate 2 needs the seed {seed}: {where}{path} does not exist")
        try:
            # as dbt seeds it: an empty cell is null, any other text (even "NA") is a value
            return pd.read_csv(path, keep_default_na=False, na_values=[""])
        except Exception as exc:
            raise GateError(f"gate 2 cannot read the seed file {path}: {first_line(exc, MESSAGE_CHARS)}") from None

    def column(self, seed: str, column: str) -> pd.Series:
        frame = self.frame(seed)
        if column not in frame.columns:
            raise GateError(f"the seed {seed} has no column {column!r} (its columns: {', '.join(map(str, frame.columns))})")
        return frame[column]

    def resolve(self, reference: dict) -> Any:
        """What a seed reference stands for: the sorted distinct values of the seed's
        column, followed by any ``extra_values``; or, with ``aggregate`` (min, max or
        sum), that one number."""
        unknown = set(reference) - _REFERENCE_KEYS
        seed, column = reference.get("seed"), reference.get("column")
        if unknown or not isinstance(seed, str) or not isinstance(column, str):
            raise GateError(f"audit_marts.json: a seed reference needs a seed and a column (and may have "
                            f"{', '.join(sorted(_REFERENCE_KEYS - {'seed', 'column'}))}): {reference}")
        values = self.column(seed, column).dropna()
        if values.empty:
            raise GateError(f"the seed {seed} has no value in column {column}")
        aggregate = reference.get("aggregate")
        if aggregate is not None:
            if aggregate not in _AGGREGATES:
                raise GateError(f"audit_marts.json: unknown aggregate {aggregate!r} of seed {seed}.{column} "
                                f"(one of {', '.join(_AGGREGATES)})")
            try:
                number = float(getattr(pd.to_numeric(values), aggregate)())
            except (TypeError, ValueError):
                raise GateError(f"the seed {seed} has a value in column {column} that is not a number") from None
            return int(number) if number.is_integer() else number
        listed = sorted({jsonable(v) for v in values})
        return listed + [v for v in reference.get("extra_values", []) if v not in listed]


def seed_references(value: Any) -> Iterator[dict]:
    """Every seed reference in a part of ``audit_marts.json``."""
    if isinstance(value, dict):
        if "seed" in value:
            yield value
            return
        for item in value.values():
            yield from seed_references(item)
    elif isinstance(value, list):
        for item in value:
            yield from seed_references(item)


def tier_cutpoints(seeds: Seeds) -> list[tuple[str, float]]:
    """(tier, cumulative share of buyers) from the seed ``value_tier_cutpoints``, best tier
    first."""
    tiers = seeds.column(TIER_SEED, "value_tier")
    shares = seeds.column(TIER_SEED, "cumulative_share").astype("float64")
    if tiers.empty:
        raise GateError(f"the seed {TIER_SEED} has no rows")
    order = shares.sort_values(kind="stable").index
    return [(str(tiers[ix]), float(shares[ix])) for ix in order]


def substitute(value: Any, params: dict[str, Any], seeds: Seeds) -> Any:
    """``value`` with each ``$name`` replaced by its run-time parameter and each seed
    reference by what it stands for."""
    if isinstance(value, str) and value.startswith("$"):
        if value not in params:
            raise GateError(f"audit_marts.json uses unknown parameter {value}")
        return params[value]
    if isinstance(value, list):
        return [substitute(v, params, seeds) for v in value]
    if isinstance(value, dict):
        if "seed" in value:
            return seeds.resolve(value)
        return {k: substitute(v, params, seeds) for k, v in value.items()}
    return value


def gate2_params(wh: "Warehouse", spec: dict, settings: GateSettings, seeds: Seeds,
                 expected_customers: int | None, failures: list[str]) -> dict[str, Any]:
    """The ``$name`` parameters: the thresholds, the expected customer count, what BI sees
    now (``published_segments``) and the pyramid's cut points."""
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
    params["$tier_cutpoints"] = tier_cutpoints(seeds)
    return params
