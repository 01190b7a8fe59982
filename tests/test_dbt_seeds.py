"""Seeds load when they change: a night skips loading and testing the dbt seeds when the
warehouse already holds the ones this project loads (dbt_seeds.py, docs/design.md). The
intermediate models' data tests, likewise, run when the project changed or the last full
check is old (dbt_checks.py).

The unit part loads the project's CSV files into a real DuckDB warehouse by hand (not
through the code under test) and checks each way the warehouse can stop matching: another
fingerprint, a dropped table, a row deleted by hand. The night part runs `crm run` twice on
a copy of the baseline and reads the run record and the seed tables.
"""

from __future__ import annotations

import csv
import json
import shutil
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from crm_pipeline import dbt_checks, dbt_seeds
from crm_pipeline.settings import DBT_PROJECT_DIR
from helpers import crm
from wap_helpers import BASE_AS_OF, BASE_CUSTOMERS, baseline_home, copy_home, open_wh, published_checksum, run_cli

SEEDS = sorted((DBT_PROJECT_DIR / "seeds").glob("*.csv"))


def _load_by_hand(path) -> None:
    con = duckdb.connect(str(path))
    con.execute("create schema if not exists config")
    for seed in SEEDS:
        con.execute(f"create table config.{seed.stem} as select * from read_csv_auto('{seed}', all_varchar = true)")
    con.close()


def _csv_rows(seed) -> int:  # counted with the csv module, not as the code counts
    with open(seed, newline="", encoding="utf-8") as f:
        return len(list(csv.DictReader(f)))


