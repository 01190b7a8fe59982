"""Write-audit-publish: a publish is all or nothing, on DuckDB and on PostgreSQL.

* a fault injected inside the publish transaction (after the first table, before commit)
  and a process killed with SIGKILL in the middle of the publish leave every published
  table exactly as it was (ordered checksum), and the warehouse opens and publishes fine
  afterwards;
* one publish at a time: a second publisher waits for the lock, then fails clearly;
* PostgreSQL: a BI reader's open transaction delays the swap (lock_timeout + retry) until
  it commits, and a publish that runs out of patience fails with a clear message;
* a failed gate 2 leaves published unchanged, the run record says which expectation failed
  on which table with examples, and the run summary shows it with the Data Docs path;
* the run's "nothing lost" reconciliation is committed with the publish.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import date
from pathlib import Path

import pytest

from crm_pipeline import publish as pub
from crm_pipeline import migrations, runs
from crm_pipeline.publish import PublishError, publish
from wap_helpers import BASE_AS_OF, baseline_home, copy_home, open_wh, published_checksum, synthetic_audit

D1 = date(2026, 6, 29)
D2 = date(2026, 6, 30)


def _duckdb_url(tmp_path: Path) -> str:
    return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"


def _published_once(url: str) -> str:
    """A warehouse with D1 published, and D2's different audit tables waiting."""
    with open_wh(url) as wh:
        synthetic_audit(wh, D1, variant=0)
        publish(wh, D1, "run-d1")
        synthetic_audit(wh, D2, variant=1)
        return published_checksum(wh)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request, tmp_path):
    if request.param == "duckdb":
        return _duckdb_url(tmp_path)
    return request.getfixturevalue("pg_database")


# ---------------------------------------------------------------------------------------
# a failed or killed publish changes nothing
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("point", ["after_first_table", "before_commit"])
def test_fault_inside_publish_leaves_published_unchanged(warehouse_url, point, monkeypatch):
    before = _published_once(warehouse_url)
    monkeypatch.setenv("CRM_FAULT_INJECT", f"publish:{point}")
    with open_wh(warehouse_url) as wh:
        with pytest.raises(PublishError, match=f"fault injected at publish:{point}"):
            publish(wh, D2, "run-d2")
        assert published_checksum(wh) == before
        assert wh.scalar("select count(*) from ops.published_versions where run_id = 'run-d2'") == 0
    monkeypatch.delenv("CRM_FAULT_INJECT")
    with open_wh(warehouse_url) as wh:
        result = publish(wh, D2, "run-d2")
        assert result.tables["customer_segments"] == 20
        assert published_checksum(wh) != before
        assert [r[0] for r in wh.query("select distinct as_of from published.segment_profiles order by 1")] == [D1, D2]


_KILL_SCRIPT = textwrap.dedent("""
    import sys
    from datetime import date
    from crm_pipeline.publish import publish
    from crm_pipeline.warehouse import Warehouse, WarehouseConfig
    wh = Warehouse(WarehouseConfig.from_url(sys.argv[1]))
    publish(wh, date.fromisoformat(sys.argv[2]), "run-killed")
    print("publish returned: the kill did not happen")
""")


@pytest.mark.parametrize("point", ["after_first_table", "before_commit"])
def test_killed_publish_leaves_published_unchanged(warehouse_url, point):
    before = _published_once(warehouse_url)
    env = {**os.environ, "CRM_FAULT_INJECT": f"publish:kill_{point}"}
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, warehouse_url, D2.isoformat()],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stdout + proc.stderr
    with open_wh(warehouse_url) as wh:  # opens fine after the kill (DuckDB replays its WAL)
        assert published_checksum(wh) == before
        assert wh.scalar("select count(*) from ops.published_versions where run_id = 'run-killed'") == 0
        assert publish(wh, D2, "run-after-kill").tables["customer_segments"] == 20
        assert published_checksum(wh) != before


