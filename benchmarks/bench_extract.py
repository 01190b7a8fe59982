"""Extraction benchmark: each reader × each warehouse on a PostgreSQL source of N orders.

    uv run python benchmarks/bench_extract.py --orders 1000000
    uv run python benchmarks/bench_extract.py --orders 200000 --warehouses duckdb

Builds (or reuses, with --reuse) a PostgreSQL source database: the demo generator makes
the schema and a few hundred customers, then one ``generate_series`` INSERT adds N orders
spread over a year. Then, for every reader (SQLAlchemy stream, connectorx, DuckDB postgres
scanner) it measures

* ``read``: the reader alone, streaming the whole table in chunks into canonical frames;
* ``extract``: the whole initial batch of ``orders`` (read, hash, dedup, gate 1, write in
  one transaction) into a fresh DuckDB file and a fresh PostgreSQL database.

Each measurement runs in its own process so the peak RSS (``getrusage``) is its own.
Prints a table: reader × warehouse → seconds, rows/s, peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

ADMIN_URL = os.environ.get("CRM_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
SOURCE_DB = "crm_bench_source"
WAREHOUSE_DB = "crm_bench_warehouse"
READERS = ("sqlalchemy", "connectorx", "duckdb")
AS_OF = date(2024, 6, 30)


def _url(dbname: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname


def _admin():
    import psycopg2

    con = psycopg2.connect(ADMIN_URL)
    con.autocommit = True
    return con


def _recreate(dbname: str) -> None:
    con = _admin()
    with con.cursor() as cur:
        cur.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s "
                    "and pid <> pg_backend_pid()", (dbname,))
        cur.execute(f"drop database if exists {dbname}")
        cur.execute(f"create database {dbname}")
    con.close()


def build_source(orders: int) -> float:
    """A PostgreSQL source with the demo schema, its customers, and ``orders`` orders."""
    import psycopg2

    from crm_pipeline import demo

    t0 = time.perf_counter()
    _recreate(SOURCE_DB)
    url = _url(SOURCE_DB)
    demo.advance_source(url.replace("postgresql://", "postgresql+psycopg2://"), date(2023, 12, 31), customers=300)
    con = psycopg2.connect(url)
    with con, con.cursor() as cur:
        cur.execute("truncate orders")
        cur.execute(
            """
            insert into orders
            select g as order_id,
                   c.customer_id,
                   day.d::date as order_date,
                   (array['placed','shipped','shipped','shipped','cancelled','returned'])[1 + g %% 6],
                   (array['CNY','CNY','CNY','USD','EUR','HKD'])[1 + (g / 7) %% 6],
                   round((10 + (g * 7919 %% 100000) / 37.0)::numeric, 2),
                   round((6 + (g * 7919 %% 100000) / 61.0)::numeric, 2),
                   (array['hardware','software','services','training'])[1 + g %% 4],
                   (day.d + interval '30 days')::date,
                   case when g %% 5 = 0 then null else round((10 + (g * 7919 %% 100000) / 37.0)::numeric, 2) end,
                   case when g %% 5 = 0 then null else day.d + interval '3 days' end,
                   0,
                   day.d + (g %% 86400) * interval '1 second' + (g %% 997) * interval '1 microsecond',
                   g %% 97 = 0
            from generate_series(1::bigint, %(n)s) as g
            cross join lateral (select timestamp '2023-07-01' + (g %% 365) * interval '1 day' as d) as day
            join (select customer_id, (row_number() over (order by customer_id) - 1)::int as ix,
                         (count(*) over ())::int as n from customers) as c
              on c.ix = (g %% c.n)::int
            """,
            {"n": orders},
        )
        cur.execute("analyze orders")
        cur.execute("select count(*) from orders")
        n = cur.fetchone()[0]
    con.close()
    assert n == orders, (n, orders)
    return time.perf_counter() - t0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(mode: str, reader: str, warehouse: str, chunk_rows: int) -> dict:
    """One measurement (in this process): returns seconds, rows, peak RSS."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    for name in ("great_expectations", "crm_pipeline"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from crm_pipeline import extract as ex
    from crm_pipeline.contract import ORDERS
    from crm_pipeline.warehouse import Warehouse, WarehouseConfig

    engine = ex.source_engine(_url(SOURCE_DB))
    hi = datetime.combine(AS_OF + timedelta(days=1), datetime.min.time())
    if mode == "read":
        base = _peak_rss_mb()
        t0 = time.perf_counter()
        rows = 0
        for chunk in ex.iter_source_chunks(engine, ORDERS, None, hi, chunk_rows, reader):
            rows += len(chunk)
        seconds = time.perf_counter() - t0
        return {"rows": rows, "seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "base_rss_mb": base}

    if warehouse == "duckdb":
        path = Path(tempfile.mkdtemp(prefix="crm-bench-")) / "warehouse.duckdb"
        cfg = WarehouseConfig.from_url(f"duckdb:///{path}")
    else:
        _recreate(WAREHOUSE_DB)
        cfg = WarehouseConfig.from_url(_url(WAREHOUSE_DB))
    with Warehouse(cfg) as wh:
        ex.ensure_tables(wh)
        # gate 1 is warmed up on a tiny frame first: GX's import and context are start-up,
        # not extraction
        from crm_pipeline import gates

        warm = next(ex.iter_source_chunks(engine, ORDERS, None, hi, 10, "sqlalchemy"))
        gates.gate1_rows(ORDERS, warm, None, as_of=AS_OF)
        base = _peak_rss_mb()
        t0 = time.perf_counter()
        stats = ex.extract_entity(wh, engine, ORDERS, as_of=AS_OF, run_id="bench", chunk_rows=chunk_rows,
                                  reader=reader)
        seconds = time.perf_counter() - t0
        landed = wh.scalar("select count(*) from raw.orders")
    return {"rows": stats.rows_extracted, "seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "base_rss_mb": base,
            "staged": stats.rows_staged, "quarantined": stats.rows_quarantined, "landed": int(landed),
            "reader_used": stats.reader}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=1_000_000, help="orders in the source (default 1,000,000)")
    p.add_argument("--chunk-rows", type=int, default=50_000)
    p.add_argument("--readers", default=",".join(READERS))
    p.add_argument("--warehouses", default="duckdb,postgres")
    p.add_argument("--modes", default="read,extract")
    p.add_argument("--reuse", action="store_true", help="reuse the source built by a previous run")
    p.add_argument("--one", nargs=3, metavar=("MODE", "READER", "WAREHOUSE"), help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.one:
        print(json.dumps(run_one(*args.one, chunk_rows=args.chunk_rows)))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)
    if not args.reuse:
        with console.status(f"building a PostgreSQL source with {args.orders:,} orders …"):
            built = build_source(args.orders)
        console.print(f"source {SOURCE_DB}: {args.orders:,} orders in {built:.1f}s")
    table = Table(title=f"extract orders: {args.orders:,} rows, chunks of {args.chunk_rows:,}")
    for col in ("mode", "reader", "warehouse", "seconds", "rows/s", "peak RSS MB", "RSS before MB", "notes"):
        table.add_column(col, justify="right" if col not in ("mode", "reader", "warehouse", "notes") else "left")
    plan = []
    for mode in args.modes.split(","):
        for reader in args.readers.split(","):
            for wh in (args.warehouses.split(",") if mode == "extract" else ["-"]):
                plan.append((mode, reader, wh))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for mode, reader, wh in plan:
        with console.status(f"{mode} {reader} → {wh} …"):
            proc = subprocess.run(
                [sys.executable, __file__, "--one", mode, reader, wh, "--chunk-rows", str(args.chunk_rows)],
                capture_output=True, text=True, env=env,
            )
        if proc.returncode != 0:
            table.add_row(mode, reader, wh, "-", "-", "-", "-", "failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:60])
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        notes = ""
        if mode == "extract":
            notes = f"staged {r['staged']:,}, quarantined {r['quarantined']:,}, in raw {r['landed']:,}"
            if r["reader_used"] != reader:
                notes += f" (fell back to {r['reader_used']})"
        table.add_row(mode, reader, wh, f"{r['seconds']:.2f}", f"{r['rows'] / r['seconds']:,.0f}",
                      f"{r['peak_rss_mb']:,.0f}", f"{r['base_rss_mb']:,.0f}", notes)
        console.print(f"{mode:8} {reader:11} {wh:9} {r['seconds']:8.2f}s  peak RSS {r['peak_rss_mb']:,.0f} MB")
    console.print(table)


if __name__ == "__main__":
    main()
