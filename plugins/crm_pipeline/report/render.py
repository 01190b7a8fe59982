"""Writes the nightly report: ``<out>/<as_of>.html``, ``index.html`` (the latest) and the one
bundled script beside them, ``plotly.min.js`` (no network needed to view the page).

The page is a Jinja template (``templates/report.html.j2``); charts are Plotly figures
drawn by that script, tables and takeaways are plain HTML, so the page prints and reads
without scripts too. Only aggregates and short lists go in, never a row per customer.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from crm_pipeline.errors import first_line
from crm_pipeline.report import charts, data
from crm_pipeline.warehouse import Warehouse

SCRIPT = "plotly.min.js"
#: links from a report in HOME/docs/report/ to the other documents of the night
REPORT_LINKS = {"Data Docs": "../gx/index.html", "dbt docs": "../dbt/index.html"}


@dataclass
class Report:
    path: Path
    index: Path
    bytes: int
    seconds: float
    sections: list[str]


def _table(frame: pd.DataFrame | None, limit: int = 40) -> str:
    if frame is None or frame.empty:
        return ""
    shown = frame.head(limit).copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else (f"{v:.3f}" if abs(v) < 10 else f"{v:,.0f}"))
    return shown.to_html(index=False, border=0, classes="numbers", na_rep="", escape=True)


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("crm_pipeline.report", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    env.filters["table"] = _table
    return env


def _bundle(out_dir: Path) -> None:
    """The one script the page loads, written once beside the reports."""
    target = out_dir / SCRIPT
    if target.exists():
        return
    from plotly.offline import get_plotlyjs

    tmp = target.with_suffix(".tmp")
    tmp.write_text(get_plotlyjs(), encoding="utf-8")
    os.replace(tmp, target)


def write_report(wh: Warehouse, as_of: date, out_dir: Path, out_file: Path | None = None,
                 links: dict[str, str] | None = None, control: Warehouse | None = None) -> Report:
    """Build the report of ``as_of`` from the warehouse (the run record from ``control``,
    default ``wh``) and write it (atomically).

    ``out_file`` overrides the file name (``crm report --out``); otherwise the page is
    ``out_dir/<as_of>.html`` and, when ``as_of`` is the newest date reported there,
    also ``out_dir/index.html``."""
    started = time.perf_counter()
    sections = data.read(wh, as_of, control)
    rendered = []
    for section in sections:
        builder = charts.CHARTS.get(section.key)
        drawn: list[str] = []
        if builder and not section.missing:
            try:
                drawn = builder(section)
            except Exception as exc:  # noqa: BLE001 - one chart must not cost the whole page
                section.notes.append(f"The chart could not be drawn: {first_line(exc)}")
        rendered.append({"section": section, "charts": drawn})
    html = _environment().get_template("report.html.j2").render(
        as_of=as_of.isoformat(), generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        sections=rendered, script=SCRIPT, links=links or {})
    path = out_file or out_dir / f"{as_of.isoformat()}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    _bundle(path.parent)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    index = path
    if out_file is None:
        dated = sorted(p.stem for p in out_dir.glob("????-??-??.html"))
        if dated and dated[-1] == as_of.isoformat():
            index = out_dir / "index.html"
            shutil.copyfile(path, index)
    return Report(path, index, path.stat().st_size, time.perf_counter() - started, [s.key for s in sections])
