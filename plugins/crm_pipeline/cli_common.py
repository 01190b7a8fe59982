"""What every ``crm`` command shares: the consoles, one-line user errors, dates, the
state folder and default URLs, the warehouse opened under the state folder's lock, and
the guard that turns any error into one line plus what to do (a stack trace only with
``--debug``).
"""

from __future__ import annotations

import contextlib
import functools
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from crm_pipeline import settings, spark_session
from crm_pipeline.connections import WAREHOUSE_CONN_ID, WarehouseConfig, redact
from crm_pipeline.errors import first_line, storage_problem
from crm_pipeline.home_lock import HomeBusy, one_run_per_home
from crm_pipeline.liveness import day_not_ended
from crm_pipeline.warehouse import Warehouse

console = Console(stderr=False)
err = Console(stderr=True)


def refresh_consoles() -> None:
    """Detect the terminal behind ``console`` and ``err`` again (colours, width): they are
    made once per process, and a warm server runs each night on its caller's terminal or
    pipe (crm_pipeline.warm_server)."""
    Console.__init__(console, stderr=False)
    Console.__init__(err, stderr=True)

DEFAULT_CUSTOMERS = 5000
DEFAULT_SEED = 42


class UserError(Exception):
    """An error the user can fix; printed as one line plus a hint."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


def _yesterday() -> date:
    return datetime.now(timezone.utc).date() - timedelta(days=1)


def _ended_day(day: date, name: str) -> date:
    """A run covers a whole day: a day that has not ended (UTC) is refused."""
    waiting = day_not_ended(day)
    if waiting:
        raise UserError(f"{name} {waiting}", f"run for {_yesterday()} or earlier, or wait until {day} has ended")
    return day


def _parse_date(value: Optional[str], name: str) -> Optional[date]:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{name} {value!r} is not a date", "write it as YYYY-MM-DD, e.g. 2026-06-30") from None


def _home(home: Optional[Path]) -> Path:
    return home.resolve() if home else settings.home()


def _demo_url(home: Path) -> str:
    return f"sqlite:///{home / 'source.sqlite'}"


#: what a Spark warehouse serves so far; every other command refuses it with this line
SPARK_ONLY_FOR = "a Spark warehouse is built by `crm run` and read by `crm status`; this command needs DuckDB or PostgreSQL"


def usable_spark_dir(spark_dir: Path) -> None:
    """A one-line refusal when this process cannot use the Spark warehouse under
    ``spark_dir``: the extra is not installed, or another process holds its catalog."""
    try:
        spark_session.require_extra()
    except RuntimeError as exc:
        raise UserError(str(exc), "the default install has no Spark") from None
    if spark_session.catalog_in_use(spark_dir):
        raise UserError(f"the Spark warehouse at {spark_dir} is in use by another process "
                        "(its embedded catalog takes one process at a time)",
                        "wait until it ends (`crm status` shows the night's stage)")


def _warehouse_url(home: Path, warehouse: Optional[str]) -> str:
    return warehouse or settings.airflow_connection(WAREHOUSE_CONN_ID) or f"duckdb:///{home / 'warehouse.duckdb'}"


def warehouse_config(home: Path, warehouse: Optional[str]) -> tuple[WarehouseConfig, bool]:
    """The warehouse a command works on, and whether it exists yet (an embedded DuckDB file
    is created by the first run; a server warehouse is taken to exist)."""
    cfg = WarehouseConfig.from_url(_warehouse_url(home, warehouse))
    if cfg.kind == "spark":
        raise UserError(SPARK_ONLY_FOR, "see the README, Warehouses")
    return cfg, not (cfg.kind == "duckdb" and not cfg.duckdb_path.exists())


def existing_warehouse(home: Path, warehouse: Optional[str]) -> WarehouseConfig:
    """:func:`warehouse_config`, refusing in one line when no run has created it yet."""
    cfg, exists = warehouse_config(home, warehouse)
    if not exists:
        raise UserError(f"no warehouse yet at {cfg.duckdb_path}", "run `crm run` first, or pass --home / --warehouse")
    return cfg


@contextlib.contextmanager
def locked_warehouse(home: Path, cfg: WarehouseConfig, day: Optional[date] = None,
                     busy_hint: str = "wait until the run ends"):
    """The warehouse, opened while this command holds the state folder's lock (one run per
    home, :mod:`crm_pipeline.home_lock`); a folder in use is a one-line error."""
    try:
        with one_run_per_home(home, day or _yesterday()), Warehouse(cfg) as wh:
            yield wh
    except HomeBusy as exc:
        raise UserError(str(exc), busy_hint) from None


def _fail(exc: BaseException, debug: bool) -> None:
    if debug:
        raise exc
    hint = getattr(exc, "hint", "")
    err.print(f"[bold red]error:[/] {redact(str(exc))}")
    if hint:
        err.print(f"[dim]→ {hint}[/]")
    raise typer.Exit(1)


def _storage_error(problem: BaseException | str, home: Path, warehouse: Optional[str]) -> Optional[UserError]:
    """A full disk or a damaged file, as one line that names the place and the fix."""
    error = problem if isinstance(problem, BaseException) else RuntimeError(problem)
    kind = storage_problem(error)
    if kind is None:
        return None
    text = redact(first_line(error))
    if kind == "disk_full":
        place = home if home.exists() else home.parent
        free_mb = shutil.disk_usage(place).free / 1e6
        files = ", ".join(f"{path.relative_to(home)} ({path.stat().st_size / 1e6:.1f} MB)"
                          for path in sorted(home.glob("*")) + sorted(home.glob("airflow/*.db"))
                          if path.is_file() and path.stat().st_size > 100_000) if home.exists() else ""
        return UserError(f"the disk holding {place} is full ({free_mb:,.0f} MB free; "
                         f"{files or 'no large file of the pipeline there'}): {text}",
                         "free space on that disk (or point --home at a larger one) and run again; "
                         "nothing was published")
    target = WarehouseConfig.from_url(_warehouse_url(home, warehouse)).display
    return UserError(f"a file the pipeline reads is damaged (the warehouse is {target}): {text}",
                     "restore the damaged file from a backup, or move it away: the next run rebuilds the "
                     "warehouse from the source (history tables start again from that date)")


def _guard(func):
    """Turn known errors into one clear line; unknown ones too, unless --debug."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        debug = bool(kwargs.get("debug")) or settings.debug()
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            err.print("[red]interrupted[/]: published tables are unchanged unless the publish step had finished")
            raise typer.Exit(130)
        except UserError as exc:
            _fail(exc, debug)
        except Exception as exc:  # noqa: BLE001
            wrapped = _storage_error(exc, _home(kwargs.get("home")), kwargs.get("warehouse")) or UserError(
                f"{type(exc).__name__}: {first_line(exc)}", "run again with --debug for the full trace"
            )
            _fail(wrapped, debug)

    return wrapper
