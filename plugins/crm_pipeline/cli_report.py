"""``crm report``: write the HTML report of any published date, from ``published.*`` and
``ops.*`` only (what BI saw that day; current tables hold the newest date and the report
says so), to ``HOME/docs/report/<as_of>.html`` or ``--out FILE``."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Optional

import typer

from crm_pipeline.cli_common import UserError, _guard, _home, _parse_date, console, existing_warehouse, locked_warehouse
from crm_pipeline.report.render import REPORT_LINKS, write_report


@_guard
def report(
    as_of: Optional[str] = typer.Option(None, "--as-of", help="Published date YYYY-MM-DD (default: the newest)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the page to this file (the script goes beside it)."),
    home: Optional[Path] = typer.Option(None, "--home", help="State folder (default ./.crm)."),
    warehouse: Optional[str] = typer.Option(None, "--warehouse", help="Warehouse URL (default: duckdb:///DIR/warehouse.duckdb)."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
) -> None:
    """Write the night's report: one self-contained HTML page for a published date."""
    home_dir = _home(home)
    cfg = existing_warehouse(home_dir, warehouse)
    wanted = _parse_date(as_of, "--as-of")
    if out is not None and out.is_dir():
        raise UserError(f"--out {out} is a folder", "name a file, for example report.html")
    if out is not None and not out.parent.exists():
        raise UserError(f"--out {out}: folder {out.parent} does not exist", "create it or name another file")
    with locked_warehouse(home_dir, cfg) as wh:
        published = []
        if wh.table_exists("ops", "published_versions"):
            published = sorted(date.fromisoformat(str(r[0])[:10])
                               for r in wh.query("select distinct as_of from ops.published_versions"))
        if not published:
            raise UserError("nothing is published yet", "run `crm run` first")
        day = wanted or published[-1]
        if day not in published:
            raise UserError(f"{day} was never published", f"published dates run from {published[0]} to {published[-1]}")
        written = write_report(wh, day, home_dir / "docs" / "report", out_file=out,
                               links=REPORT_LINKS if out is None else {})
    console.print(f"report of {day}: {written.path} ({written.bytes / 1024:,.0f} KiB, {written.seconds:.1f} s)",
                  highlight=False)
