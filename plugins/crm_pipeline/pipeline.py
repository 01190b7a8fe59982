"""The work of each stage of the nightly run, callable without Airflow.

The DAG in ``dags/crm_nightly.py`` only wires these functions; tests and the CLI call
them directly too. Every stage records itself in the run record (``crm_pipeline.runs``);
a failing stage marks the run failed with a one-line message before re-raising.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator

from crm_pipeline import progress, runs
from crm_pipeline import settings as crm_settings
from crm_pipeline.connections import RunSettings
from crm_pipeline.warehouse import Warehouse

log = logging.getLogger(__name__)


class GateFailed(RuntimeError):
    """Gate 2 refused the audit marts; nothing was published."""


def _not_retryable() -> tuple[type[BaseException], ...]:
    from crm_pipeline.extract import BatchRejected
    from crm_pipeline.gates import GateError
    from crm_pipeline.settings import ConfigError

    return (BatchRejected, ConfigError, GateError)


class _Lazy:
    def __iter__(self):
        return iter(_not_retryable())


#: errors that fail a task at once instead of being retried
NOT_RETRYABLE = _Lazy()


@contextmanager
def no_retry_for(kinds) -> Iterator[None]:
    """Turn the given errors into Airflow's fail-without-retry, keeping their message."""
    kinds = tuple(kinds)
    try:
        yield
    except kinds as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(one_line(exc)) from exc


def as_of_from_interval(data_interval_end: datetime) -> date:
    """``as_of`` = the last day the data interval covers (its end is exclusive)."""
    end = data_interval_end
    if end.tzinfo is not None:
        end = end.astimezone(timezone.utc).replace(tzinfo=None)
    return (end - timedelta(microseconds=1)).date()


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:1500]


def open_warehouse(settings: RunSettings | None = None) -> Warehouse:
    settings = settings or RunSettings.resolve()
    return Warehouse(settings.warehouse)


def record_success(run_id: str, stage: str, started_at: datetime, seconds: float, details: dict | None) -> None:
    progress.emit(stage, "ok", seconds)
    with open_warehouse() as wh:
        runs.record_stage(wh, run_id, stage, "ok", started_at, seconds, details)


def record_failure(run_id: str, stage: str, started_at: datetime, seconds: float, exc: BaseException) -> None:
    progress.emit(stage, "failed", seconds)
    try:
        with open_warehouse() as wh:
            runs.record_stage(wh, run_id, stage, "failed", started_at, seconds, {"error": one_line(exc)})
            runs.finish_run(wh, run_id, "failed", None, f"{stage}: {one_line(exc)}")
    except Exception:  # noqa: BLE001 - the original error matters more than the record
        log.exception("could not record the failure of %s", stage)


@contextmanager
def stage(run_id: str, name: str) -> Iterator[dict[str, Any]]:
    """Time a stage and record it; the body fills the yielded dict with its counts."""
    started_at = _now()
    t0 = time.perf_counter()
    details: dict[str, Any] = {}
    progress.emit(name, "running")
    try:
        yield details
    except BaseException as exc:
        record_failure(run_id, name, started_at, time.perf_counter() - t0, exc)
        raise
    record_success(run_id, name, started_at, time.perf_counter() - t0, details)


# -- the stages ----------------------------------------------------------------------


def begin(run_id: str, as_of: date) -> dict[str, str]:
    settings = RunSettings.resolve()
    with Warehouse(settings.warehouse) as wh:
        runs.start_run(wh, run_id, as_of, settings.warehouse.display)
        wh.ensure_pii_salt()
    return {"run_id": run_id, "as_of": as_of.isoformat()}


