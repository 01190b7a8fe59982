"""Benchmark code, apart from the runtime package: ``crm bench`` (the nightly DAG at
scale, timed, with reference readers and targets) and the scaled PostgreSQL source that
``crm demo-data --scale`` generates inside the database."""

from crm_pipeline.bench.databases import recreate_database
from crm_pipeline.bench.figures import PHASES, BenchResult
from crm_pipeline.bench.report import render
from crm_pipeline.bench.runner import DEFAULT_AS_OF, run_bench, run_demo_bench

__all__ = ["BenchResult", "DEFAULT_AS_OF", "PHASES", "recreate_database", "render", "run_bench", "run_demo_bench"]
