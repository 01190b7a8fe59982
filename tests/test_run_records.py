"""Honest run records: a run whose process died is shown and recorded as abandoned, with
when it was last seen, instead of "running" for ever."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta

import duckdb
import pytest

from crm_pipeline import runs
from helpers import ANSI, PROJECT_ROOT, crm, first_match, read_as_it_comes

AS_OF = "2026-03-31"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_is_abandoned_only_when_its_process_is_gone_or_unseen_for_long():
    at = datetime(2026, 6, 1, 12, 0)
    here = socket.gethostname()
    dead = _dead_pid()
    # this machine, process gone, unseen for five minutes
    assert runs.is_abandoned("running", dead, here, at - timedelta(minutes=5), at)
    # this machine, process gone but seen a moment ago: the next task may not have started
    assert not runs.is_abandoned("running", dead, here, at - timedelta(seconds=30), at)
    # this machine, process alive (this one), unseen for hours: a long stage
    assert not runs.is_abandoned("running", os.getpid(), here, at - timedelta(hours=5), at)
    # another machine: only the time since it was last seen counts
    assert not runs.is_abandoned("running", 1, "elsewhere", at - timedelta(hours=11), at)
    assert runs.is_abandoned("running", 1, "elsewhere", at - timedelta(hours=13), at)
    # finished runs are never abandoned
    assert not runs.is_abandoned("failed", dead, here, at - timedelta(days=3), at)
    assert not runs.is_abandoned("success", dead, here, at - timedelta(days=3), at)


@pytest.mark.slow
def test_a_killed_run_is_marked_abandoned_by_status_and_by_the_next_run(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "COLUMNS": "200", "CRM_DBT_DOCS": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "crm_pipeline.cli", "run", "--home", str(home), "--as-of", AS_OF,
                             "--customers", "400"], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = home / "logs" / f"run-{AS_OF}.log"
    deadline = time.monotonic() + 300
    # kill it once dbt is building (the run is recorded and a stage is under way)
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and "Running with dbt" in log.read_text(errors="replace"):
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the run ended before it could be killed"
    # while dbt holds the DuckDB file, crm status answers (from the run's snapshot)
    during = crm("status", "--home", str(home))
    assert during.returncode == 0, during.stdout + during.stderr
    assert "running" in during.stdout and "in stage " in during.stdout
    time.sleep(3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    warehouse = home / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse))
    status, pid = con.execute("select status, pid from ops.pipeline_runs").fetchone()
    assert (status, pid) == ("running", proc.pid)
    # as if the grace period had passed since it was last seen
    con.execute("update ops.pipeline_runs set last_seen_at = last_seen_at - interval 10 minute")
    con.close()

    shown = crm("status", "--home", str(home))
    assert shown.returncode == 0, shown.stderr
    assert "abandoned" in shown.stdout and "running" not in shown.stdout
    assert f"PID {proc.pid}" in shown.stdout

    again = crm("run", "--home", str(home), "--as-of", "2026-04-01", env={"CRM_DBT_DOCS": "0"})
    assert again.returncode == 0, again.stdout + again.stderr
    con = duckdb.connect(str(warehouse), read_only=True)
    records = dict(con.execute("select as_of::varchar, status from ops.pipeline_runs").fetchall())
    message = con.execute("select message from ops.pipeline_runs where status = 'abandoned'").fetchone()[0]
    con.close()
    assert records == {AS_OF: "abandoned", "2026-04-01": "success"}
    assert f"PID {proc.pid}" in message and "last seen" in message


@pytest.mark.slow
def test_an_unreachable_source_says_it_is_retrying_while_it_waits(tmp_path):
    """Each failed attempt is shown as it happens (attempt, wait, reason), before the
    run's final one-line error; the password of the source URL is never shown."""
    source = "postgresql://reader:pwRetry7731@127.0.0.1:9/crm"  # nothing listens on port 9
    result = crm("run", "--home", str(tmp_path / "home"), "--as-of", AS_OF, "--source", source,
                 env={"CRM_EXTRACT_RETRIES": "2", "CRM_RETRY_DELAY_SECONDS": "1"}, timeout=300)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "pwRetry7731" not in output
    first = output.index("attempt 1 of 3 failed, trying again in 1 s or more: cannot read source table")
    second = output.index("attempt 2 of 3 failed, trying again in 2 s or more")
    final = output.index("crm_nightly as_of 2026-03-31: failed")
    assert first < second < final
    # and says what to do
    assert "→ check that the source is reachable and that its URL and credentials are right" in output
    assert "attempt 3 of 3" not in output  # the last attempt fails the run, it is not retried


