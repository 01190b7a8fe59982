"""``crm bench``: the real nightly DAG at scale, timed stage by stage, phase after phase on
each warehouse, next to the reference readers of the same source, judged against the
targets."""

# For each warehouse (DuckDB and/or PostgreSQL) it runs, through ``crm run`` (Airflow's
# ``dag.test``, dbt, CLV fit, gates, publish, docs: the job a user runs):
#
# 1. ``full``: the first load of a scaled PostgreSQL source (``crm demo-data --scale``);
# 2. ``increment``: the next day, after one day of changes (about 0.3% of the orders);
# 3. ``full_2x``/``increment_2x``: the same on a source with twice the history (twice the
#    days and orders, same customers, the same number of changes that day);
# 4. ``fixed``: the next night of a tiny source on DuckDB, after its first load
#    (``fixed_first``): the fixed cost of any night.
#
# With ``warm``, every night is handed to a warm server (``crm serve``) of its home,
# started before the home's first night; the servers' load time is reported apart.
#
# ``spark`` among the warehouses runs the same nights on a local Spark session
# (``spark:///…``, the extra ``spark``), next to DuckDB.
#
# Extraction throughput is reported as a ratio to the reference ``COPY`` ceiling on the
# same source in the same run, which carries between machines.

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa

from crm_pipeline.bench.databases import (
    database_name,
    database_url,
    ensure_database,
    recreate_database,
)
from crm_pipeline.bench.figures import PHASES, BenchResult
from crm_pipeline.bench.reference import REFERENCES, run_reference
from crm_pipeline.bench.report import evaluate
from crm_pipeline.bench.scale import ensure as ensure_scaled_source
from crm_pipeline.bench.scale import parse_scale
from crm_pipeline.bench.timed_run import WarmServers, run_pipeline
from crm_pipeline.connections import redact
from crm_pipeline.contract import ENTITIES
from crm_pipeline.demo.source import advance_source

#: the embedded default's scale: the demo source (SQLite) with its default customers
DEMO_CUSTOMERS = 5000
#: the fixed-cost phase's source: so small that its next night is all fixed cost (Airflow,
#: process and dbt start-up, parsing, per-node overhead), whatever the scale
FIXED_COST_CUSTOMERS = 200
#: the demo's phases: the first run and the next day
DEMO_PHASES = ("first_run", "next_day")

#: the full load's date; the increment is the day after: an ordinary night inside a quarter
#: (the first night of a quarter also computes that quarter's credit snapshot once)
DEFAULT_AS_OF = date(2025, 6, 15)