# ---------------------------------------------------------------------------------------
# one publish at a time
# ---------------------------------------------------------------------------------------
def test_duckdb_second_publisher_waits_then_fails_clearly(tmp_path):
    import fcntl

    url = _duckdb_url(tmp_path)
    before = _published_once(url)
    lock_path = tmp_path / "warehouse.duckdb.publish.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another "process" is publishing
    os.pwrite(fd, b"4242", 0)
    try:
        with open_wh(url) as wh:
            t0 = time.monotonic()
            with pytest.raises(PublishError) as err:
                publish(wh, D2, "run-d2", max_wait_seconds=1.5)
            assert 1.0 <= time.monotonic() - t0 < 10
            msg = str(err.value)
            assert "another run is publishing" in msg and "4242" in msg and "\n" not in msg
            assert published_checksum(wh) == before
    finally:
        os.close(fd)
    with open_wh(url) as wh:  # the lock is free again: the file lock never outlives its holder
        publish(wh, D2, "run-d2", max_wait_seconds=1)
        assert published_checksum(wh) != before


def test_duckdb_publisher_waits_for_the_lock_to_be_released(tmp_path):
    import fcntl

    url = _duckdb_url(tmp_path)
    before = _published_once(url)
    fd = os.open(tmp_path / "warehouse.duckdb.publish.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    threading.Timer(1.5, lambda: os.close(fd)).start()  # closing the fd releases the flock
    with open_wh(url) as wh:
        t0 = time.monotonic()
        publish(wh, D2, "run-d2", max_wait_seconds=30)
        assert time.monotonic() - t0 >= 1.0
        assert published_checksum(wh) != before


@pytest.mark.postgres
def test_postgres_concurrent_publisher_is_refused_clearly(pg_database):
    import psycopg2

    before = _published_once(pg_database)
    other = psycopg2.connect(pg_database)
    try:
        with other.cursor() as cur:  # another run is inside its publish transaction
            cur.execute("select pg_advisory_xact_lock(%s)", (pub.PUBLISH_LOCK_KEY,))
        with open_wh(pg_database) as wh:
            with pytest.raises(PublishError) as err:
                publish(wh, D2, "run-d2", max_wait_seconds=1.5, lock_timeout_ms=200)
            msg = str(err.value)
            assert "another run is publishing" in msg and "nothing was published" in msg
            assert published_checksum(wh) == before
    finally:
        other.rollback()
        other.close()
    with open_wh(pg_database) as wh:
        publish(wh, D2, "run-d2")
        assert published_checksum(wh) != before


# ---------------------------------------------------------------------------------------
# PostgreSQL: an open BI transaction delays the swap, never forever
# ---------------------------------------------------------------------------------------
def _reader_in_open_transaction(url: str):
    import psycopg2

    reader = psycopg2.connect(url)  # autocommit off: the select opens a transaction
    with reader.cursor() as cur:
        cur.execute("select count(*) from published.customer_segments")
        cur.fetchone()
    return reader


@pytest.mark.postgres
def test_postgres_publish_waits_for_a_reader_then_succeeds(pg_database):
    before = _published_once(pg_database)
    reader = _reader_in_open_transaction(pg_database)
    released = threading.Event()

    def release():
        time.sleep(3)
        reader.commit()
        released.set()

    threading.Thread(target=release, daemon=True).start()
    try:
        with open_wh(pg_database) as wh:
            t0 = time.monotonic()
            result = publish(wh, D2, "run-d2", lock_timeout_ms=500, max_wait_seconds=60)
            waited = time.monotonic() - t0
            assert released.is_set()
            assert waited >= 2.5
            assert result.attempts >= 2
            assert published_checksum(wh) != before
    finally:
        reader.close()


@pytest.mark.postgres
def test_postgres_publish_gives_up_clearly_when_a_reader_stays(pg_database):
    before = _published_once(pg_database)
    reader = _reader_in_open_transaction(pg_database)
    try:
        with open_wh(pg_database) as wh:
            t0 = time.monotonic()
            with pytest.raises(PublishError) as err:
                publish(wh, D2, "run-d2", lock_timeout_ms=300, max_wait_seconds=2)
            assert time.monotonic() - t0 < 15
            msg = str(err.value)
            assert "stayed locked by other sessions" in msg and "nothing was published" in msg
            assert "\n" not in msg
    finally:
        reader.rollback()
        reader.close()
    with open_wh(pg_database) as wh:
        assert published_checksum(wh) == before


# ---------------------------------------------------------------------------------------
# nothing lost: the reconciliation is committed with the publish
# ---------------------------------------------------------------------------------------
def test_publish_refuses_when_the_run_counts_do_not_add_up(tmp_path):
    url = _duckdb_url(tmp_path)
    before = _published_once(url)
    with open_wh(url) as wh:
        from crm_pipeline import extract

        extract.ensure_tables(wh)
        wh.execute("insert into ops.extract_batches (run_id, batch_id, entity, as_of, rows_extracted, rows_duplicate, "
                   "rows_staged, rows_quarantined) values ('run-d2', 'orders-x', 'orders', ?, 5, 0, 5, 0)", (D2,))
        # raw.orders holds no row of batch orders-x: five rows were lost
        with pytest.raises(PublishError, match=r"orders: staged 5 but raw.orders holds 0 rows"):
            publish(wh, D2, "run-d2")
        assert published_checksum(wh) == before
        # the refusal rolled back with the publish: no half-written record
        assert wh.scalar("select count(*) from ops.published_versions where run_id = 'run-d2'") == 0


def test_a_history_table_whose_columns_changed_is_refused_until_migrated(warehouse_url):
    """docs/design.md, 'Changing a published table': the history table keeps earlier
    slices, so a new column stops the publish (nothing changes) until it is migrated."""
    before = _published_once(warehouse_url)
    with open_wh(warehouse_url) as wh:
        wh.execute("alter table audit.segment_profiles add column share double precision")
        with pytest.raises(pub.PublishNeedsMigration,
                           match=r"published.segment_profiles has another shape than tonight's table \(tonight adds "
                                 r"share\): .* needs a migration"):
            publish(wh, D2, "run-d2")
        assert published_checksum(wh) == before
        wh.execute("alter table published.segment_profiles add column share double precision")  # the migration
        publish(wh, D2, "run-d2")
        assert wh.scalar("select count(*) from published.segment_profiles where as_of = ?", (D2,)) == 4


# ---------------------------------------------------------------------------------------
# gate 2 refuses the audit marts: nothing published, and the run says why
# ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_failed_gate2_leaves_published_unchanged_and_says_why(tmp_path_factory, tmp_path, monkeypatch):
    from crm_pipeline import cli, pipeline

    home = copy_home(baseline_home(tmp_path_factory), tmp_path / "home")
    wh_url = f"duckdb:///{home / 'warehouse.duckdb'}"
    monkeypatch.setenv("CRM_HOME", str(home))
    monkeypatch.setenv("AIRFLOW_CONN_CRM_WAREHOUSE", wh_url)
    monkeypatch.setenv("AIRFLOW_CONN_CRM_SOURCE", f"sqlite:///{home / 'source.sqlite'}")
    run_id = "gate2-failure-test"
    with open_wh(wh_url) as wh:
        before = published_checksum(wh)
        runs.start_run(wh, run_id, BASE_AS_OF, str(home / "warehouse.duckdb"))
        dup = wh.scalar("select min(customer_id) from audit.customer_segments")
        wh.execute("insert into audit.customer_segments select * from audit.customer_segments where customer_id = ?",
                   (dup,))
    with pytest.raises(pipeline.GateFailed) as err:
        pipeline.gate_marts(run_id, BASE_AS_OF)
    message = str(err.value)
    assert "audit.customer_segments" in message and "customer_id" in message
    assert str(dup) in message  # an example value
    with open_wh(wh_url) as wh:
        assert published_checksum(wh) == before
        summary = runs.run_summary(wh, run_id)
    assert summary["status"] == "failed"
    assert summary["gate_verdict"] == "failed"
    assert summary["message"].startswith("gate: ")
    assert "audit.customer_segments" in summary["message"]
    assert summary["docs"] and Path(summary["docs"]).exists()
    # the run summary the user sees names the expectation, the table, an example and the docs
    buf = io.StringIO()
    monkeypatch.setattr(cli, "console", cli.Console(file=buf, width=400))
    cli._print_summary(summary, home)
    shown = buf.getvalue()
    assert "failed" in shown and "audit.customer_segments" in shown and str(dup) in shown
    assert f"data docs: {summary['docs']}" in shown
    assert "Traceback" not in shown


def test_crm_migrate_brings_an_earlier_credit_grade_history_to_the_shape_published_now(warehouse_url, tmp_path):
    """A credit-grade history published before is_reconstructed / reconstructed_indicators
    existed: the publish refuses the new shape and names `crm migrate`; the command adds
    the two columns (NULL on the earlier quarter), records the migration, and the next
    publish appends the new quarter; a second `crm migrate` has nothing to do."""
    from helpers import crm

    _published_once(warehouse_url)
    old = "customer_id bigint, grade_quarter date, credit_grade varchar(8)"
    with open_wh(warehouse_url) as wh:
        wh.execute(f"create table published.customer_credit_grades ({old})")
        wh.execute("insert into published.customer_credit_grades values (1, date '2026-01-01', 'A')")
        wh.execute("drop table if exists audit.customer_credit_grades")
        wh.execute(f"create table audit.customer_credit_grades ({old}, is_reconstructed boolean, "
                   "reconstructed_indicators varchar(1000))")
        wh.execute("insert into audit.customer_credit_grades values (1, date '2026-04-01', 'AA', true, 'debt_ratio')")
        with pytest.raises(PublishError, match="crm migrate"):
            publish(wh, D2, "run-d2")
    home = ["--home", str(tmp_path / "home"), "--warehouse", warehouse_url]
    listed = crm("migrate", "--dry-run", *home)
    assert listed.returncode == 0 and "pending 0001_credit_grades_reconstructed" in listed.stdout, listed.stdout
    done = crm("migrate", *home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "added is_reconstructed, reconstructed_indicators to published.customer_credit_grades" in done.stdout
    with open_wh(warehouse_url) as wh:
        publish(wh, D2, "run-d2")
        rows = wh.query("select customer_id, grade_quarter, credit_grade, is_reconstructed, reconstructed_indicators "
                        "from published.customer_credit_grades order by grade_quarter")
        assert rows == [(1, date(2026, 1, 1), "A", None, None), (1, date(2026, 4, 1), "AA", True, "debt_ratio")]
        assert wh.scalar("select count(*) from ops.schema_migrations") == len(migrations.MIGRATIONS)
    again = crm("migrate", *home)
    assert again.returncode == 0 and "nothing to migrate" in again.stdout, again.stdout


def test_a_publish_that_waits_for_a_migration_is_not_retried_and_names_crm_migrate():
    from crm_pipeline import pipeline
    from crm_pipeline.cli import failure_hint

    # the publish task turns these into a failure without retry (dags/crm_nightly.py)
    assert pub.PublishNeedsMigration in pipeline.NOT_RETRYABLE_PUBLISH
    assert issubclass(pub.PublishNeedsMigration, PublishError)
    message = ("publish: published.clv_model_runs has another shape than tonight's table (tonight adds se_r): "
               "a contract change of a history table needs a migration: `crm migrate` applies the project's pending")
    assert "run `crm migrate`" in failure_hint(message, Path("run.log"))
    assert "crm migrate" not in failure_hint("publish: could not obtain the publish lock", Path("run.log"))
