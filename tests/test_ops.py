"""Operating the pipeline: `crm status`, the run record, failure alerts."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from typer.testing import CliRunner

from crm_pipeline import alerts, runs
from crm_pipeline.cli import app
from crm_pipeline.publish import VERSIONS_DDL
from crm_pipeline.warehouse import Warehouse, WarehouseConfig


@pytest.fixture()
def warehouse_with_history(tmp_path):
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    with Warehouse(WarehouseConfig.from_url(url)) as wh:
        runs.start_run(wh, "manual__ok", date(2026, 6, 29), "test")
        runs.finish_run(wh, "manual__ok", "success", "passed", None)
        runs.start_run(wh, "manual__bad", date(2026, 6, 30), "test")
        runs.finish_run(wh, "manual__bad", "failed", "failed",
                        "gate: expect_column_values_to_be_unique on audit.customer_segments.customer_id")
        wh.execute(VERSIONS_DDL)
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        for table, mode, as_of, rows in (("customer_segments", "current", date(2026, 6, 28), 100),
                                         ("customer_segments", "current", date(2026, 6, 29), 101),
                                         ("segment_profiles", "history", date(2026, 6, 29), 8)):
            wh.execute("insert into ops.published_versions values (?, ?, ?, ?, ?, ?)",
                       (table, as_of, "r", mode, rows, now))
    return tmp_path


def test_status_shows_runs_verdicts_and_freshness(warehouse_with_history, monkeypatch):
    from crm_pipeline import cli

    monkeypatch.setattr(cli.console, "_width", 200)  # a wide terminal: no wrapped cells
    result = CliRunner().invoke(app, ["status", "--home", str(warehouse_with_history)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "manual__ok" in out and "manual__bad" in out
    assert "success" in out and "failed" in out
    assert "expect_column_values_to_be_unique" in out
    # newest published as_of per table, with the rows of that version and its age in days
    age = (datetime.now(timezone.utc).date() - date(2026, 6, 29)).days
    published = out[out.index("published tables"):]
    seg_line = next(line for line in published.splitlines() if "customer_segments" in line)
    assert "2026-06-29" in seg_line and "101" in seg_line and str(age) in seg_line
    assert "2026-06-28" not in published


def test_status_without_a_warehouse_is_one_clear_line(tmp_path):
    result = CliRunner().invoke(app, ["status", "--home", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert "no warehouse" in result.output
    assert "Traceback" not in result.output


calls: list[tuple] = []


def record_alert(dag_id, run_id, task_id, message):
    calls.append((dag_id, run_id, task_id, message))


def broken_alert(*_):
    raise RuntimeError("pager down")


class _TI:
    dag_id, task_id = "crm_nightly", "publish"


class _Run:
    dag_id, run_id = "crm_nightly", "scheduled__2026-07-01"


def test_failure_callback_calls_the_configured_hook(monkeypatch):
    calls.clear()
    monkeypatch.setenv("CRM_ALERT_CALLBACK", f"{__name__}:record_alert")
    alerts.on_failure({"task_instance": _TI(), "dag_run": _Run(), "exception": ValueError("boom\nsecond line")})
    assert calls == [("crm_nightly", "scheduled__2026-07-01", "publish", "boom")]


def test_a_failing_alert_hook_never_hides_the_failure(monkeypatch, caplog):
    monkeypatch.setenv("CRM_ALERT_CALLBACK", f"{__name__}:broken_alert")
    alerts.on_failure({"task_instance": _TI(), "dag_run": _Run(), "exception": ValueError("boom")})
    assert any("publish failed: boom" in r.getMessage() for r in caplog.records)


def test_bad_dates_are_one_clear_line(tmp_path):
    result = CliRunner().invoke(app, ["run", "--home", str(tmp_path), "--as-of", "2026-13-45"])
    assert result.exit_code == 1
    assert "is not a date" in result.output and "YYYY-MM-DD" in result.output
    result = CliRunner().invoke(app, ["backfill", "--home", str(tmp_path), "--from", "2026-07-02", "--to", "2026-07-01"])
    assert result.exit_code == 1 and "before" in result.output


def test_dbt_docs_are_kept_while_the_project_and_target_are_the_same(tmp_path):
    """dbt docs describe the project: regenerated when any project file or the target
    changes, kept otherwise (dbt's own output folders do not count)."""
    import shutil

    from crm_pipeline import dbt_ops
    from crm_pipeline.settings import DBT_PROJECT_DIR

    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    first = dbt_ops.project_fingerprint(project, "duckdb")
    assert first == dbt_ops.project_fingerprint(project, "duckdb")
    assert first != dbt_ops.project_fingerprint(project, "postgres")
    (project / "target").mkdir()
    (project / "target" / "manifest.json").write_text("{}")
    (project / "logs").mkdir()
    (project / "logs" / "dbt.log").write_text("a run")
    assert dbt_ops.project_fingerprint(project, "duckdb") == first
    model = project / "models" / "marts" / "customer_segments.sql"
    model.write_text(model.read_text() + "\n-- a change\n")
    changed = dbt_ops.project_fingerprint(project, "duckdb")
    assert changed != first

    docs = tmp_path / "docs"
    docs.mkdir()
    assert not dbt_ops.docs_are_current(docs, changed)
    (docs / "index.html").write_text("<html></html>")
    (docs / "catalog.json").write_text("{}")
    assert not dbt_ops.docs_are_current(docs, changed)  # no record of what they came from
    (docs / dbt_ops.DOCS_FINGERPRINT_FILE).write_text(first)
    assert not dbt_ops.docs_are_current(docs, changed)
    assert dbt_ops.docs_are_current(docs, first)


LONG_MESSAGE = ("gate: expect_column_values_to_be_between on audit.customer_credit_grades.total_points "
                "failed for 17 rows; the first keys are 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008")


def _record_a_running_run(home, run_id: str, stage: str):
    """A run recorded as started with one stage under way, the way a DAG task records it."""
    from crm_pipeline import status

    url = f"duckdb:///{home / 'warehouse.duckdb'}"
    with Warehouse(WarehouseConfig.from_url(url)) as wh:
        runs.start_run(wh, "scheduled__2026-06-29T00:00:00+00:00", date(2026, 6, 29), "test")
        runs.finish_run(wh, "scheduled__2026-06-29T00:00:00+00:00", "failed", "failed", LONG_MESSAGE)
        runs.start_run(wh, run_id, date(2026, 6, 30), "test")
        runs.record_stage(wh, run_id, stage, "running", runs.now(), 0.0)
        assert status.snapshot_path(wh.config).exists()


def test_status_reads_the_runs_snapshot_while_another_process_holds_the_duckdb_file(tmp_path):
    """DuckDB lets no second process open a file a run is writing: crm status then shows
    what the run recorded beside the file, with the stage it is in, instead of failing."""
    import subprocess
    import sys

    from helpers import crm

    run_id = "manual__2026-06-30T00:00:00+00:00"
    _record_a_running_run(tmp_path, run_id, "dbt_marts")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); time.sleep(120)", str(tmp_path / "warehouse.duckdb")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        shown = crm("status", "--home", str(tmp_path))
        as_json = crm("status", "--home", str(tmp_path), "--json")
    finally:
        holder.kill()
        holder.wait()
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "held by a run in progress" in shown.stdout
    assert run_id in shown.stdout and "running" in shown.stdout and "in stage dbt_marts" in shown.stdout
    import json

    report = json.loads(as_json.stdout)
    assert report["from_snapshot"] is True
    assert [r["status"] for r in report["runs"]] == ["running", "failed"]
    assert report["runs"][1]["message"] == LONG_MESSAGE


