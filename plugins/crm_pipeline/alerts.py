"""Failure alerts and retry notices: a hook a deployment points at its alerting, logs by default.

Set ``CRM_ALERT_CALLBACK`` to an import path ``package.module:function``; the function is
called with ``(dag_id, run_id, task_id, message)`` for every failed task. Without it the
failure is logged as one line. An alert hook that itself fails never hides the original
failure. A task that will be tried again says so (attempt, wait, reason) in the log and
to whoever watches the run's progress.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from crm_pipeline import progress, settings
from crm_pipeline.connections import redact
from crm_pipeline.errors import first_line

log = logging.getLogger("crm_pipeline.alerts")


def _load(path: str):
    module, _, func = path.partition(":")
    return getattr(importlib.import_module(module), func)


def retry_notice(attempt: int, attempts: int, wait_seconds: float, reason: str) -> str:
    """One line: which attempt failed, when the next one starts and why."""
    return (f"attempt {attempt} of {attempts} failed, trying again in {wait_seconds:.0f} s or more: "
            f"{redact(reason)}")


def on_retry(context: Any) -> None:
    """A task failed and will be tried again: say so instead of waiting in silence."""
    ti = context.get("task_instance") or context.get("ti")
    exc = context.get("exception")
    task = getattr(ti, "task", None)
    attempt = int(getattr(ti, "try_number", 1) or 1)
    attempts = int(getattr(ti, "max_tries", 0) or getattr(task, "retries", 0) or 0) + 1
    delay = getattr(task, "retry_delay", None)
    wait = delay.total_seconds() if delay is not None else 0.0
    if getattr(task, "retry_exponential_backoff", False):
        wait *= 2 ** (attempt - 1)  # Airflow's backoff waits at least this long
    notice = retry_notice(attempt, attempts, wait, first_line(exc) if exc else "failed")
    task_id = getattr(ti, "task_id", "?")
    log.warning("crm retry: task %s %s", task_id, notice)
    progress.emit(task_id, "retrying", None, notice)


def on_failure(context: Any) -> None:
    ti = context.get("task_instance") or context.get("ti")
    dag_run = context.get("dag_run")
    exc = context.get("exception")
    message = redact(first_line(exc)) if exc else "failed"
    dag_id = getattr(dag_run, "dag_id", None) or getattr(ti, "dag_id", "?")
    run_id = getattr(dag_run, "run_id", "?")
    task_id = getattr(ti, "task_id", "?")
    log.error("crm alert: %s/%s task %s failed: %s", dag_id, run_id, task_id, message)
    progress.emit(task_id, "failed", None, message)
    target = settings.alert_callback()
    if target:
        try:
            _load(target)(dag_id, run_id, task_id, message)
        except Exception:  # noqa: BLE001
            log.exception("the alert callback %s failed", target)
