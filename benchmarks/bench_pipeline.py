"""Benchmark of one whole nightly run on the embedded default: seconds per stage, rows/s
of extraction and peak memory, printed as a table.

    uv run python benchmarks/bench_pipeline.py --customers 20000 --as-of 2026-06-30

A first run on an empty warehouse loads the full history; ``--incremental-days N`` then
runs the N following days, which extract only what changed.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--as-of", default="2026-06-30")
    parser.add_argument("--incremental-days", type=int, default=1)
    parser.add_argument("--home", type=Path, default=None, help="keep the state here (default: a temp folder)")
    args = parser.parse_args()

    from crm_pipeline.cli import run_once
    from crm_pipeline.demo import advance_source

    home = args.home or Path(tempfile.mkdtemp(prefix="crm-bench-"))
    as_of = date.fromisoformat(args.as_of)
    console = Console(width=200)
    t0 = time.perf_counter()
    advance_source(f"sqlite:///{home / 'source.sqlite'}", as_of, customers=args.customers)
    demo_seconds = time.perf_counter() - t0

    table = Table(title=f"crm_nightly, {args.customers:,} customers, DuckDB warehouse")
    for col in ("as_of", "kind", "rows extracted", "extract s", "rows/s", "dbt_staging s", "clv_fit s",
                "dbt_marts s", "gate s", "publish s", "total s", "peak RSS MB", "status"):
        table.add_column(col, justify="right")
    days = [as_of + timedelta(days=i) for i in range(args.incremental_days + 1)]
    for i, day in enumerate(days):
        t = time.perf_counter()
        summary = run_once(home, day, None, None, customers=args.customers, quiet=True)
        total = time.perf_counter() - t
        stages = {s["stage"]: float(s["seconds"] or 0) for s in summary.get("stages") or []}
        rows = sum(int(e["extracted"]) for e in summary.get("entities") or [])
        extract_s = stages.get("extract", 0.0)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        table.add_row(
            day.isoformat(), "full load" if i == 0 else "incremental", f"{rows:,}", f"{extract_s:.1f}",
            f"{rows / extract_s:,.0f}" if extract_s else "-",
            *(f"{stages.get(s, 0.0):.1f}" for s in ("dbt_staging", "clv_fit", "dbt_marts", "gate", "publish")),
            f"{total:.1f}", f"{peak_mb:,.0f}", str(summary.get("status")),
        )
    console.print(f"demo source generated in {demo_seconds:.1f}s at {home}")
    console.print(table)


if __name__ == "__main__":
    main()
