"""dbt inside Airflow: a cosmos operator that builds one layer group of the project.

The run builds dbt in two stages (staging + intermediate, then marts) because the CLV
fit sits between them. Each stage is one ``dbt build`` through astronomer-cosmos's
local operator (dbt runs in the worker process, tests run right after their model);
the warehouse target and its credentials are resolved from the ``crm_warehouse``
connection when the task runs, passed to dbt only as environment variables (the password
under dbt's ``DBT_ENV_SECRET_`` prefix, which dbt scrubs from logs and artifacts).
A failing model or test ends the task with one line per failed node.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from cosmos import settings as cosmos_settings
from cosmos.config import ProfileConfig
from cosmos.fs import safe_copy
from cosmos.dbt.project import get_partial_parse_path
from cosmos.operators.local import DbtBuildLocalOperator

from crm_pipeline import dbt_checks, dbt_seeds, docs_site, progress, runs, settings
from crm_pipeline.connections import RunSettings
from crm_pipeline.file_digest import files_md5
from crm_pipeline.publish import PUBLISHED_TABLES
from crm_pipeline.settings import DBT_PROJECT_DIR
from crm_pipeline.warehouse import Warehouse

#: dbt selectors of the two stages of the nightly build: seeds, staging and the
#: intermediate models the marts do not feed, then the marts and everything downstream
SEED_SELECTOR = "resource_type:seed"
STAGE_SELECT = {
    "dbt_staging": [SEED_SELECTOR, "path:models/staging", "path:models/intermediate"],
    "dbt_marts": ["path:models/marts+"],
}
STAGE_EXCLUDE = {
    "dbt_staging": ["path:models/marts+"],
    "dbt_marts": [],
}
#: the stage that ends a night's dbt build
LAST_STAGE = "dbt_marts"
#: dbt's global flags for every night (``execute`` adds the log file's)
LOCAL_GLOBAL_FLAGS = ["--no-write-json"]


def stage_selection(stage: str, load_seeds: bool) -> tuple[list[str], list[str]]:
    """The ``--select`` and ``--exclude`` of a stage; without the seeds on a night that does
    not load them (dbt_seeds.py)."""
    return [s for s in STAGE_SELECT[stage] if load_seeds or s != SEED_SELECTOR], STAGE_EXCLUDE[stage]


def stage_flags() -> list[str]:
    """How a stage takes its tests, and without dbt's unit tests.

    The path selectors take the tests declared in their folders; a seed's own tests come
    with the seed (dbt's default, "eager"); a test between a staging model and a mart is a
    child of the mart, so `path:models/marts+` moves it to the marts. tests/test_dbt_stages.py
    checks the outcome for every node of the project. ("buildable", used before, chose the
    same nodes but walked every ancestor of the selection, about 2 s a night in a long-lived
    process: docs/performance.md, "Fewer nodes".) Unit tests check SQL logic, not data: CI
    runs them (tests/test_dbt_unit.py), the night does not unless CRM_DBT_UNIT_TESTS=1."""
    flags = ["--indirect-selection", "eager"]
    if not settings.dbt_unit_tests():
        flags += ["--exclude-resource-type", "unit_test"]
    return flags


@contextlib.contextmanager
def dbt_environment(env: dict[str, str]) -> Iterator[None]:
    """The variables profiles.yml reads, set for a dbt invocation in this process and put
    back afterwards."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def summarise_results(result: Any) -> tuple[dict[str, int], list[str]]:
    """Counts per status and one line per failed node, from a dbtRunnerResult."""
    counts: dict[str, int] = {}
    failures: list[str] = []
    run = getattr(result, "result", None)
    for node_result in getattr(run, "results", None) or []:
        status = str(getattr(node_result, "status", "unknown")).lower().split(".")[-1]
        counts[status] = counts.get(status, 0) + 1
        if status in ("error", "fail", "runtime error"):
            node = node_result.node
            where = f"{node.resource_type} {getattr(node, 'schema', '')}.{node.name}".replace(" .", " ")
            failures.append(f"{where}: {_first_cause(node_result.message) or status}")
    return counts, failures


def _first_cause(message: str | None) -> str:
    """The line of a dbt node's message that says what went wrong: dbt opens a model's
    error with "Runtime Error in model X (path)", and the database's words follow."""
    lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
    if len(lines) > 1 and re.match(r"^\w+ Error in \w+ ", lines[0]):
        return lines[1]
    return lines[0] if lines else ""


def node_progress(stage: str) -> Callable[[Any], None]:
    """A dbt event callback that reports, as each node starts, how far the stage is
    ("node 12 of 85"), for the live display of ``crm run``."""

    def on_event(event: Any) -> None:
        if event.info.name == "LogStartLine":
            progress.emit(stage, "running", None, f"node {event.data.index} of {event.data.total}")

    return on_event


def release_warehouse_file() -> None:
    """Close the DuckDB database dbt's DuckDB adapter keeps open after an invocation.

    The adapter holds it in a class attribute until the process ends, and with it the
    warehouse file's lock: a process that lives on after the night (a warm server,
    docs/design.md "Warm nights") would keep BI and ``crm status`` out of the file. Only
    looked up when dbt has loaded that adapter."""
    adapter = sys.modules.get("dbt.adapters.duckdb.connections")
    manager = getattr(adapter, "DuckDBConnectionManager", None)
    if manager is None or manager._ENV is None:
        return
    with contextlib.suppress(Exception):
        manager._ENV.close()
    manager.close_all_connections()


class DbtStageError(RuntimeError):
    """dbt reported failed models or tests; the message lists them."""


def macros_version(project_dir: Path = DBT_PROJECT_DIR) -> str:
    """md5 of the project's macro files (paths and contents), passed to dbt as var
    ``macros_version``: part of the credit snapshot's fingerprint, since dbt's graph gives
    checksums for models and seeds but not for macros."""
    root = Path(project_dir) / "macros"
    return files_md5(root, root.rglob("*.sql"))


def _node_seconds(result: Any, types: tuple[str, ...]) -> dict[str, float]:
    """Seconds per node of a dbtRunnerResult whose resource type is one of ``types``,
    slowest first."""
    run = getattr(result, "result", None)
    seconds: dict[str, float] = {}
    for node_result in getattr(run, "results", None) or []:
        node = getattr(node_result, "node", None)
        if str(getattr(node, "resource_type", "")).split(".")[-1].lower() in types:
            seconds[node.name] = round(float(getattr(node_result, "execution_time", 0.0) or 0.0), 3)
    return dict(sorted(seconds.items(), key=lambda kv: -kv[1]))


def model_seconds(result: Any) -> dict[str, float]:
    """Seconds per model (and seed) of a dbtRunnerResult, slowest first: kept with the
    stage's record so a slow night (or ``crm bench``) names the models behind it."""
    return _node_seconds(result, ("model", "seed"))


def test_seconds(result: Any, slowest: int = 10) -> dict[str, Any]:
    """The data tests of a dbtRunnerResult: how many ran, their seconds in all, and the
    slowest ``slowest`` of them by name (a stage's time is its models' plus its tests')."""
    seconds = _node_seconds(result, ("test",))
    top = list(seconds.items())[:slowest]
    return {"n": len(seconds), "seconds": round(sum(seconds.values()), 3), "slowest": dict(top)}


class CrmDbtBuildOperator(DbtBuildLocalOperator):
    """``dbt build`` of one stage with the warehouse target resolved at run time.

    The run date reaches dbt as the environment variable CRM_AS_OF (macro crm_as_of), not
    as ``--vars``: dbt parses the whole project again whenever its vars change, and with
    the same vars every night both stages reuse the last parse, kept in cosmos's cache
    folder (about 10 s less per stage)."""

    template_fields = (*DbtBuildLocalOperator.template_fields, "as_of")

    def __init__(self, *, stage: str, as_of: str = "", **kwargs: Any) -> None:
        self.as_of = as_of
        kwargs.setdefault("project_dir", str(DBT_PROJECT_DIR))
        kwargs.setdefault(
            "profile_config",
            ProfileConfig(
                profile_name="crm", target_name="duckdb", profiles_yml_filepath=DBT_PROJECT_DIR / "profiles.yml"
            ),
        )
        select, exclude = stage_selection(stage, load_seeds=True)
        kwargs.setdefault("select", select)
        if exclude:
            kwargs.setdefault("exclude", exclude)
        kwargs.setdefault("install_deps", False)
        kwargs.setdefault("dbt_cmd_flags", stage_flags())
        kwargs.setdefault("emit_datasets", False)
        # dbt's manifest.json and run_results.json are not written: the night reads the
        # results from the runner in this process, and writing the manifest twice per
        # invocation cost about 2.5 s a stage (docs/performance.md, "Fixed cost")
        kwargs.setdefault("dbt_cmd_global_flags", LOCAL_GLOBAL_FLAGS)
        super().__init__(**kwargs)
        self.stage = stage
        self._counts: dict[str, Any] = {}

    def get_env(self, context: Any) -> dict:
        env = dict(super().get_env(context))
        env.update(RunSettings.resolve().warehouse.dbt_env())
        if self.as_of:
            env["CRM_AS_OF"] = str(self.as_of)
        return env

    def handle_exception_dbt_runner(self, result: Any) -> None:
        self._counts, failures = summarise_results(result)
        self._counts["model_seconds"] = model_seconds(result)
        self._counts["test_seconds"] = test_seconds(result)
        if failures or not getattr(result, "success", False):
            if not failures:
                exc = getattr(result, "exception", None)
                failures = [str(exc).strip().splitlines()[0] if exc else "dbt did not complete"]
            raise DbtStageError(f"{self.stage}: " + " | ".join(failures[:10]))

    def execute(self, context: Any, **kwargs: Any) -> None:
        target = RunSettings.resolve().warehouse.dbt_env()["CRM_DBT_TARGET"]
        self.profile_config = ProfileConfig(
            profile_name="crm", target_name=target, profiles_yml_filepath=DBT_PROJECT_DIR / "profiles.yml"
        )
        self.vars = {**(self.vars or {}), "macros_version": macros_version()}
        # dbt's debug log file only where someone reads it: without DBT_LOG_PATH it would go
        # to the stage's temporary project copy and be deleted with it, after costing about
        # a second a night in formatting (docs/performance.md, "Fewer nodes")
        log_file = [] if settings.dbt_log_path() else ["--log-level-file", "none"]
        self.dbt_cmd_global_flags = [*LOCAL_GLOBAL_FLAGS, *log_file]
        if self.cache_dir is None and self.partial_parse:
            # one parse cache for both stages (the same project and vars)
            self.cache_dir = Path(cosmos_settings.cache_dir) / "crm_nightly"
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        # set when the task runs: the parsed DAG carries no callable
        self._dbt_runner_callbacks = [node_progress(self.stage)]
        with runs.stage(context["dag_run"].run_id, self.stage) as details:
            seeds = self._seed_plan(target)
            if seeds is not None:
                details["seeds"] = "loaded" if seeds else "current, not loaded again"
            tests = self._test_plan(target)
            details["intermediate_tests"] = f"{'run' if tests.run else 'not run'}: {tests.why}"
            try:
                super().execute(context, **kwargs)
            except BaseException:
                if seeds:
                    with contextlib.suppress(Exception), Warehouse(RunSettings.resolve().warehouse) as wh:
                        dbt_seeds.forget(wh)
                raise
            finally:
                details.update(self._counts)
                release_warehouse_file()
            if seeds:
                with Warehouse(RunSettings.resolve().warehouse) as wh:
                    dbt_seeds.record_loaded(wh, self._seed_fingerprint, target)
            if tests.run and self.stage == LAST_STAGE and target != "spark":
                with Warehouse(RunSettings.resolve().warehouse) as wh:
                    dbt_checks.record(wh, self._project_fingerprint)

    def _update_partial_parse_cache(self, tmp_dir_path: Path) -> None:
        """Keep dbt's parse for the next stage and night: cosmos copies the parse file and
        the manifest.json beside it, which ``--no-write-json`` does not write."""
        if self.cache_dir is None:
            return
        parsed = get_partial_parse_path(tmp_dir_path)
        if parsed.exists():
            cached = get_partial_parse_path(self.cache_dir)
            cached.parent.mkdir(parents=True, exist_ok=True)
            safe_copy(parsed, cached)

    def _test_plan(self, target: str) -> dbt_checks.TestPlan:
        """Whether this night runs the intermediate models' data tests (dbt_checks.py); when
        not, they leave the stage's selection. A night's two stages see the same plan: the
        last stage records the check."""
        base = stage_selection(self.stage, load_seeds=True)[1]
        self.exclude = list(base)
        if target == "spark":
            # like the seeds' state, the record needs a delete, which Spark's Parquet tables do not take
            return dbt_checks.TestPlan(True, "every night on Spark")
        self._project_fingerprint = project_fingerprint(DBT_PROJECT_DIR, target)
        with Warehouse(RunSettings.resolve().warehouse) as wh:
            plan = dbt_checks.plan(wh, self._project_fingerprint, settings.dbt_full_check_days())
        if not plan.run:
            self.exclude = [*base, dbt_checks.INTERMEDIATE_TESTS]
        return plan

    def _seed_plan(self, target: str) -> bool | None:
        """For the stage that builds the seeds: True when this night loads them, False when
        the warehouse already holds them (the seeds leave the selection); None otherwise."""
        if SEED_SELECTOR not in STAGE_SELECT[self.stage] or target == "spark":
            # on Spark the seeds load every night: its Parquet tables take no delete, which
            # recording their state needs (dbt_seeds.py)
            return None
        self._seed_fingerprint = dbt_seeds.fingerprint(target)
        with Warehouse(RunSettings.resolve().warehouse) as wh:
            current = dbt_seeds.seeds_current(wh, self._seed_fingerprint)
        self.select = stage_selection(self.stage, load_seeds=not current)[0]
        return not current


#: what the dbt docs in a docs folder were generated from (see ``generate_docs``)
DOCS_FINGERPRINT_FILE = ".crm-docs-fingerprint"


def project_fingerprint(project_dir: Path, target: str) -> str:
    """md5 of the dbt project as dbt docs show it: every file of it (models, macros,
    seeds, tests, dbt_project.yml, profiles.yml) except dbt's own output, and the target."""
    root = Path(project_dir)
    own = [path for path in root.rglob("*") if path.relative_to(root).parts[0] not in ("target", "logs", "dbt_packages")
           and not path.name.startswith(".")]
    return files_md5(root, own, f"target={target}")


def docs_are_current(target_dir: Path, fingerprint: str) -> bool:
    """Whether ``target_dir`` holds docs generated from a project with ``fingerprint``."""
    target_dir = Path(target_dir)
    marker = target_dir / DOCS_FINGERPRINT_FILE
    return ((target_dir / "index.html").exists() and (target_dir / "catalog.json").exists()
            and marker.exists() and marker.read_text().strip() == fingerprint)


def generate_docs(target_dir, as_of: str, *, force: bool = False) -> tuple[str, bool]:
    """``dbt docs generate`` into ``target_dir``; returns (the index.html path, whether it
    was generated). dbt docs describe the project (models, columns, lineage, tests) and
    the relations' columns, which change with the project, not with the night's data:
    docs generated from the same project and target are kept unless ``force``."""
    from dbt.cli.main import dbtRunner  # dbt's runner is loaded when docs are written, not when the DAG is parsed

    env = RunSettings.resolve().warehouse.dbt_env()
    fingerprint = project_fingerprint(DBT_PROJECT_DIR, env["CRM_DBT_TARGET"])
    if not force and docs_are_current(Path(target_dir), fingerprint):
        return str(Path(target_dir) / "index.html"), False
    with dbt_environment(env):
        result = dbtRunner().invoke([
            "docs", "generate", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
            "--target", env["CRM_DBT_TARGET"], "--target-path", str(target_dir),
            "--log-path", str(Path(target_dir) / "logs"), "--vars", f"{{as_of: '{as_of}'}}", "--quiet",
        ])
    release_warehouse_file()
    if not result.success:
        raise DbtStageError(f"dbt docs generate failed: {result.exception or 'see the dbt log'}")
    # the published marts under their published names, and the data inside the page so
    # it opens from disk (docs_site.py)
    docs_site.publish_names(Path(target_dir), {table.name for table in PUBLISHED_TABLES})
    docs_site.inline_index(Path(target_dir), Path(target_dir) / "index.html")
    (Path(target_dir) / DOCS_FINGERPRINT_FILE).write_text(fingerprint)
    return str(Path(target_dir) / "index.html"), True
