"""The two data-quality gates of the nightly run, built on Great Expectations (GX) 1.24.

* **gate 1** (``gate1_rows``, ``gate1_batch``): the source contract of each entity, checked on
  every extracted batch before it lands in ``raw``. Row rules send offending rows to quarantine
  with a reason; batch rules (schema drift, volume collapse or spike, too much quarantine)
  refuse the whole batch. ``gate1_suspect_sql`` compiles the row rules to one SQL predicate
  that finds the rows worth checking.
* **gate 2** (``gate2_audit``): the dbt-built ``audit`` marts, checked before publish (one
  segment per customer, valid tiers, scores and grades, no personal data, volume and mix
  against what is published now), with Data Docs for every run.

The rules live in ``expectations/`` (``raw_<entity>.json``, ``audit_marts.json``) and are read
at run time, so a changed threshold there changes the gate. Where a rule is a business rule
that dbt also applies (tier shares, grades, segment names), ``audit_marts.json`` refers to the
dbt seed that holds it instead of copying it. GX is imported lazily (it takes seconds and logs
a lot) inside functions.

Gates never hand GX a SQL connection: GX 1.24 on DuckDB through SQLAlchemy loses its metrics
to pooled connections, and a table asset with a schema can silently validate a same-named
table in another schema. Tables are read through the pipeline's own ``Warehouse`` connection
with fully qualified names and validated as pandas frames, which also never opens the DuckDB
file a second time. Any expectation whose metric raised, or whose success is undetermined,
counts as a failure.

Modules: ``results`` (errors, settings, results), ``gx_runtime``, ``suites``, ``coercion``,
``rules``, ``outliers`` (amounts implausible against the recent history), ``rows``,
``suspect_sql``, ``batch``, and for gate 2 ``audit`` with
``audit_inputs``, ``audit_datasets``, ``audit_gx`` and ``key_figures`` (the night's
business numbers against the last published date).
"""

from crm_pipeline.gates.audit import gate2_audit
from crm_pipeline.gates.audit_datasets import expected_tier_counts
from crm_pipeline.gates.batch import gate1_batch
from crm_pipeline.gates.outliers import OutlierLimit, outlier_limits
from crm_pipeline.gates.results import BatchVerdict, Gate1Result, Gate2Result, GateError, GateSettings
from crm_pipeline.gates.rows import gate1_rows
from crm_pipeline.gates.suites import load_suite_file, suite_path
from crm_pipeline.gates.suspect_sql import CannotCompile, gate1_suspect_sql

__all__ = [
    "BatchVerdict", "CannotCompile", "Gate1Result", "Gate2Result", "GateError", "GateSettings", "OutlierLimit",
    "expected_tier_counts", "gate1_batch", "gate1_rows", "gate1_suspect_sql", "gate2_audit",
    "load_suite_file", "outlier_limits", "suite_path",
]
