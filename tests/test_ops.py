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
