"""Celery settings for Airflow's CeleryExecutor: Airflow's own defaults, plus a worker that
loads the night's libraries once when it starts (``warm.py``).

Point Airflow at it with ``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=
crm_pipeline.celery_config.CELERY_CONFIG`` (docker/compose.yaml does). Needs the extra
``celery``.
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init

from crm_pipeline import warm

CELERY_CONFIG = dict(DEFAULT_CELERY_CONFIG)


@worker_init.connect
def _load_before_the_pool_forks(**_: object) -> None:
    """In the worker's main process, before it forks the processes that run tasks."""
    warm.load_and_freeze()