def extract(run_id: str, as_of: date) -> list[dict]:
    from crm_pipeline import extract as ex
    from crm_pipeline.gates import GateSettings

    settings = RunSettings.resolve()
    with stage(run_id, "extract") as details, Warehouse(settings.warehouse) as wh:
        stats = ex.extract_all(
            wh, settings.source_url, as_of=as_of, run_id=run_id, gate_settings=GateSettings.from_env()
        )
        if wh.kind == "postgres":
            ex.index_raw_windows(wh)
            # fresh planner statistics for staging's window functions over raw
            for s in stats:
                wh.execute(f"analyze raw.{s.entity}")
        details["entities"] = {
            s.entity: {
                "extracted": s.rows_extracted, "duplicate": s.rows_duplicate,
                "staged": s.rows_staged, "quarantined": s.rows_quarantined,
            }
            for s in stats
        }
    return [s.as_dict() for s in stats]


def gate_marts(run_id: str, as_of: date) -> dict[str, Any]:
    from crm_pipeline import gates

    settings = RunSettings.resolve()
    with stage(run_id, "gate") as details, Warehouse(settings.warehouse) as wh:
        result = gates.gate2_audit(
            wh, as_of=as_of, docs_dir=settings.home / "docs" / "gx", settings=gates.GateSettings.from_env()
        )
        details["passed"] = result.passed
        details["docs"] = result.docs_path
        details["failures"] = result.failures
        if result.docs_path:
            wh.execute("update ops.pipeline_runs set docs = ? where run_id = ?", (result.docs_path, run_id))
        if not result.passed:
            wh.execute("update ops.pipeline_runs set gate_verdict = 'failed' where run_id = ?", (run_id,))
            raise GateFailed("; ".join(result.failures))
        wh.execute("update ops.pipeline_runs set gate_verdict = 'passed' where run_id = ?", (run_id,))
    return {"passed": True, "docs": result.docs_path}


def publish(run_id: str, as_of: date) -> dict[str, Any]:
    from crm_pipeline import publish as pub

    settings = RunSettings.resolve()
    with stage(run_id, "publish") as details, Warehouse(settings.warehouse) as wh:
        result = pub.publish(wh, as_of, run_id)
        details.update({"tables": result.tables, "skipped_current": result.skipped_current, "attempts": result.attempts})
    return details


def finish(run_id: str, as_of: date) -> None:
    """Document the published state (dbt docs) and close the run record as a success.

    The docs are a convenience: when they cannot be generated the run still succeeds,
    and the docs stage is recorded as failed with its reason.
    """
    from crm_pipeline import dbt_ops

    settings = RunSettings.resolve()
    docs_setting = crm_settings.dbt_docs()
    started_at, t0 = _now(), time.perf_counter()
    if docs_setting == "0":
        with Warehouse(settings.warehouse) as wh:
            runs.record_stage(wh, run_id, "docs", "skipped", started_at, 0.0, {"reason": "CRM_DBT_DOCS=0"})
            runs.finish_run(wh, run_id, "success", None, None)
        return
    try:
        index, generated = dbt_ops.generate_docs(settings.home / "docs" / "dbt", as_of.isoformat(),
                                                 force=docs_setting == "always")
        details = {"dbt_docs": index}
        if not generated:
            details["kept"] = "generated earlier from the same dbt project and target"
        record_success(run_id, "docs", started_at, time.perf_counter() - t0, details)
    except Exception as exc:  # noqa: BLE001
        log.warning("dbt docs were not generated: %s", one_line(exc))
        with Warehouse(settings.warehouse) as wh:
            runs.record_stage(wh, run_id, "docs", "failed", started_at, time.perf_counter() - t0,
                              {"error": one_line(exc)})
    with Warehouse(settings.warehouse) as wh:
        runs.finish_run(wh, run_id, "success", None, None)


def clv_fit(run_id: str, as_of: date) -> dict[str, Any]:
    """Fit the lifetime-value models between the intermediate and the mart layer."""
    from crm_pipeline import clv_step

    settings = RunSettings.resolve()
    with stage(run_id, "clv_fit") as details, Warehouse(settings.warehouse) as wh:
        details.update(clv_step.run(wh, as_of, run_id))
    return details
