"""The ``crm`` command: run the nightly job locally, make demo data, inspect runs.

Errors are one line plus what to do; a stack trace only with ``--debug``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import warnings
from datetime import date, timedelta
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from crm_pipeline import airflow_local, demo, runs, settings
from crm_pipeline.bench import scale as scaled_source
from crm_pipeline.cli_bench import bench
from crm_pipeline.cli_clv import clv_app
from crm_pipeline.cli_clv_validate import validate as clv_validate
from crm_pipeline.cli_docs import docs
from crm_pipeline.cli_migrate import migrate
from crm_pipeline.cli_report import report
from crm_pipeline.cli_quarantine import quarantine_app
from crm_pipeline.cli_reconcile import reconcile
from crm_pipeline.cli_common import (DEFAULT_CUSTOMERS, DEFAULT_SEED, UserError, _demo_url,
                                     _ended_day, _guard, _home, _parse_date, _storage_error, _warehouse_url,
                                     _yesterday, console, usable_spark_dir)
from crm_pipeline.cli_progress import StageProgress
from crm_pipeline.cli_spark import spark_app
from crm_pipeline.cli_status import status
from crm_pipeline.gates.credit_facts import describe as credit_describe
from crm_pipeline.connections import SOURCE_CONN_ID, RunSettings, WarehouseConfig, redact
from crm_pipeline.home_lock import HomeBusy, one_run_per_home
from crm_pipeline.warehouse import Warehouse
from crm_pipeline import warm_server

# plain help (rich_markup_mode=None): a flag reads as a flag, "--debug", not "--debug <bool>"
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Nightly customer-value pipeline.")
# -- demo-data -----------------------------------------------------------------------


@app.command("demo-data")
@_guard
def demo_data(
    home: Optional[Path] = typer.Option(None, "--home", help="State folder (default ./.crm)."),
    customers: int = typer.Option(DEFAULT_CUSTOMERS, "--customers", min=1, help="Number of customers."),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="Random seed (same seed, same data)."),
    until: Optional[str] = typer.Option(None, "--until", help="Bring the source to the end of this day (default: yesterday)."),
    source: Optional[str] = typer.Option(None, "--source", help="SQLAlchemy URL of the source (default: DIR/source.sqlite)."),
    scale: Optional[str] = typer.Option(
        None, "--scale",
        help="Fill a PostgreSQL --source at benchmark scale inside the database: S (100k customers, "
             "2M orders), L (1M, 20M) or CUSTOMERSxORDERS. A source already filled at this scale is "
             "advanced day by day to --until instead."),
    history_factor: int = typer.Option(1, "--history-factor", min=1,
                                       help="With --scale: N times the history (days and orders)."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
) -> None:
    """Create or advance the deterministic demo source database."""
    home_dir = _home(home)
    home_dir.mkdir(parents=True, exist_ok=True)
    until_d = _parse_date(until, "--until") or _yesterday()
    if scale is not None:
        _demo_data_at_scale(scale, source, until_d, history_factor)
        return
    url = source or _demo_url(home_dir)
    try:
        result = demo.advance_source(url, until_d, customers=customers, seed=seed, progress=True)
    except ValueError as exc:
        raise UserError(str(exc), "use a new --home (or --source) to start over") from None
    table = Table(title=f"demo source at end of {until_d}")
    table.add_column("entity")
    table.add_column("rows changed", justify="right")
    table.add_column("rows total", justify="right")
    for name, total in result.rows_total.items():
        table.add_row(name, f"{result.rows_changed.get(name, 0):,}", f"{total:,}")
    console.print(table)
    console.print(f"source: {redact(url)}")


def _demo_data_at_scale(scale_name: str, source: Optional[str], until_d: date, history_factor: int) -> None:
    if not source:
        raise UserError("--scale needs --source postgresql://...", "the scaled source is generated inside PostgreSQL")
    try:
        customers, orders = scaled_source.parse_scale(scale_name)
        with console.status(f"generating {customers:,} customers / {orders * history_factor:,} orders "
                            f"inside the source …"):
            result = scaled_source.ensure(source, customers=customers, orders=orders, until=until_d,
                                  history_factor=history_factor)
    except ValueError as exc:
        raise UserError(str(exc), "see `crm demo-data --help`") from None
    table = Table(title=f"scaled source at end of {result.applied_until} ({result.action} in {result.seconds:.1f}s)")
    table.add_column("entity")
    table.add_column("rows", justify="right")
    for name, total in result.rows.items():
        table.add_row(name, f"{total:,}")
    console.print(table)
    console.print(f"source: {redact(source)}")


# -- run -----------------------------------------------------------------------------


def _print_summary(summary: dict, home: Path) -> None:
    status = summary.get("status", "unknown")
    colour = "green" if status == "success" else "red"
    console.print(
        f"\n[bold]crm_nightly[/] as_of [bold]{summary.get('as_of')}[/]: [bold {colour}]{status}[/]"
        f"  (gate: {summary.get('gate_verdict') or 'not reached'})"
    )
    if summary.get("message"):
        from rich.markup import escape

        console.print(f"[{colour}]{escape(str(summary['message']))}[/]")
    if summary.get("hint"):
        console.print(f"[dim]→ {summary['hint']}[/]")
    if summary.get("entities"):
        t = Table(title="extracted")
        for col in ("entity", "extracted", "duplicate", "staged", "quarantined"):
            t.add_column(col, justify="left" if col == "entity" else "right")
        for e in summary["entities"]:
            t.add_row(e["entity"], *(f"{int(e[k]):,}" for k in ("extracted", "duplicate", "staged", "quarantined")))
        console.print(t)
    if summary.get("quarantine"):
        states, landed = summary["quarantine"].get("states") or {}, summary["quarantine"].get("landed") or {}
        t = Table(title="quarantine (rows per state)")
        for col in ("entity", "waiting", "admitted", "rejected", "superseded", "landed tonight"):
            t.add_column(col, justify="left" if col == "entity" else "right")
        for name, counts in states.items():
            tonight = landed.get(name) or {}
            t.add_row(name, *(f"{int(counts.get(k, 0)):,}" for k in ("waiting", "admitted", "rejected", "superseded")),
                      f"{int(tonight.get('admitted', 0)) + int(tonight.get('by_analyst', 0)):,}")
        console.print(t)
    if summary.get("published"):
        t = Table(title="published")
        t.add_column("table")
        t.add_column("mode")
        t.add_column("rows", justify="right")
        for p in summary["published"]:
            t.add_row(p["table"], p["mode"], f"{int(p['rows']):,}")
        console.print(t)
    if summary.get("stages"):
        t = Table(title="stages")
        t.add_column("stage")
        t.add_column("status")
        t.add_column("seconds", justify="right")
        for s in summary["stages"]:
            t.add_row(s["stage"], s["status"], f"{float(s['seconds'] or 0):.1f}")
        console.print(t)
    gate_details = next((s.get("details") or {} for s in summary.get("stages") or [] if s.get("stage") == "gate"), {})
    for line in credit_describe(gate_details.get("credit") or {}):
        console.print(f"credit:    {line}", highlight=False)
    for warning in (gate_details.get("warnings") or [])[:5]:
        console.print(f"[yellow]warning:[/] {warning[:300]}", highlight=False)
    clv_details = next((s.get("details") or {} for s in summary.get("stages") or [] if s.get("stage") == "clv_fit"), {})
    if clv_details.get("status"):
        params = clv_details.get("params") or {}
        if clv_details["status"] == "ok":
            fitted = ", ".join(f"{k}={params[k]:.4g}" for k in ("r", "alpha", "a", "b", "p", "q", "gamma")
                               if params.get(k) is not None)
            console.print(f"clv:       [green]ok[/] ({clv_details.get('n_customers')} customers, "
                          f"{clv_details.get('time_unit')}; {fitted})")
        else:
            from rich.markup import escape

            console.print(f"clv:       [yellow]{clv_details['status']}[/]: {escape(clv_details.get('message') or '')} "
                          "(no new CLV published; the previous one stays)")
    console.print(f"warehouse: {summary.get('warehouse')}")
    if summary.get("log"):
        console.print(f"log:       {summary['log']}")
    dbt_docs = home / "docs" / "dbt" / "index.html"
    if summary.get("docs"):
        console.print(f"data docs: {summary['docs']}")
    if dbt_docs.exists():
        console.print(f"dbt docs:  {dbt_docs}")
    report = next((s for s in summary.get("stages") or [] if s.get("stage") == "report"), None)
    if report and report.get("status") == "ok":
        console.print(f"report:    {(report.get('details') or {}).get('report')}", highlight=False)
    elif report:
        console.print(f"[yellow]warning:[/] the report was not written: {(report.get('details') or {}).get('error')}",
                      highlight=False)


#: what to do after a run failed in a stage (the message starts with the stage's name)
STAGE_HINTS = {
    "extract": "check that the source is reachable and that its URL and credentials are right (--source, "
               "or the crm_source connection), then run again; nothing was published",
    "gate": "published is unchanged: the failed checks are in the data docs; fix the data at the source (or "
            "the rule, if it is wrong) and run again",
    "publish": "published is unchanged (the publish is one transaction); run again",
}


def failure_hint(message: str, log_path: Path) -> str:
    """What to do after a failed run, from the stage its message names."""
    stage_name = message.split(":", 1)[0].strip()
    if stage_name == "publish" and "`crm migrate`" in message:
        return "published is unchanged; run `crm migrate` (same --home / --warehouse), then run again"
    hint = STAGE_HINTS.get("gate" if stage_name.startswith("gate") else stage_name)
    return hint or f"published is unchanged; the run's whole log is {log_path}"


def run_once(home: Path, as_of: date, source: Optional[str], warehouse: Optional[str],
             customers: int = DEFAULT_CUSTOMERS, seed: int = DEFAULT_SEED, quiet: bool = False) -> dict:
    """Run the DAG for one date and return the run summary (used by run and backfill).

    The Airflow and connection settings of the run are set in this process's environment
    only for the run: a second call with another --home never inherits the first one's.
    """
    saved = dict(os.environ)
    try:
        with one_run_per_home(home, as_of):
            return _run_once(home, as_of, source, warehouse, customers, seed, quiet)
    except HomeBusy as exc:
        raise UserError(str(exc), "wait until it ends (`crm status` shows its stage), or use another --home") from None
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _run_once(home: Path, as_of: date, source: Optional[str], warehouse: Optional[str],
              customers: int, seed: int, quiet: bool) -> dict:
    warehouse_url = _warehouse_url(home, warehouse)
    if warehouse_url.startswith("spark:"):
        usable_spark_dir(WarehouseConfig.from_url(warehouse_url).spark_dir)
    home.mkdir(parents=True, exist_ok=True)
    source_url = source or settings.airflow_connection(SOURCE_CONN_ID)
    if not source_url:
        source_url = _demo_url(home)
        state = demo.source_state(source_url)
        if state is not None:
            # an existing demo source keeps the size and seed it was made with
            customers, seed = state["customers"], state["seed"]
        # a backfill of a past date reads the source as it is now, like a real one;
        # only a later date moves the demo database forward
        if state is None or as_of > state["applied_until"]:
            with console.status(f"advancing the demo source to the end of {as_of} …"):
                try:
                    demo.advance_source(source_url, as_of, customers=customers, seed=seed)
                except ValueError as exc:
                    raise UserError(str(exc), "use a new --home to start over, or the same --customers/--seed") from None
    airflow_local.configure(home, source_url, warehouse_url)

    log_path = home / "logs" / f"run-{as_of.isoformat()}.log"
    # asked before the output goes to the log: inside, standard output is the log file
    interactive = console.is_terminal
    with airflow_local.output_to(log_path) as terminal:
        shown = Console(file=terminal, force_terminal=interactive, width=console.width)
        with StageProgress(shown, as_of, quiet=quiet, interactive=interactive) as watched:
            run_id, state = airflow_local.run_dag(as_of)
    try:
        with Warehouse(RunSettings.resolve().warehouse.control) as wh:
            summary = runs.run_summary(wh, run_id)
    except Exception as exc:  # noqa: BLE001 - the run's own failure is the message
        storage = _storage_error(watched.failure or exc, home, warehouse_url) or _storage_error(exc, home, warehouse_url)
        if storage is not None:
            raise storage from None
        summary = {}
    if not summary:
        states = airflow_local.task_states(run_id)
        failed = [t for t, s in states.items() if s in ("failed", "upstream_failed")]
        message = watched.failure or f"tasks failed before the run was recorded: {failed}"
        storage = _storage_error(message, home, warehouse_url)
        if storage is not None:
            raise storage
        summary = {"as_of": as_of, "status": "failed", "message": message, "warehouse": warehouse_url}
    summary["airflow_state"] = state
    summary["log"] = str(log_path)
    storage = _storage_error(summary["message"], home, warehouse_url) if summary.get("message") else None
    if storage is not None and summary.get("status") != "success":
        summary["message"], summary["hint"] = str(storage), storage.hint
    if summary.get("status") != "success" and not summary.get("hint"):
        summary["hint"] = failure_hint(summary.get("message") or "", log_path)
    if not quiet:
        _print_summary(summary, home)
    return summary


@app.command("run")
@_guard
def run(
    home: Optional[Path] = typer.Option(None, "--home", help="State folder (default ./.crm)."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="Logical date YYYY-MM-DD (default: yesterday, the latest complete day)."),
    source: Optional[str] = typer.Option(None, "--source", help="Source SQLAlchemy URL (default: the demo SQLite source)."),
    warehouse: Optional[str] = typer.Option(None, "--warehouse", help="Warehouse URL (default: duckdb:///DIR/warehouse.duckdb)."),
    customers: int = typer.Option(DEFAULT_CUSTOMERS, "--customers", help="Demo customers, when the demo source is created."),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="Demo seed, when the demo source is created."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
) -> None:
    """Run the nightly job once, in-process, for one logical date."""
    day = _ended_day(_parse_date(as_of, "--as-of") or _yesterday(), "--as-of")
    summary = run_once(_home(home), day, source, warehouse, customers, seed)
    if summary.get("status") != "success":
        raise typer.Exit(1)


@app.command("backfill")
@_guard
def backfill(
    date_from: str = typer.Option(..., "--from", help="First logical date YYYY-MM-DD."),
    date_to: str = typer.Option(..., "--to", help="Last logical date YYYY-MM-DD (inclusive)."),
    home: Optional[Path] = typer.Option(None, "--home", help="State folder (default ./.crm)."),
    source: Optional[str] = typer.Option(None, "--source", help="Source SQLAlchemy URL (default: the demo SQLite source)."),
    warehouse: Optional[str] = typer.Option(None, "--warehouse", help="Warehouse URL (default: duckdb:///DIR/warehouse.duckdb)."),
    stop_on_failure: bool = typer.Option(True, "--stop-on-failure/--keep-going", help="Stop at the first failed date."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
) -> None:
    """Run the DAG for every logical date from --from to --to, in order, and report per date."""
    first = _parse_date(date_from, "--from")
    last = _ended_day(_parse_date(date_to, "--to"), "--to")
    if last < first:
        raise UserError(f"--to {last} is before --from {first}", "swap the two dates")
    home_dir = _home(home)
    table = Table(title=f"backfill {first} → {last}")
    for col in ("as_of", "status", "gate", "extracted", "quarantined", "published rows", "message"):
        table.add_column(col)
    failed = 0
    day = first
    while day <= last:
        summary = run_once(home_dir, day, source, warehouse, quiet=True)
        ents = summary.get("entities") or []
        table.add_row(
            day.isoformat(), str(summary.get("status")), str(summary.get("gate_verdict") or "-"),
            f"{sum(int(e['extracted']) for e in ents):,}", f"{sum(int(e['quarantined']) for e in ents):,}",
            f"{sum(int(p['rows']) for p in summary.get('published') or []):,}", (summary.get("message") or "")[:80],
        )
        console.print(f"{day}: {summary.get('status')}")
        if summary.get("status") != "success":
            failed += 1
            if stop_on_failure:
                break
        day += timedelta(days=1)
    console.print(table)
    if failed:
        raise typer.Exit(1)


@app.command("serve")
@_guard
def serve(
    home: Optional[Path] = typer.Option(None, "--home", help="State folder (default ./.crm)."),
    stop: bool = typer.Option(False, "--stop", help="Stop the home's warm server after its night, if any."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
) -> None:
    """Keep the home's nights warm: load Airflow, dbt and Great Expectations once and run
    every `crm run` and `crm backfill` of this home in this process (foreground; stop it
    with Ctrl-C, SIGTERM or `crm serve --stop`)."""
    home_dir = _home(home)
    if stop:
        answer = warm_server.stop(home_dir)
        if answer is None:
            raise UserError(f"no warm server serves {home_dir}", "start one with `crm serve`")
        after = " after its night" if answer.get("busy") else ""
        console.print(f"the warm server of {home_dir} (PID {answer.get('pid')}) stops{after}")
        return
    warm_server.serve(home_dir, run_command, say=lambda line: console.print(line, highlight=False, soft_wrap=True))


app.command("bench")(bench)
app.command("status")(status)
app.command("reconcile")(reconcile)
app.command("docs")(docs)
app.command("migrate")(migrate)
app.command("report")(report)
clv_app.command("validate")(clv_validate)
app.add_typer(clv_app, name="clv")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(spark_app, name="spark")


def run_command(arguments: list[str]) -> int:
    """Run one ``crm`` command with ``arguments`` in this process and return its exit code
    (``main`` for a command of its own, the warm server for a night it is handed)."""
    # Libraries that run in this process record its command line (dbt writes it into its
    # logs and run_results.json): a password given in a --source or --warehouse URL is
    # replaced before anything runs; the options are parsed from the arguments as given.
    sys.argv = ["crm", *(redact(arg) for arg in arguments)]
    # with the extra 'spark', pyspark says on import that it does not test pandas 3; the
    # pipeline hands it Arrow tables only (crm_pipeline.spark_session)
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    try:
        app(args=arguments, prog_name="crm")
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def main() -> None:
    _end_process(run_command(sys.argv[1:]))


def _end_process(code: int) -> None:
    """End the process without tearing the interpreter down object by object.

    A night leaves Airflow, dbt and Great Expectations in memory; Python's own teardown of
    them took about 4 s after the summary was printed, and does nothing the operating
    system does not (docs/performance.md, "Fixed cost"). The exit handlers still run (dbt
    closes its connections, logging flushes), then the output is flushed and the process
    ends with the command's exit code."""
    atexit._run_exitfuncs()  # the handlers the interpreter would run, in the same order
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
