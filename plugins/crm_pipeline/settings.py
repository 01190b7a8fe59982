"""Every setting the pipeline reads from the environment, in one place, typed, with its default.

Each ``CRM_*`` variable is declared once in ``VARIABLES`` (default and what it changes);
the README's settings table is checked against it. Values are read when asked for, not
at import, so a run or a test may set them after the package is imported. The only
exceptions are the two folders below, which locate the project's files.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path


class ConfigError(ValueError):
    """A setting is missing or malformed; the message says what to set."""


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    changes: str


VARIABLES: dict[str, Variable] = {v.name: v for v in (
    Variable("CRM_HOME", ".crm", "the state folder: demo source, DuckDB warehouse, logs, docs"),
    Variable("CRM_DEBUG", "0", "1: errors show the full trace instead of one line"),
    Variable("CRM_DBT_PROJECT_DIR", "dbt_project/", "the dbt project the pipeline builds"),
    Variable("CRM_EXPECTATIONS_DIR", "expectations/", "the Great Expectations suites of gates 1 and 2"),
    Variable("CRM_EXTRACT_OVERLAP_MINUTES", "120", "how far a night's window reaches back before the watermark"),
    Variable("CRM_EXTRACT_CHUNK_ROWS", "200000", "rows per chunk read from the source"),
    Variable("CRM_EXTRACT_READER", "auto", "source reader: auto, pushdown, duckdb, connectorx or sqlalchemy"),
    Variable("CRM_EXTRACT_DUCKDB_MEMORY", "1GB", "memory of the in-process DuckDB that reads a PostgreSQL source"),
    Variable("CRM_EXTRACT_RETRIES", "3", "times the extract task is tried again when the source fails"),
    Variable("CRM_RECONCILE_DAYS", "7", "days of changes compared row by row with the source every night (0 = off)"),
    Variable("CRM_RECONCILE_FULL_EVERY_DAYS", "7",
             "every N-th night compares every key with the source and records hard deletes (0 = only `crm reconcile`)"),
    Variable("CRM_RETRY_DELAY_SECONDS", "10", "first wait before a task is tried again (doubling each time)"),
    Variable("CRM_DUCKDB_MEMORY_LIMIT", "512MB", "DuckDB warehouse memory while extraction writes it"),
    Variable("CRM_DBT_DUCKDB_MEMORY_LIMIT", "2500MB", "DuckDB memory for dbt's models (read by dbt's profile)"),
    Variable("CRM_DBT_THREADS", "1", "models dbt builds at once on DuckDB (read by dbt's profile)"),
    Variable("CRM_PG_WORK_MEM", "256MB", "PostgreSQL work_mem of dbt's sessions"),
    Variable("CRM_PII_SALT", "(random, kept)", "salt of the hashed personal fields, set once on first use"),
    Variable("CRM_GATE_VOLUME_FACTOR", "10", "gate 1: a batch smaller or larger than this factor of the recent median stops"),
    Variable("CRM_GATE_MAX_QUARANTINE_SHARE", "0.2", "gate 1: a batch with a larger quarantined share stops"),
    Variable("CRM_GATE_OUTLIER_FACTOR", "100", "gate 1: an amount above this multiple of the p99 of its column's recent amounts is quarantined (0: off)"),
    Variable("CRM_GATE_OUTLIER_HISTORY_DAYS", "90", "gate 1: days of raw history the outlier rule's p99 is taken over"),
    Variable("CRM_GATE_OUTLIER_MIN_ROWS", "100", "gate 1: fewest recent non-zero amounts a column needs before it has an outlier limit"),
    Variable("CRM_GATE_MAX_SEGMENT_DROP_SHARE", "0.2", "gate 2: largest drop of segmented customers vs published"),
    Variable("CRM_GATE_MAX_SEGMENT_MIX_SHIFT", "0.5", "gate 2: largest change of any segment's share vs published"),
    Variable("CRM_GATE_FAIL_ON_CLV", "false", "gate 2: CLV expectations fail the gate instead of warning"),
    Variable("CRM_CLV_TIME_UNIT", "weeks", "time unit of the BG/NBD fit: weeks or days"),
    Variable("CRM_CLV_ANNUAL_DISCOUNT_RATE", "0.10", "annual discount rate of the 12-month CLV"),
    Variable("CRM_CLV_MIN_REPEAT_BUYERS", "30", "fewest repeat buyers the CLV fit needs"),
    Variable("CRM_CLV_VALIDATE_DAY", "1", "day of the month whose night checks the CLV model on a holdout (0: never)"),
    Variable("CRM_CLV_HOLDOUT_WEEKS", "26", "weeks held out when the CLV model is checked"),
    Variable("CRM_PUBLISH_LOCK_TIMEOUT_MS", "5000", "one wait for the publish lock, in milliseconds"),
    Variable("CRM_PUBLISH_MAX_WAIT_SECONDS", "1800", "longest total wait for the publish lock"),
    Variable("CRM_DBT_DOCS", "1", "dbt docs after publish: 1 when the project changed, always, or 0"),
    Variable("CRM_DBT_UNIT_TESTS", "0", "1: the dbt stages also run dbt's unit tests"),
    Variable("CRM_DBT_FULL_CHECK_DAYS", "7", "days between nights that also run the intermediate models' data tests (and when the dbt project changed); 0: every night"),
    Variable("CRM_ALERT_CALLBACK", "", "package.module:function called with (dag_id, run_id, task_id, message) on failure"),
    Variable("CRM_FAULT_INJECT", "", "tests only: stage:point where a fault is injected"),
    Variable("CRM_FAULT_MARKER", "$CRM_HOME/.fault-…", "tests only: file that marks an injected fault as fired"),
)}

_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off", ""}

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAGS_DIR = PROJECT_ROOT / "dags"


def raw(name: str) -> str:
    """The variable's value as set, stripped ("" when unset)."""
    if name not in VARIABLES and not name.startswith("AIRFLOW_CONN_"):
        raise KeyError(f"{name} is not a declared setting")
    return os.environ.get(name, "").strip()


