"""``crm bench``: the real DAG at scale, timed per stage against the targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from crm_pipeline import bench as benchmark
from crm_pipeline.cli_common import UserError, _guard, _home, _parse_date, console


@_guard
def bench(
    scale: str = typer.Option(..., "--scale", help="demo (the embedded default: 5,000 customers, SQLite source, "
                                                    "first run and next day), S (100k customers, 2M orders), L (1M, "
                                                    "20M) or CUSTOMERSxORDERS."),
    source: Optional[str] = typer.Option(
        None, "--source", envvar="CRM_BENCH_SOURCE",
        help="PostgreSQL URL; the benchmark fills the databases <db>_h1 and <db>_h2 on that server."),
    warehouse: Optional[list[str]] = typer.Option(
        None, "--warehouse",
        help="duckdb, postgres (a database <db>_warehouse_hN on the source's server), a postgresql:// URL "
             "(the benchmark uses <db>_h1/<db>_h2 next to it) or spark (the same nights on a local Spark "
             "session, next to DuckDB; the extra 'spark'); repeat for several (default: duckdb and postgres)."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write the figures as JSON to this file."),
    home: Optional[Path] = typer.Option(None, "--home", help="Folder for the runs' state (default ./.crm/bench)."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="Day of the full load (default 2025-06-15, a night "
                                                                 "inside a quarter)."),
    skip_naive: bool = typer.Option(False, "--skip-naive", help="Skip the slow pandas read_sql reference reader."),
    skip_reference: bool = typer.Option(False, "--skip-reference", help="Skip all reference readers."),
    phases: str = typer.Option("full,increment,full_2x,increment_2x,fixed", "--phases",
                               help="Which phases to run (comma-separated); fixed is the next night of a "
                                    "200-customer source, the fixed cost of any night."),
    warm: bool = typer.Option(False, "--warm", help="Hand every night to a warm server (`crm serve`) of its home, "
                                                   "started before its first night; its load time is shown apart."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
) -> None:
    """Run the real DAG at scale (full load, one nightly increment, the same on twice the
    history) and print seconds, rows/s and peak RSS per stage, the reference readers and
    the targets."""
    if scale.strip().lower() == "demo":
        _demo(home, as_of, json_file, warm)
        return
    if not source:
        raise UserError("crm bench needs a PostgreSQL server for its source",
                        "pass --source postgresql://user@host:5432/crm_bench (or set CRM_BENCH_SOURCE)")
    as_of_d = _parse_date(as_of, "--as-of") or benchmark.DEFAULT_AS_OF
    chosen = tuple(p.strip() for p in phases.split(",") if p.strip())
    unknown = [p for p in chosen if p not in benchmark.PHASES]
    if unknown or not chosen:
        raise UserError(f"--phases {phases!r}: unknown {', '.join(unknown) or 'empty'}",
                        f"choose from {', '.join(benchmark.PHASES)}")
    bench_home = (home or _home(None) / "bench").resolve()
    try:
        with console.status("benchmark …") as status:
            result = benchmark.run_bench(scale, source, list(warehouse or ["duckdb", "postgres"]), bench_home, as_of=as_of_d,
                                 skip_naive=skip_naive, skip_reference=skip_reference, phases=chosen, warm=warm,
                                 on_event=lambda text: (status.update(text), console.log(text)))
    except ValueError as exc:
        raise UserError(str(exc), "see `crm bench --help`") from None
    benchmark.render(result, console)
    if json_file:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(result.as_dict(), indent=2, default=str) + "\n")
        console.print(f"figures: {json_file}")
    if any(not r.ok for r in result.runs):
        raise UserError("a benchmark run failed", f"see the run logs under {bench_home}")


def _demo(home: Optional[Path], as_of: Optional[str], json_file: Optional[Path], warm: bool) -> None:
    """``crm bench --scale demo``: the embedded default, first run and next day."""
    as_of_d = _parse_date(as_of, "--as-of") or benchmark.DEFAULT_AS_OF
    bench_home = (home or _home(None) / "bench").resolve()
    with console.status("benchmark …") as status:
        result = benchmark.run_demo_bench(bench_home, as_of=as_of_d, warm=warm,
                                          on_event=lambda text: (status.update(text), console.log(text)))
    benchmark.render(result, console)
    if json_file:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(result.as_dict(), indent=2, default=str) + "\n")
        console.print(f"figures: {json_file}")
    if any(not r.ok for r in result.runs):
        raise UserError("a benchmark run failed", f"see the run logs under {bench_home}")