def test_the_fingerprint_follows_the_seed_files_the_project_file_and_the_target(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(DBT_PROJECT_DIR / "seeds", project / "seeds")
    shutil.copy(DBT_PROJECT_DIR / "dbt_project.yml", project / "dbt_project.yml")
    first = dbt_seeds.fingerprint("duckdb", project)
    assert first == dbt_seeds.fingerprint("duckdb", project)
    assert first != dbt_seeds.fingerprint("postgres", project)
    seed = project / "seeds" / "abc_classes.csv"
    seed.write_text(seed.read_text() + "\n")  # any byte of a seed file
    assert dbt_seeds.fingerprint("duckdb", project) != first
    seed.write_text(seed.read_text()[:-1])
    assert dbt_seeds.fingerprint("duckdb", project) == first
    (project / "dbt_project.yml").write_text((project / "dbt_project.yml").read_text() + "\n# changed\n")
    assert dbt_seeds.fingerprint("duckdb", project) != first


def test_the_seeds_are_current_only_when_every_table_holds_what_was_loaded(tmp_path):
    db = tmp_path / "w.duckdb"
    _load_by_hand(db)
    with open_wh(f"duckdb:///{db}") as wh:
        wh.ensure_schemas()
        assert not dbt_seeds.seeds_current(wh, "f1")  # nothing recorded yet
        dbt_seeds.record_loaded(wh, "f1", "duckdb")
        assert dbt_seeds.seeds_current(wh, "f1")
        assert not dbt_seeds.seeds_current(wh, "f2")  # another project or target
        wh.execute("update config.rfm_segment_map set rfm_segment = 'Champions' where r_score = '1' and f_score = '1'")
        assert not dbt_seeds.seeds_current(wh, "f1")  # a value edited in place, the same rows
        dbt_seeds.record_loaded(wh, "f1", "duckdb")
        assert dbt_seeds.seeds_current(wh, "f1")
        wh.execute("delete from config.segment_rules where rule_order = (select max(rule_order) from config.segment_rules)")
        assert not dbt_seeds.seeds_current(wh, "f1")  # a row deleted
    _load_by_hand(tmp_path / "w2.duckdb")
    with open_wh(f"duckdb:///{tmp_path / 'w2.duckdb'}") as wh:
        wh.ensure_schemas()
        dbt_seeds.record_loaded(wh, "f1", "duckdb")
        wh.execute("drop table config.fx_rates")
        assert not dbt_seeds.seeds_current(wh, "f1")
        dbt_seeds.record_loaded(wh, "f1", "duckdb")
        dbt_seeds.forget(wh)
        assert wh.query("select count(*) from ops.dbt_seed_state") == [(0,)]


def test_the_intermediate_tests_run_on_a_new_warehouse_a_changed_project_and_a_week_later(tmp_path):
    with open_wh(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        wh.ensure_schemas()
        monday = datetime(2026, 3, 2, 22, 0, tzinfo=timezone.utc)
        assert dbt_checks.plan(wh, "p1", 7, monday).run  # nothing recorded yet
        dbt_checks.record(wh, "p1", monday)
        assert not dbt_checks.plan(wh, "p1", 7, monday).run
        assert dbt_checks.plan(wh, "p2", 7, monday).run  # another project or target
        six_days = datetime(2026, 3, 8, 21, 59, tzinfo=timezone.utc)
        assert not dbt_checks.plan(wh, "p1", 7, six_days).run
        assert "2026-03-02 22:00" in dbt_checks.plan(wh, "p1", 7, six_days).why
        seven_days = datetime(2026, 3, 9, 22, 0, tzinfo=timezone.utc)
        assert dbt_checks.plan(wh, "p1", 7, seven_days).run
        assert not dbt_checks.plan(wh, "p1", 8, seven_days).run
        assert dbt_checks.plan(wh, "p1", 0, monday).run  # 0: every night
        dbt_checks.record(wh, "p2", seven_days)  # one record, the latest
        assert wh.query("select fingerprint from ops.dbt_full_check") == [("p2",)]


def _staging_details(home, as_of, stage: str = "dbt_staging") -> dict:
    with open_wh(home / "warehouse.duckdb") as wh:
        (details,) = wh.query(
            "select s.details from ops.run_stages s join ops.pipeline_runs r using (run_id) "
            "where r.as_of = ? and s.stage = ? order by r.started_at desc limit 1", (as_of, stage))[0]
    return json.loads(details)


@pytest.mark.slow
def test_a_night_loads_the_seeds_only_when_the_warehouse_lacks_them(tmp_path_factory, tmp_path):
    home = copy_home(baseline_home(tmp_path_factory), tmp_path / "home")
    first = _staging_details(home, BASE_AS_OF)
    assert first["seeds"] == "loaded"  # a new warehouse
    assert first["intermediate_tests"] == "run: no full check recorded"
    day2, day3 = BASE_AS_OF + timedelta(days=1), BASE_AS_OF + timedelta(days=2)
    args = ["--home", home, "--customers", BASE_CUSTOMERS]
    assert run_cli(["run", *args, "--as-of", day2.isoformat()]).exit_code == 0
    details = _staging_details(home, day2)
    assert details["seeds"] == "current, not loaded again"
    assert "success" in details and details.get("pass", 0) > 0  # the other tests still ran
    # the same project a night later: the staging models' tests ran, the intermediate ones did not
    assert details["intermediate_tests"].startswith("not run: passed on ")
    assert all(not name.startswith(("not_null_int_", "unique_int_")) for name in details["test_seconds"]["slowest"])
    marts = _staging_details(home, day2, "dbt_marts")
    assert marts["intermediate_tests"] == details["intermediate_tests"]
    assert marts["test_seconds"]["n"] < _staging_details(home, BASE_AS_OF, "dbt_marts")["test_seconds"]["n"]
    # a seed table edited by hand in the warehouse is loaded again from the project's file
    with open_wh(home / "warehouse.duckdb") as wh:
        wh.execute("update config.rfm_segment_map set rfm_segment = 'Lost' where r_score = 5")
    result = run_cli(["run", *args, "--as-of", day3.isoformat()])
    assert result.exit_code == 0, result.output
    assert _staging_details(home, day3)["seeds"] == "loaded"
    with open_wh(home / "warehouse.duckdb") as wh:
        for seed in SEEDS:
            assert wh.scalar(f"select count(*) from config.{seed.stem}") == _csv_rows(seed), seed.stem
        assert wh.scalar("select count(*) from config.rfm_segment_map where r_score = 5 and rfm_segment = 'Lost'") == 0


@pytest.mark.slow
def test_a_changed_seed_is_loaded_again_and_a_null_it_leaves_in_a_mart_stops_the_night(tmp_path_factory, tmp_path):
    """Not-null rules of the contracted marts are constraints the warehouse enforces as the
    rows are written (docs/design.md): segment rules without their catch-all rule leave
    customers without a segment (customer_segments.segment null), and the night stops with
    nothing published. (A seed that breaks its own tests, such as an RFM map with a hole,
    stops the night earlier, at its seed tests.)"""
    home = copy_home(baseline_home(tmp_path_factory), tmp_path / "home")
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    seed = project / "seeds" / "segment_rules.csv"
    kept = [line for line in seed.read_text().splitlines() if not line.startswith("90,")]  # no catch-all rule
    seed.write_text("\n".join(kept) + "\n")
    with open_wh(home / "warehouse.duckdb") as wh:
        before = published_checksum(wh)
    day2 = BASE_AS_OF + timedelta(days=1)
    proc = crm("run", "--home", str(home), "--as-of", day2.isoformat(), "--customers", str(BASE_CUSTOMERS),
               env={"CRM_DBT_PROJECT_DIR": str(project)})
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "customer_segments" in proc.stdout and "NOT NULL" in proc.stdout.upper() and "Traceback" not in proc.stdout
    assert _staging_details(home, day2)["seeds"] == "loaded"  # the changed seed was loaded
    assert _staging_details(home, day2)["intermediate_tests"] == \
        "run: the dbt project changed since the last full check"
    with open_wh(home / "warehouse.duckdb") as wh:
        assert wh.scalar("select count(*) from config.segment_rules") == len(kept) - 1
        assert published_checksum(wh) == before
