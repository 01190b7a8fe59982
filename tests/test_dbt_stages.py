"""The two dbt stages of a night select every node of the project once, in a stage where
its parents exist: dbt's own selection with the stages' arguments (dbt_ops.stage_selection
and stage_flags) is compared, for every model, seed and data test of the project, with
the stages worked out here from the parse's graph (docs/design.md, "Seeds load when they
change")."""

from __future__ import annotations

import json

import pytest

from dbt.cli.main import dbtRunner

from crm_pipeline import dbt_checks, dbt_ops
from crm_pipeline.settings import DBT_PROJECT_DIR

BUILT = ("model", "seed", "test")


@pytest.fixture(scope="module")
def dbt(tmp_path_factory, monkeypatch_module):
    folder = tmp_path_factory.mktemp("dbt_stages")
    monkeypatch_module.setenv("CRM_DUCKDB_PATH", str(folder / "unused.duckdb"))
    monkeypatch_module.delenv("CRM_DBT_UNIT_TESTS", raising=False)
    common = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
              "--target-path", str(folder / "target"), "--log-path", str(folder / "logs"), "--quiet"]
    runner = dbtRunner()
    parsed = runner.invoke(["parse", *common])
    assert parsed.success, parsed.exception

    def listed(stage: str, load_seeds: bool, intermediate_tests: bool = True) -> set[str]:
        select, exclude = dbt_ops.stage_selection(stage, load_seeds)
        exclude = exclude + ([] if intermediate_tests else [dbt_checks.INTERMEDIATE_TESTS])
        args = ["ls", *common, "--output", "json", "--output-keys", "unique_id", "resource_type",
                "--select", *select, *(["--exclude", *exclude] if exclude else []), *dbt_ops.stage_flags()]
        result = runner.invoke(args)
        assert result.success, result.exception
        rows = [json.loads(line) for line in result.result]
        return {row["unique_id"] for row in rows if row["resource_type"] in BUILT}

    return parsed.result, listed


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _graph(manifest) -> tuple[dict[str, str], dict[str, set[str]], dict[str, str]]:
    """Kind, parents and defining file of every model, seed, data test and source."""
    kinds, parents, paths = {}, {}, {}
    for uid, node in [*manifest.nodes.items(), *manifest.sources.items()]:
        kind = str(node.resource_type).split(".")[-1].lower()
        if kind in (*BUILT, "source"):
            kinds[uid] = kind
            depends_on = getattr(node, "depends_on", None)
            parents[uid] = {p for p in getattr(depends_on, "nodes", []) if p.split(".")[0] in (*BUILT, "source")}
            paths[uid] = node.original_file_path
    return kinds, parents, paths


def _descendants(start: set[str], parents: dict[str, set[str]]) -> set[str]:
    children: dict[str, set[str]] = {}
    for uid, ps in parents.items():
        for p in ps:
            children.setdefault(p, set()).add(uid)
    seen, todo = set(start), list(start)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


@pytest.mark.parametrize("load_seeds", [True, False], ids=["seeds loaded", "seeds current"])
def test_each_node_runs_once_in_a_stage_where_its_parents_exist(dbt, load_seeds):
    manifest, listed = dbt
    kinds, parents, paths = _graph(manifest)
    # what `path:models/marts+` names: the marts and the sources declared beside them (the
    # CLV fit's tables, written between the stages), and everything after them
    marts = {uid for uid, path in paths.items() if kinds[uid] in ("model", "source") and path.startswith("models/marts/")}
    marts_and_after = _descendants(marts, parents) - {uid for uid, kind in kinds.items() if kind == "source"}
    seeds = {uid for uid, kind in kinds.items() if kind == "seed"}
    only_seeds = {uid for uid, kind in kinds.items() if kind == "test" and parents[uid] and parents[uid] <= seeds}

    expected_marts = marts_and_after
    expected_staging = {uid for uid, kind in kinds.items() if kind in BUILT} - marts_and_after
    if not load_seeds:
        expected_staging -= seeds | only_seeds  # neither loaded nor tested again

    staging, marts_stage = listed("dbt_staging", load_seeds), listed("dbt_marts", load_seeds)
    assert staging == expected_staging
    assert marts_stage == expected_marts
    # a test between a staging model and a seed still runs when the seeds are not loaded
    mixed = {uid for uid in kinds if kinds[uid] == "test" and parents[uid] & seeds and parents[uid] - seeds
             and not parents[uid] & marts_and_after}
    assert mixed and mixed <= staging
    # a test between a staging model and a mart waits for the marts
    across = {uid for uid in kinds if kinds[uid] == "test" and parents[uid] & marts
              and parents[uid] - marts_and_after}
    assert across and across <= marts_stage
    # no test of the staging stage reads a node the marts stage builds
    assert all(not parents[uid] & marts_stage for uid in staging)



def test_without_the_intermediate_tests_only_the_tests_of_intermediate_models_leave(dbt):
    """The intermediate models' tests: every data test declared beside them or reading one
    of them (a test of an intermediate model may be declared with the marts it feeds)."""
    manifest, listed = dbt
    kinds, parents, paths = _graph(manifest)
    intermediate = {uid for uid, kind in kinds.items() if kind == "model" and paths[uid].startswith("models/intermediate/")}
    theirs = {uid for uid, kind in kinds.items() if kind == "test"
              and (paths[uid].startswith("models/intermediate/") or parents[uid] & intermediate)}
    elsewhere = {uid for uid in theirs if not paths[uid].startswith("models/intermediate/")}
    assert theirs and elsewhere
    for stage in ("dbt_staging", "dbt_marts"):
        every = listed(stage, load_seeds=False)
        assert listed(stage, load_seeds=False, intermediate_tests=False) == every - theirs
