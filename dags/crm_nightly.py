"""crm_nightly: extract → dbt (staging, intermediate) → CLV fit → dbt (marts) → gate → publish → report.

A table of contents only: every task calls a function of ``crm_pipeline.pipeline``.
One run per day; its data interval is that day, and ``as_of`` is the day the interval
covers ("everything known by the end of day D").
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Asset, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from crm_pipeline import settings
from crm_pipeline.alerts import on_failure, on_retry
from crm_pipeline.dbt_ops import CrmDbtBuildOperator
from crm_pipeline.publish import PUBLISHED_TABLES

PUBLISHED_ASSETS = [Asset(f"crm://published/{t.name}") for t in PUBLISHED_TABLES]


@dag(
    dag_id="crm_nightly",
    # A data-interval timetable: the run for day D covers [D 00:00, D+1 00:00) UTC and
    # starts once the day is over (Airflow 3's cron default would give zero-length intervals).
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2023, 7, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 1,
        "retry_delay": settings.retry_delay() * 3,
        "retry_exponential_backoff": True,
        "on_failure_callback": on_failure,
        "on_retry_callback": on_retry,
    },
    tags=["crm"],
    doc_md=__doc__,
)
def crm_nightly():
    @task(retries=0)
    def begin(*, dag_run=None, data_interval_end=None) -> dict:
        from crm_pipeline import pipeline

        return pipeline.begin(dag_run.run_id, pipeline.as_of_from_interval(data_interval_end))

    @task(retries=settings.extract_retries(), retry_delay=settings.retry_delay())
    def extract(run: dict) -> list:
        from datetime import date

        from crm_pipeline import pipeline

        # a refused batch or a bad setting will not get better by retrying; a source
        # that dropped the connection might
        with pipeline.no_retry_for(pipeline.NOT_RETRYABLE):
            return pipeline.extract(run["run_id"], date.fromisoformat(run["as_of"]))

    @task
    def clv_fit(run: dict) -> dict:
        from datetime import date

        from crm_pipeline import pipeline

        with pipeline.no_retry_for(()):
            return pipeline.clv_fit(run["run_id"], date.fromisoformat(run["as_of"]))

    @task(retries=0)
    def gate_marts(run: dict) -> dict:
        from datetime import date

        from crm_pipeline import pipeline

        return pipeline.gate_marts(run["run_id"], date.fromisoformat(run["as_of"]))

    @task(retries=2, outlets=PUBLISHED_ASSETS)
    def publish(run: dict) -> dict:
        from datetime import date

        from crm_pipeline import pipeline

        # a published table of another shape waits for `crm migrate`, not for a retry
        with pipeline.no_retry_for(pipeline.NOT_RETRYABLE_PUBLISH):
            return pipeline.publish(run["run_id"], date.fromisoformat(run["as_of"]))

    @task(retries=0)
    def report(run: dict) -> dict:
        from datetime import date

        from crm_pipeline import pipeline

        return pipeline.report(run["run_id"], date.fromisoformat(run["as_of"]))

    @task(retries=0)
    def finish(run: dict) -> None:
        from datetime import date

        from crm_pipeline import pipeline

        pipeline.finish(run["run_id"], date.fromisoformat(run["as_of"]))

    as_of = "{{ ti.xcom_pull(task_ids='begin')['as_of'] }}"
    run = begin()
    dbt_staging = CrmDbtBuildOperator(task_id="dbt_staging", stage="dbt_staging", as_of=as_of, retries=0)
    dbt_marts = CrmDbtBuildOperator(task_id="dbt_marts", stage="dbt_marts", as_of=as_of, retries=0)

    extracted = extract(run)
    extracted >> dbt_staging
    fitted = clv_fit(run)
    dbt_staging >> fitted >> dbt_marts
    gated = gate_marts(run)
    dbt_marts >> gated
    published = publish(run)
    gated >> published
    published >> report(run) >> finish(run)


crm_nightly()