def _demo_source_nights(folder: Path, customers: int, as_of: date, phases: tuple[str, str], say,
                        before_first=None, servers: WarmServers | None = None) -> list:
    """A SQLite demo source of ``customers`` in a fresh ``folder`` with a DuckDB warehouse:
    its first night (``as_of``) and the next one, timed as ``phases``."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    source = f"sqlite:///{folder / 'source.sqlite'}"
    warehouse = f"duckdb:///{folder / 'warehouse.duckdb'}"
    say(f"{phases[0]}: a demo source of {customers:,} customers up to {as_of} …")
    advance_source(source, as_of, customers=customers)
    if before_first is not None:
        before_first(source)
    runs = [run_pipeline(phases[0], "duckdb", folder, as_of, source, warehouse, servers)]
    day = as_of + timedelta(days=1)
    advance_source(source, day, customers=customers)
    say(f"{phases[1]}: the next night ({day}) …")
    runs.append(run_pipeline(phases[1], "duckdb", folder, day, source, warehouse, servers))
    return runs


def run_demo_bench(home: Path, *, as_of: date = DEFAULT_AS_OF, warm: bool = False, on_event=None) -> BenchResult:
    """The embedded default as a user runs it: the demo source in SQLite and a DuckDB
    warehouse, the first run and the next day (docs/performance.md)."""
    say = on_event or (lambda text: None)
    result = BenchResult("DEMO", 0, 0, as_of, warm=warm)

    def describe(source: str) -> None:
        counts = _source_counts(source)
        result.customers, result.orders = counts["customers"], counts["orders"]
        result.sources["demo"] = {"url": "sqlite (demo)", "rows": counts}

    servers = WarmServers() if warm else None
    try:
        result.runs.extend(_demo_source_nights(home / "demo", DEMO_CUSTOMERS, as_of, DEMO_PHASES, say, describe,
                                               servers))
    finally:
        _stop(servers, result)
    evaluate(result)
    return result


def _stop(servers: WarmServers | None, result: BenchResult) -> None:
    if servers is not None:
        servers.stop()
        result.server_load_seconds = dict(servers.load_seconds)


def _source_counts(source: str) -> dict[str, int]:
    """Rows per entity of the demo source (customers created so far, not the generator's total)."""
    engine = sa.create_engine(source)
    try:
        with engine.connect() as conn:
            return {e.name: int(conn.execute(sa.text(f"select count(*) from {e.name}")).scalar_one()) for e in ENTITIES}
    finally:
        engine.dispose()


def run_bench(scale_name: str, source: str, warehouses: list[str], home: Path, *, as_of: date = DEFAULT_AS_OF,
              skip_naive: bool = False, skip_reference: bool = False, phases: tuple[str, ...] = PHASES,
              warm: bool = False, on_event=None) -> BenchResult:
    """Everything ``crm bench`` does; ``on_event(text)`` reports progress."""
    customers, orders = parse_scale(scale_name)
    result = BenchResult(scale_name.upper(), customers, orders, as_of, warm=warm)
    servers = WarmServers() if warm else None
    try:
        _run_phases(result, source, warehouses, home, skip_naive=skip_naive, skip_reference=skip_reference,
                    phases=phases, servers=servers, say=on_event or (lambda text: None))
    finally:
        _stop(servers, result)
    evaluate(result)
    return result


def _run_phases(result: BenchResult, source: str, warehouses: list[str], home: Path, *, skip_naive: bool,
                skip_reference: bool, phases: tuple[str, ...], servers: WarmServers | None, say) -> None:
    customers, orders, as_of = result.customers, result.orders, result.as_of
    home.mkdir(parents=True, exist_ok=True)
    base = database_name(source)
    wh_targets: list[tuple[str, str]] = []  # (label, url or "duckdb")
    if "spark" in warehouses and "duckdb" not in warehouses:  # Spark is told against DuckDB
        warehouses = ["duckdb", *warehouses]
    for w in warehouses:
        if w in ("duckdb", "spark"):
            wh_targets.append((w, w))
        elif w == "postgres":
            wh_targets.append(("postgres", database_url(source, f"{base}_warehouse")))
        elif w.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
            wh_targets.append(("postgres", w))
        else:
            raise ValueError(f"--warehouse {w!r}: use duckdb, postgres, spark or a postgresql:// URL")

    for factor, (full, inc) in ((1, ("full", "increment")), (2, ("full_2x", "increment_2x"))):
        if full not in phases and inc not in phases:
            continue
        src = ensure_database(source, f"{base}_h{factor}")
        say(f"source ×{factor} history: filling {customers:,} customers / {orders * factor:,} orders …")
        filled = ensure_scaled_source(src, customers=customers, orders=orders, until=as_of, history_factor=factor)
        result.sources[f"h{factor}"] = {"url": redact(src), "rows": filled.rows,
                                        "fill_seconds": round(filled.seconds, 1)}
        if factor == 1 and not skip_reference:
            for name in REFERENCES:
                if name == "pandas_read_sql" and skip_naive:
                    continue
                say(f"reference reader: {REFERENCES[name][0]} …")
                result.reference[name] = run_reference(name, src)
        urls: dict[str, str] = {}
        for label, target in wh_targets:
            wh_home = home / f"{label}-h{factor}"
            shutil.rmtree(wh_home, ignore_errors=True)
            wh_home.mkdir(parents=True)
            if target == "duckdb":
                urls[label] = f"duckdb:///{wh_home / 'warehouse.duckdb'}"
            elif target == "spark":
                urls[label] = f"spark://{wh_home / 'spark'}"
            else:
                urls[label] = recreate_database(target, f"{database_name(target)}_h{factor}")
        if full in phases:
            for label, _ in wh_targets:
                say(f"{full} on {label} …")
                result.runs.append(run_pipeline(full, label, home / f"{label}-h{factor}", as_of, src, urls[label],
                                                servers))
        if inc in phases:
            day = as_of + timedelta(days=1)
            say(f"source ×{factor} history: one day of changes ({day}) …")
            ensure_scaled_source(src, customers=customers, orders=orders, until=day, history_factor=factor)
            for label, _ in wh_targets:
                say(f"{inc} on {label} …")
                result.runs.append(run_pipeline(inc, label, home / f"{label}-h{factor}", day, src, urls[label],
                                                servers))
    if "fixed" in phases:  # the fixed cost of a night: the next night of a tiny source
        result.runs.extend(_demo_source_nights(home / "fixed", FIXED_COST_CUSTOMERS, as_of, ("fixed_first", "fixed"),
                                               say, servers=servers))
