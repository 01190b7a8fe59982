"""What ``crm run`` shows while the DAG runs: each stage as it starts and ends, how far a
dbt stage is (node i of n), and retries as they happen. On a terminal it is a live
display; in a log or CI it degrades to one plain line per event, flushed at once."""

from __future__ import annotations

from datetime import date, datetime

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table

from crm_pipeline import progress

STAGES = ("extract", "dbt_staging", "clv_fit", "dbt_marts", "gate", "publish", "docs")
COLOURS = {"ok": "green", "failed": "red", "waiting": "dim"}


class StageProgress:
    """Listens to ``progress`` events for the length of a run and shows them."""

    def __init__(self, shown: Console, as_of: date, *, quiet: bool, interactive: bool):
        self.console = shown
        self.as_of = as_of
        self.quiet = quiet
        self.interactive = interactive
        #: stage -> (status, seconds, detail)
        self.state: dict[str, tuple[str, float | None, str | None]] = {}
        #: the first line of the first failure a task reported, as "stage: message"
        self.failure: str | None = None
        self.live = Live(self._render(), console=shown, transient=quiet, refresh_per_second=4) if interactive else None

    def _render(self):
        table = Table.grid(padding=(0, 2))
        table.add_row(f"[bold]crm_nightly[/] as_of {self.as_of}", "")
        for name in STAGES:
            status, seconds, detail = self.state.get(name, ("waiting", None, None))
            if status == "running":
                mark = Spinner("dots", text=f" {name}" + (f"  {detail}" if detail else ""))
            else:
                colour = COLOURS.get(status, "yellow")
                sign = "✓" if status == "ok" else "✗" if status == "failed" else "·"
                mark = f"[{colour}]{sign} {name}[/]"
            table.add_row(mark, f"{seconds:.1f}s" if seconds is not None else "")
        return table

    def _line(self, text: str) -> None:
        """One plain line, stamped with the time (a log or CI)."""
        if not self.quiet:
            self.console.print(f"{datetime.now():%H:%M:%S} {text}", highlight=False, soft_wrap=True)
            self.console.file.flush()

    def _update(self, stage: str, status: str, seconds: float | None, detail: str | None = None) -> None:
        before = self.state.get(stage, ("waiting", None, None))
        if status == "retrying":
            # a retry is shown at once and stays (above the live lines on a terminal)
            if self.live is not None:
                self.live.console.print(f"[yellow]↻ {stage}[/]: {escape(detail or '')}")
            else:
                self._line(f"{stage} retrying: {detail}")
            status = "running"
        elif self.live is None and status != before[0]:
            took = f" in {seconds:.1f}s" if seconds is not None else ""
            reason = f": {detail}" if status == "failed" and detail else ""
            self._line(f"{stage} {'started' if status == 'running' else status}{took}{reason}")
        if status == "failed" and detail and self.failure is None:
            self.failure = f"{stage}: {detail}"
        if seconds is None and before[0] == status:
            seconds = before[1]
        self.state[stage] = (status, seconds, detail if status == "running" else None)
        if self.live is not None:
            self.live.update(self._render())

    def __enter__(self):
        progress.set_listener(self._update)
        if self.live is not None:
            self.live.__enter__()
        else:
            self._line(f"crm_nightly as_of {self.as_of}")
        return self

    def __exit__(self, *exc):
        progress.set_listener(None)
        return self.live.__exit__(*exc) if self.live is not None else None
