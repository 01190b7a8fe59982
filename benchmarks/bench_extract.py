"""Extraction benchmark: each reader × each warehouse on a PostgreSQL source of N orders.

    uv run python benchmarks/bench_extract.py --orders 1000000
    uv run python benchmarks/bench_extract.py --orders 200000 --warehouses duckdb
    uv run python benchmarks/bench_extract.py --orders 300000,3000000 --modes extract

With several sizes it also checks that extraction memory does not grow with the table:
the peak RSS at the largest size may exceed the one at the smallest by at most
``--max-memory-growth`` (25%); it exits 1 otherwise.

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


def _recreate(dbname: str) -> None:
    from crm_pipeline.bench import recreate_database

    recreate_database(ADMIN_URL, dbname)


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


def _measure(console, plan, chunk_rows: int, orders: int, duckdb_memory: str | None) -> list[dict]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if duckdb_memory:
        env["CRM_DUCKDB_MEMORY_LIMIT"] = env["CRM_EXTRACT_DUCKDB_MEMORY"] = duckdb_memory
    out = []
    for mode, reader, wh in plan:
        with console.status(f"{orders:,} orders: {mode} {reader} → {wh} …"):
            proc = subprocess.run(
                [sys.executable, __file__, "--one", mode, reader, wh, "--chunk-rows", str(chunk_rows)],
                capture_output=True, text=True, env=env,
            )
        row = {"orders": orders, "mode": mode, "reader": reader, "warehouse": wh}
        if proc.returncode != 0:
            row["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1][:60]
        else:
            row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            console.print(f"{orders:>10,} {mode:8} {reader:11} {wh:9} {row['seconds']:8.2f}s  "
                          f"peak RSS {row['peak_rss_mb']:,.0f} MB")
        out.append(row)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", default="1000000",
                   help="orders in the source; several sizes separated by commas (e.g. 300000,3000000) "
                        "also print how peak memory grows with the table (default 1000000)")
    p.add_argument("--chunk-rows", type=int, default=50_000)
    p.add_argument("--readers", default=",".join(READERS))
    p.add_argument("--warehouses", default="duckdb,postgres")
    p.add_argument("--modes", default="read,extract")
    p.add_argument("--max-memory-growth", type=float, default=0.25,
                   help="with several sizes: the largest peak RSS may exceed the smallest by at most "
                        "this fraction (default 0.25); the script exits 1 when it does")
    p.add_argument("--duckdb-memory-limit", default=None, metavar="SIZE",
                   help="DuckDB memory_limit of the warehouse and of the postgres-scanner reader "
                        "(CRM_DUCKDB_MEMORY_LIMIT; default: the pipeline's, 512MB). DuckDB caches "
                        "table blocks up to this cap, so a DuckDB warehouse's peak RSS rises with the "
                        "table until the cache is full and stays there; compare sizes above the cap.")
    p.add_argument("--reuse", action="store_true", help="reuse the source built by a previous run")
    p.add_argument("--one", nargs=3, metavar=("MODE", "READER", "WAREHOUSE"), help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.one:
        print(json.dumps(run_one(*args.one, chunk_rows=args.chunk_rows)))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)
    sizes = [int(x.replace("_", "")) for x in str(args.orders).split(",") if x.strip()]
    plan = []
    for mode in args.modes.split(","):
        for reader in args.readers.split(","):
            for wh in (args.warehouses.split(",") if mode == "extract" else ["-"]):
                plan.append((mode, reader, wh))
    rows: list[dict] = []
    for orders in sizes:
        if not args.reuse:
            with console.status(f"building a PostgreSQL source with {orders:,} orders …"):
                built = build_source(orders)
            console.print(f"source {SOURCE_DB}: {orders:,} orders in {built:.1f}s")
        rows += _measure(console, plan, args.chunk_rows, orders, args.duckdb_memory_limit)

    cap = args.duckdb_memory_limit or os.environ.get("CRM_DUCKDB_MEMORY_LIMIT") or "512MB (default)"
    table = Table(title=f"extract orders, chunks of {args.chunk_rows:,}, DuckDB memory_limit {cap}")
    for col in ("orders", "mode", "reader", "warehouse", "seconds", "rows/s", "peak RSS MB", "RSS before MB", "notes"):
        table.add_column(col, justify="left" if col in ("mode", "reader", "warehouse", "notes") else "right")
    for r in rows:
        if "error" in r:
            table.add_row(f"{r['orders']:,}", r["mode"], r["reader"], r["warehouse"], "-", "-", "-", "-",
                          "failed: " + r["error"])
            continue
        notes = ""
        if r["mode"] == "extract":
            notes = f"staged {r['staged']:,}, quarantined {r['quarantined']:,}, in raw {r['landed']:,}"
            if r["reader_used"] != r["reader"]:
                notes += f" (fell back to {r['reader_used']})"
        table.add_row(f"{r['orders']:,}", r["mode"], r["reader"], r["warehouse"], f"{r['seconds']:.2f}",
                      f"{r['rows'] / r['seconds']:,.0f}", f"{r['peak_rss_mb']:,.0f}", f"{r['base_rss_mb']:,.0f}", notes)
    console.print(table)

    failed = any("error" in r for r in rows)
    if len(sizes) > 1:
        growth = Table(title=f"peak memory, {min(sizes):,} → {max(sizes):,} orders "
                             f"(limit +{args.max_memory_growth:.0%})")
        for col in ("mode", "reader", "warehouse", "peak RSS small MB", "peak RSS large MB", "growth", "verdict"):
            growth.add_column(col, justify="left" if col in ("mode", "reader", "warehouse", "verdict") else "right")
        for mode, reader, wh in plan:
            pair = {r["orders"]: r for r in rows if (r["mode"], r["reader"], r["warehouse"]) == (mode, reader, wh)
                    and "error" not in r}
            if min(sizes) not in pair or max(sizes) not in pair:
                continue
            small, large = pair[min(sizes)]["peak_rss_mb"], pair[max(sizes)]["peak_rss_mb"]
            ratio = large / small - 1.0
            ok = ratio <= args.max_memory_growth
            failed |= not ok
            growth.add_row(mode, reader, wh, f"{small:,.0f}", f"{large:,.0f}", f"{ratio:+.0%}",
                           "flat" if ok else "GROWS")
        console.print(growth)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
