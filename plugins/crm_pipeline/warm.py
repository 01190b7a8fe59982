"""What a process that runs the night's tasks loads once, before the first task: the
libraries every night imports (dbt, Great Expectations, cosmos and the pipeline's own
modules), kept out of Python's cyclic garbage collector afterwards.

``crm run`` calls :func:`load_and_freeze` before it runs the DAG in-process. A Celery
worker calls it when it starts (``celery_config.py``): Airflow forks each task's process
from the worker on Linux, so every task starts with the libraries loaded instead of
importing them again (docs/design.md, "Warm workers").
"""

from __future__ import annotations

import gc
import importlib
import logging
import time

from crm_pipeline.gates.gx_runtime import import_gx

log = logging.getLogger(__name__)

#: what the tasks of crm_nightly import when they run (dbt's runner, cosmos through the
#: dbt operator, the pipeline with its extractors and gates)
TASK_MODULES = ("dbt.cli.main", "crm_pipeline.dbt_ops", "crm_pipeline.pipeline")


def load_and_freeze() -> None:
    """Import what every night's tasks import and exclude the objects the imports made
    from the cyclic garbage collector (``gc.freeze``).

    They live as long as the process; without this, every full collection walks them
    again (cosmos alone collects after each dbt stage), about 1-2 s a night
    (docs/performance.md, "Fixed cost")."""
    started = time.monotonic()
    for name in TASK_MODULES:
        importlib.import_module(name)
    import_gx()
    gc.collect()
    gc.freeze()
    log.info("crm: the night's libraries are loaded (%.1f s)", time.monotonic() - started)