@pytest.fixture()
def small_disk(tmp_path):
    """A 60 MB file system of its own (tmpfs), unmounted afterwards; skipped where this
    process may not mount one."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=60m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_named_with_the_fix_and_the_next_run_after_freeing_space_works(small_disk):
    home = small_disk / "home"
    made = crm("demo-data", "--home", str(home), "--customers", "300", "--until", AS_OF)
    assert made.returncode == 0, made.stderr
    filler = small_disk / "filler"
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    with open(filler, "wb") as handle:
        handle.truncate(0)
        os.posix_fallocate(handle.fileno(), 0, free - 2_000_000)  # leave 2 MB
    full = crm("run", "--home", str(home), "--as-of", AS_OF)
    output = full.stdout + full.stderr
    assert full.returncode == 1
    assert "Traceback" not in output
    assert f"the disk holding {home} is full" in output
    assert "free space on that disk" in output
    assert "trying again" not in output  # a full disk is not retried
    filler.unlink()
    again = crm("run", "--home", str(home), "--as-of", AS_OF)
    assert again.returncode == 0, again.stdout + again.stderr


@pytest.mark.slow
def test_a_damaged_warehouse_is_named_with_the_fix(tmp_path):
    home = tmp_path / "home"
    made = crm("demo-data", "--home", str(home), "--customers", "300", "--until", AS_OF)
    assert made.returncode == 0, made.stderr
    (home / "warehouse.duckdb").write_bytes(os.urandom(300_000))
    result = crm("run", "--home", str(home), "--as-of", AS_OF)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1
    assert "Traceback" not in output
    assert f"a file the pipeline reads is damaged (the warehouse is {home / 'warehouse.duckdb'})" in output
    assert "not a valid DuckDB database file" in output
    assert "move it away" in output


@pytest.mark.parametrize("days_ahead", [0, 1, 200])
def test_a_day_that_has_not_ended_is_refused_with_one_line(tmp_path, days_ahead):
    """Today (still going on), tomorrow and a date months ahead: refused before anything
    is created, and the demo source never invents data for them."""
    from datetime import datetime as clock, timezone

    day = (clock.now(timezone.utc).date() + timedelta(days=days_ahead)).isoformat()
    home = tmp_path / "home"
    result = crm("run", "--home", str(home), "--as-of", day, timeout=120)
    assert result.returncode == 1
    assert f"--as-of {day} has not ended yet" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stdout + result.stderr
    assert not (home / "source.sqlite").exists() and not (home / "warehouse.duckdb").exists()
    made = crm("demo-data", "--home", str(home), "--customers", "50", "--until", day, timeout=120)
    assert made.returncode == 1 and "has not ended yet" in " ".join(made.stderr.split())
    assert "Traceback" not in made.stdout + made.stderr


def test_a_dag_run_for_a_day_that_has_not_ended_fails_in_its_first_task_before_writing(tmp_path, monkeypatch):
    """A manual trigger of the DAG with today's date: the first task refuses it (same rule
    as the command line) and no warehouse is created."""
    from datetime import datetime as clock, timezone

    from crm_pipeline import pipeline
    from crm_pipeline.settings import ConfigError

    warehouse = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("AIRFLOW_CONN_CRM_WAREHOUSE", f"duckdb:///{warehouse}")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_SOURCE", f"sqlite:///{tmp_path / 'source.sqlite'}")
    today = clock.now(timezone.utc).date()
    with pytest.raises(ConfigError, match=f"as_of {today} has not ended yet"):
        pipeline.begin("manual__today", today)
    assert not warehouse.exists()
    # the day before today has ended: the same task records the run
    pipeline.begin("manual__yesterday", today - timedelta(days=1))
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("select status from ops.pipeline_runs").fetchall() == [("running",)]
    con.close()


@pytest.mark.slow
def test_a_second_run_on_a_busy_home_is_refused_and_the_home_runs_normally_afterwards(tmp_path):
    """Two `crm run` at once on one home: the second is refused at once with one line that
    names the run in progress; the first succeeds; the home then runs the date the refused
    run asked for again, as a home that never saw two runs at once."""
    home = tmp_path / "home"
    # a capable terminal type, but the output goes to a pipe: a log gets plain lines
    env = {**os.environ, "COLUMNS": "200", "CRM_DBT_DOCS": "0", "TERM": "xterm-256color"}
    first = subprocess.Popen([sys.executable, "-m", "crm_pipeline.cli", "run", "--home", str(home), "--as-of", AS_OF,
                              "--customers", "400"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # its output, read as it comes
        reading = pool.submit(read_as_it_comes, first, first.stdout.fileno(), 900)
        lock = home / "run.lock"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (lock.exists() and lock.read_text()):
            time.sleep(0.2)
        assert lock.read_text(), "the first run did not take the home's lock"
        started = time.monotonic()
        second = crm("run", "--home", str(home), "--as-of", AS_OF, timeout=300)
        refused_in = time.monotonic() - started
        pieces = reading.result()
    output = "".join(text for _, text in pieces)
    assert first.returncode == 0, output[-3000:]
    # the first run's log: one plain line per stage event, each as it happened
    assert not ANSI.search(output), "escape codes in a log"
    times = [at for stage in ("extract", "dbt_staging", "clv_fit", "dbt_marts", "gate", "publish")
             for at in (first_match(pieces, rf"^\d\d:\d\d:\d\d {stage} started$"),
                        first_match(pieces, rf"^\d\d:\d\d:\d\d {stage} ok in \d+\.\ds$"))]
    assert times == sorted(times) and pieces[-1][0] - times[1] > 10, times
    assert second.returncode == 1
    message = " ".join(second.stderr.split())
    assert f"a run for {AS_OF} is in progress since" in message and f"PID {first.pid}" in message
    assert "Traceback" not in second.stdout + second.stderr
    assert refused_in < 60  # refused at once, not after waiting for the first run
    assert lock.read_text() == ""  # released and emptied when the run ended

    again = crm("run", "--home", str(home), "--as-of", AS_OF, env={"CRM_DBT_DOCS": "0"})
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    records = con.execute("select as_of::varchar, status from ops.pipeline_runs order by started_at").fetchall()
    con.close()
    assert records == [(AS_OF, "success")]
    assert lock.read_text() == ""
