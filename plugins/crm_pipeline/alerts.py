"""Failure alerts: a hook a deployment points at its alerting, logs by default.

Set ``CRM_ALERT_CALLBACK`` to an import path ``package.module:function``; the function is
called with ``(dag_id, run_id, task_id, message)`` for every failed task. Without it the
failure is logged as one line. An alert hook that itself fails never hides the original
failure.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from crm_pipeline import settings

log = logging.getLogger("crm_pipeline.alerts")


def _load(path: str):
    module, _, func = path.partition(":")
    return getattr(importlib.import_module(module), func)


def on_failure(context: Any) -> None:
    ti = context.get("task_instance") or context.get("ti")
    dag_run = context.get("dag_run")
    exc = context.get("exception")
    message = str(exc).strip().splitlines()[0] if exc else "failed"
    dag_id = getattr(dag_run, "dag_id", None) or getattr(ti, "dag_id", "?")
    run_id = getattr(dag_run, "run_id", "?")
    task_id = getattr(ti, "task_id", "?")
    log.error("crm alert: %s/%s task %s failed: %s", dag_id, run_id, task_id, message)
    target = settings.alert_callback()
    if target:
        try:
            _load(target)(dag_id, run_id, task_id, message)
        except Exception:  # noqa: BLE001
            log.exception("the alert callback %s failed", target)
