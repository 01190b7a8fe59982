"""The work of each stage of the nightly run, callable without Airflow.

The DAG in ``dags/crm_nightly.py`` only wires these functions; tests and the CLI call
them directly too. Every stage records itself in the run record (``crm_pipeline.runs``);
a failing stage marks the run failed with a one-line message before re-raising.

On a Spark warehouse the run record, raw and the quarantine live in its control file
(``crm_pipeline.spark_landing``): extraction and the CLV step work there and land what the
models read into Spark; dbt, gate 2 and the publish work on Spark.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator

from airflow.sdk.exceptions import AirflowFailException

from crm_pipeline import clv_step, clv_validation, dbt_ops, gates, runs, spark_landing
from crm_pipeline import extract as extraction
from crm_pipeline import publish as publishing
from crm_pipeline import settings as crm_settings
from crm_pipeline.connections import RunSettings
from crm_pipeline.errors import first_line, storage_problem
from crm_pipeline.extract import BatchRejected
from crm_pipeline.liveness import day_not_ended
from crm_pipeline.publish_spark import publish_spark
from crm_pipeline.gates import GateError
from crm_pipeline.gates.credit_facts import credit_facts
from crm_pipeline.report.render import REPORT_LINKS, write_report
from crm_pipeline.runs import record_success, stage
from crm_pipeline.settings import ConfigError
from crm_pipeline.warehouse import Warehouse

log = logging.getLogger(__name__)


class GateFailed(RuntimeError):
    """Gate 2 refused the audit marts; nothing was published."""


#: errors that fail a task at once instead of being retried: a refused batch, a bad
#: setting or a failed gate will not get better by trying again
NOT_RETRYABLE = (BatchRejected, ConfigError, GateError)
#: a publish that only `crm migrate` can unblock
NOT_RETRYABLE_PUBLISH = (publishing.PublishNeedsMigration,)


@contextmanager
def no_retry_for(kinds) -> Iterator[None]:
    """Turn the given errors, and storage problems (a full disk, a damaged file: trying
    again only writes more), into Airflow's fail-without-retry, keeping their message."""
    kinds = tuple(kinds)
    try:
        yield
    except kinds as exc:
        raise AirflowFailException(first_line(exc)) from exc
    except Exception as exc:
        if storage_problem(exc):
            raise AirflowFailException(first_line(exc)) from exc
        raise


@contextmanager
def control_of(wh: Warehouse) -> Iterator[Warehouse]:
    """Where the run record of ``wh`` lives: ``wh`` itself, or a Spark warehouse's control
    file (``WarehouseConfig.control``)."""
    if wh.kind != "spark":
        yield wh
        return
    with Warehouse(wh.config.control) as control:
        yield control


def as_of_from_interval(data_interval_end: datetime) -> date:
    """``as_of`` = the last day the data interval covers (its end is exclusive)."""
    end = data_interval_end
    if end.tzinfo is not None:
        end = end.astimezone(timezone.utc).replace(tzinfo=None)
    return (end - timedelta(microseconds=1)).date()


# -- the stages ----------------------------------------------------------------------


def begin(run_id: str, as_of: date) -> dict[str, str]:
    waiting = day_not_ended(as_of)
    if waiting:
        # a manual trigger with a logical date ahead: the day's data is not complete yet
        raise ConfigError(f"as_of {waiting}; trigger a day that has ended")
    settings = RunSettings.resolve()
    with Warehouse(settings.warehouse.control) as wh:
        runs.start_run(wh, run_id, as_of, settings.warehouse.display)
        wh.ensure_pii_salt()
    return {"run_id": run_id, "as_of": as_of.isoformat()}


def extract(run_id: str, as_of: date) -> list[dict]:
    settings = RunSettings.resolve()
    with stage(run_id, "extract") as details, Warehouse(settings.warehouse.control) as wh:
        stats = extraction.extract_all(
            wh, settings.source_url, as_of=as_of, run_id=run_id, gate_settings=gates.GateSettings.from_env()
        )
        if wh.kind == "postgres":
            extraction.index_raw_windows(wh)
            # fresh planner statistics for staging's window functions over raw
            for batch in stats:
                wh.execute(f"analyze raw.{batch.entity}")
        details["entities"] = {
            batch.entity: {
                "extracted": batch.rows_extracted, "duplicate": batch.rows_duplicate,
                "staged": batch.rows_staged, "quarantined": batch.rows_quarantined,
            }
            for batch in stats
        }
        # every source row accounted for: odd change times, the last days compared with the
        # source (rows the window missed read again), hard deletes on the full comparison;
        # a first load has just read every key, so its night makes no full comparison
        first_load = bool(stats) and all(batch.is_initial for batch in stats)
        accounts = extraction.account_for_source(wh, settings.source_url, as_of=as_of, run_id=run_id,
                                                 gate_settings=gates.GateSettings.from_env(),
                                                 full=False if first_load else None)
        details["source_reconciliation"] = [acc.as_dict() for acc in accounts]
        extraction.require_reconciled(accounts)
        # the waiting room, after every entity's batch: rows whose customer is known now
        # (or that an analyst admitted) land in raw as a batch of their own
        landed = extraction.admit_waiting(wh, as_of=as_of, run_id=run_id,
                                          gate_settings=gates.GateSettings.from_env())
        details["quarantine"] = {
            "landed": {name: one.as_dict() for name, one in landed.items() if one.batch_id or one.superseded},
            "states": extraction.state_counts(wh),
        }
        if settings.warehouse.kind == "spark":
            # what the models read, from the control file into Spark (spark_landing.py)
            started = time.perf_counter()
            with Warehouse(settings.warehouse) as spark_wh:
                landed_rows = spark_landing.land_raw(wh, spark_wh)
            details["landed_on_spark"] = {"rows": landed_rows, "seconds": round(time.perf_counter() - started, 3)}
    return [batch.as_dict() for batch in stats]