def _number(name: str, default: float, *, integer: bool = False, minimum: float = 0.0) -> float:
    value = raw(name).replace("_", "")
    if not value:
        return default
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{name}={value!r} is not {kind}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(f"{name}={value!r} is not a finite number")
    if number < minimum:
        raise ConfigError(f"{name}={value!r} must be at least {minimum:g}")
    return number


def _boolean(name: str, default: bool) -> bool:
    value = raw(name).lower()
    if not value:
        return default
    if value not in _TRUE | _FALSE:
        raise ConfigError(f"{name}={value!r} is not a boolean (use true or false)")
    return value in _TRUE


def _size(name: str, default: str, pattern: str, example: str) -> str:
    value = raw(name) or default
    if not re.fullmatch(pattern, value, flags=re.IGNORECASE):
        raise ConfigError(f"{name}={value!r}: use a size such as {example}")
    return value


# -- places --------------------------------------------------------------------------


def home() -> Path:
    return Path(raw("CRM_HOME") or VARIABLES["CRM_HOME"].default).resolve()


def debug() -> bool:
    return raw("CRM_DEBUG") == "1"


DBT_PROJECT_DIR = Path(os.environ.get("CRM_DBT_PROJECT_DIR") or PROJECT_ROOT / "dbt_project")
EXPECTATIONS_DIR = Path(os.environ.get("CRM_EXPECTATIONS_DIR") or PROJECT_ROOT / "expectations")
DBT_SEEDS_DIR = DBT_PROJECT_DIR / "seeds"


def airflow_connection(conn_id: str) -> str:
    """``AIRFLOW_CONN_<ID>`` as set ("" when unset): a URI or JSON (see ``connections``)."""
    return raw(f"AIRFLOW_CONN_{conn_id.upper()}")


# -- extraction ----------------------------------------------------------------------

READER_CHOICES = ("auto", "pushdown", "duckdb", "connectorx", "sqlalchemy")


def extract_overlap() -> timedelta:
    return timedelta(minutes=_number("CRM_EXTRACT_OVERLAP_MINUTES", 120.0))


def extract_chunk_rows() -> int:
    return int(_number("CRM_EXTRACT_CHUNK_ROWS", 200_000, integer=True, minimum=1))


def extract_reader() -> str:
    value = raw("CRM_EXTRACT_READER").lower() or "auto"
    if value not in READER_CHOICES:
        raise ConfigError(f"CRM_EXTRACT_READER={value!r}: use {', '.join(READER_CHOICES)}")
    return value


def extract_retries() -> int:
    return int(_number("CRM_EXTRACT_RETRIES", 3, integer=True))


def reconcile_days() -> int:
    return int(_number("CRM_RECONCILE_DAYS", 7, integer=True))


def reconcile_full_every_days() -> int:
    return int(_number("CRM_RECONCILE_FULL_EVERY_DAYS", 7, integer=True))


def retry_delay() -> timedelta:
    return timedelta(seconds=_number("CRM_RETRY_DELAY_SECONDS", 10.0))


_DUCKDB_SIZE = r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)"


def extract_duckdb_memory() -> str:
    return _size("CRM_EXTRACT_DUCKDB_MEMORY", "1GB", _DUCKDB_SIZE, "1GB")


def duckdb_memory_limit() -> str:
    return _size("CRM_DUCKDB_MEMORY_LIMIT", "512MB", _DUCKDB_SIZE, "512MB or 2GB")


def pg_work_mem() -> tuple[str, bool]:
    """PostgreSQL ``work_mem`` for dbt's sessions and whether the user set it."""
    value = _size("CRM_PG_WORK_MEM", "256MB", r"\d+\s*(kB|MB|GB)", "256MB or 1GB")
    return value.replace(" ", ""), bool(raw("CRM_PG_WORK_MEM"))