def test_status_without_a_snapshot_on_a_held_file_is_one_line(tmp_path):
    import subprocess
    import sys

    from helpers import crm

    path = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); time.sleep(120)", str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        shown = crm("status", "--home", str(tmp_path))
    finally:
        holder.kill()
        holder.wait()
    assert shown.returncode == 1
    assert "held by another process" in shown.stderr and "Traceback" not in shown.stderr + shown.stdout


def test_status_fits_an_80_column_terminal_without_cutting_names(tmp_path):
    """Whole run ids, table names and dates at 80 columns; a long message wraps under its run."""
    from crm_pipeline.publish import VERSIONS_DDL as versions_ddl

    from helpers import crm

    run_id = "scheduled__2026-06-30T00:00:00+00:00"
    _record_a_running_run(tmp_path, run_id, "extract")
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    with Warehouse(WarehouseConfig.from_url(url)) as wh:
        wh.execute(versions_ddl)
        for table in ("customer_segment_history", "account_contact_coverage", "customer_lifetime_value"):
            wh.execute("insert into ops.published_versions values (?, ?, ?, ?, ?, ?)",
                       (table, date(2026, 6, 29), "r", "history", 1_234_567, datetime(2026, 6, 30, 1, 2, 3)))
    shown = crm("status", "--home", str(tmp_path), env={"COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    assert run_id in shown.stdout and "scheduled__2026-06-29T00:00:00+00:00" in shown.stdout
    for table in ("customer_segment_history", "account_contact_coverage", "customer_lifetime_value"):
        line = next(line for line in lines if table in line)
        assert "2026-06-29" in line and "2026-06-30 01:02" in line and "1,234,567" in line
        assert line.split()[-1] == str((datetime.now(timezone.utc).date() - date(2026, 6, 29)).days)
    # the message is whole across its wrapped lines
    joined = " ".join(line.strip() for line in lines)
    assert LONG_MESSAGE in joined