def gate_marts(run_id: str, as_of: date) -> dict[str, Any]:
    settings = RunSettings.resolve()
    with stage(run_id, "gate") as details, Warehouse(settings.warehouse) as wh, control_of(wh) as control:
        result = gates.gate2_audit(
            wh, as_of=as_of, docs_dir=settings.home / "docs" / "gx", settings=gates.GateSettings.from_env()
        )
        details["passed"] = result.passed
        details["docs"] = result.docs_path
        details["failures"] = result.failures
        details["warnings"] = result.warnings
        details["key_figures"] = result.key_figures
        details["credit"] = credit_facts(wh)
        for warning in result.warnings:
            log.warning("%s", warning)
        if result.docs_path:
            control.execute("update ops.pipeline_runs set docs = ? where run_id = ?", (result.docs_path, run_id))
        if not result.passed:
            control.execute("update ops.pipeline_runs set gate_verdict = 'failed' where run_id = ?", (run_id,))
            raise GateFailed("; ".join(result.failures))
        control.execute("update ops.pipeline_runs set gate_verdict = 'passed' where run_id = ?", (run_id,))
    return {"passed": True, "docs": result.docs_path}


def publish(run_id: str, as_of: date) -> dict[str, Any]:
    settings = RunSettings.resolve()
    with stage(run_id, "publish") as details, Warehouse(settings.warehouse) as wh:
        if wh.kind == "spark":
            with control_of(wh) as control, control.transaction():
                reconciliation = publishing.reconcile_or_refuse(control, run_id)
            result = publish_spark(wh, as_of, run_id)
            result.reconciliation = reconciliation
            details["version"] = result.version
        else:
            result = publishing.publish(wh, as_of, run_id)
        details.update({"tables": result.tables, "skipped_current": result.skipped_current, "attempts": result.attempts})
    return details


def report(run_id: str, as_of: date) -> dict[str, Any]:
    """Write the night's HTML report (docs/report/<as_of>.html and index.html).

    A report is for people, not for BI: when it cannot be written the run still succeeds
    and the report stage is recorded as failed with its reason (a warning), never an
    unpublish."""
    settings = RunSettings.resolve()
    started_at, started = runs.now(), time.perf_counter()
    out_dir = settings.home / "docs" / "report"
    try:
        with Warehouse(settings.warehouse) as wh, control_of(wh) as control:
            written = write_report(wh, as_of, out_dir, links=REPORT_LINKS, control=control)
        details = {"report": str(written.path), "index": str(written.index), "bytes": written.bytes}
        record_success(run_id, "report", started_at, time.perf_counter() - started, details)
        return details
    except Exception as exc:  # noqa: BLE001
        log.warning("the report was not written: %s", first_line(exc))
        with Warehouse(settings.warehouse.control) as wh:
            runs.record_stage(wh, run_id, "report", "failed", started_at, time.perf_counter() - started,
                              {"error": first_line(exc)})
        return {"error": first_line(exc)}


def finish(run_id: str, as_of: date) -> None:
    """Document the published state (dbt docs) and close the run record as a success.

    The docs are a convenience: when they cannot be generated the run still succeeds,
    and the docs stage is recorded as failed with its reason.
    """
    settings = RunSettings.resolve()
    docs_setting = crm_settings.dbt_docs()
    started_at, started = runs.now(), time.perf_counter()
    if docs_setting == "0":
        with Warehouse(settings.warehouse.control) as wh:
            runs.record_stage(wh, run_id, "docs", "skipped", started_at, 0.0, {"reason": "CRM_DBT_DOCS=0"})
            runs.finish_run(wh, run_id, "success", None, None)
        return
    try:
        index, generated = dbt_ops.generate_docs(settings.home / "docs" / "dbt", as_of.isoformat(),
                                                 force=docs_setting == "always")
        details = {"dbt_docs": index}
        if not generated:
            details["kept"] = "generated earlier from the same dbt project and target"
        record_success(run_id, "docs", started_at, time.perf_counter() - started, details)
    except Exception as exc:  # noqa: BLE001
        log.warning("dbt docs were not generated: %s", first_line(exc))
        with Warehouse(settings.warehouse.control) as wh:
            runs.record_stage(wh, run_id, "docs", "failed", started_at, time.perf_counter() - started,
                              {"error": first_line(exc)})
    with Warehouse(settings.warehouse.control) as wh:
        runs.finish_run(wh, run_id, "success", None, None)


def clv_fit(run_id: str, as_of: date) -> dict[str, Any]:
    """Fit the lifetime-value models between the intermediate and the mart layer (on a
    Spark warehouse: on the control file, reading the summary dbt built on Spark, then the
    night's fit landed into Spark)."""
    settings = RunSettings.resolve()
    with stage(run_id, "clv_fit") as details, Warehouse(settings.warehouse) as wh:
        if wh.kind != "spark":
            details.update(clv_step.run(wh, as_of, run_id))
            if clv_validation.due(as_of):
                details["validation"] = clv_validation.run(wh, as_of, run_id)
            return details
        with control_of(wh) as control:
            details.update(clv_step.run(control, as_of, run_id, source=wh))
            if clv_validation.due(as_of):
                details["validation"] = clv_validation.run(control, as_of, run_id, source=wh)
            details["landed_on_spark"] = spark_landing.land_clv(control, wh, as_of)
    return details