def pgoptions() -> str:
    """libpq's own ``PGOPTIONS`` as the user set it."""
    return os.environ.get("PGOPTIONS", "").strip()


def pii_salt() -> str:
    return raw("CRM_PII_SALT")


# -- gates ---------------------------------------------------------------------------


def gate_values() -> dict:
    """The gate thresholds that are set in the environment (unset ones keep their default)."""
    values: dict = {}
    for field, name in (("volume_factor", "CRM_GATE_VOLUME_FACTOR"),
                        ("max_quarantine_share", "CRM_GATE_MAX_QUARANTINE_SHARE"),
                        ("max_segment_drop_share", "CRM_GATE_MAX_SEGMENT_DROP_SHARE"),
                        ("max_segment_mix_shift", "CRM_GATE_MAX_SEGMENT_MIX_SHIFT"),
                        ("outlier_factor", "CRM_GATE_OUTLIER_FACTOR"),
                        ("outlier_history_days", "CRM_GATE_OUTLIER_HISTORY_DAYS")):
        if raw(name):
            values[field] = _number(name, 0.0)
    if raw("CRM_GATE_OUTLIER_MIN_ROWS"):
        values["outlier_min_rows"] = int(_number("CRM_GATE_OUTLIER_MIN_ROWS", 100, integer=True, minimum=1))
    if raw("CRM_GATE_FAIL_ON_CLV"):
        values["fail_on_clv"] = _boolean("CRM_GATE_FAIL_ON_CLV", False)
    return values


# -- lifetime value ------------------------------------------------------------------


def clv_time_unit(units) -> str:
    unit = raw("CRM_CLV_TIME_UNIT").lower() or "weeks"
    if unit not in units:
        raise ConfigError(f"CRM_CLV_TIME_UNIT={unit!r} is not a time unit (use weeks or days)")
    return unit


def clv_annual_discount_rate() -> float:
    rate = _number("CRM_CLV_ANNUAL_DISCOUNT_RATE", 0.10)
    if rate >= 10.0:
        raise ConfigError(f"CRM_CLV_ANNUAL_DISCOUNT_RATE={raw('CRM_CLV_ANNUAL_DISCOUNT_RATE')!r} "
                          "must be a rate between 0 and 10 (0.10 = 10%)")
    return rate


def clv_min_repeat_buyers() -> int:
    return int(_number("CRM_CLV_MIN_REPEAT_BUYERS", 30, integer=True, minimum=1))


def clv_validate_day() -> int:
    day = int(_number("CRM_CLV_VALIDATE_DAY", 1, integer=True))
    if day > 31:
        raise ConfigError(f"CRM_CLV_VALIDATE_DAY={day} is not a day of the month (1-31, or 0 for never)")
    return day


def clv_holdout_weeks() -> int:
    return int(_number("CRM_CLV_HOLDOUT_WEEKS", 26, integer=True, minimum=1))


# -- publish, docs, alerts -----------------------------------------------------------


def publish_lock_timeout_ms() -> int:
    return int(_number("CRM_PUBLISH_LOCK_TIMEOUT_MS", 5000, integer=True))


def publish_max_wait_seconds() -> float:
    return _number("CRM_PUBLISH_MAX_WAIT_SECONDS", 1800.0)


def dbt_docs() -> str:
    """When to write dbt docs after a publish: "1" (when the project changed), "always", "0"."""
    value = raw("CRM_DBT_DOCS").lower() or "1"
    if value not in ("0", "1", "always"):
        raise ConfigError(f"CRM_DBT_DOCS={value!r}: use 1, always or 0")
    return value


def dbt_unit_tests() -> bool:
    return raw("CRM_DBT_UNIT_TESTS") == "1"


def dbt_full_check_days() -> int:
    return int(_number("CRM_DBT_FULL_CHECK_DAYS", 7, integer=True))


def dbt_log_path() -> str:
    """dbt's own ``DBT_LOG_PATH``, "" when unset: where dbt writes its debug log file. Unset,
    a night's dbt stage would write it into its temporary copy of the project, deleted when
    the stage ends, so the night does not write it (dbt_ops.py)."""
    return os.environ.get("DBT_LOG_PATH", "").strip()


def alert_callback() -> str:
    return raw("CRM_ALERT_CALLBACK")


def fault_inject() -> str:
    """Test hook: where a fault is injected (``stage:point[:detail]``), "" for none."""
    return raw("CRM_FAULT_INJECT")


def fault_marker(default_name: str) -> Path:
    """Test hook: the file that marks a one-shot fault as fired."""
    import tempfile

    marker = raw("CRM_FAULT_MARKER")
    if marker:
        return Path(marker)
    return Path(raw("CRM_HOME") or tempfile.gettempdir()) / default_name
