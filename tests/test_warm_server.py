"""A warm server (``crm serve``) runs a home's nights as a cold ``crm run`` would.

One session baseline (a demo source and its first night) is copied twice. The next night
runs cold on one copy and through the ``crm`` command, handed to a warm server, on the
other: both publish the same tables row for row, the warm night is recorded under the
server's process and its caller spends next to no CPU. Around that server: a second server
on the same home, a night while a night runs, a night the server must not run (other
import-time settings, Spark, code changed since it started: each runs in its own process,
with the reason on one line), an interrupted night (the server renews itself), and
``crm serve --stop``.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from crm_pipeline import interrupts, settings, warm_client
from helpers import CRM_COMMAND, published_checksum_url, start_warm_server
from wap_helpers import BASE_AS_OF, baseline_home, copy_home

pytestmark = pytest.mark.slow

NEXT = BASE_AS_OF + timedelta(days=1)
CRM = CRM_COMMAND  # the installed entry point: crm_pipeline.warm_client:main
ENV = {**os.environ, "COLUMNS": "200"}


def _crm(*args: str, env: dict | None = None, timeout: int = 900) -> tuple[subprocess.CompletedProcess, float]:
    """The ``crm`` command as a user runs it, and the CPU seconds its process spent."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([CRM, *args], capture_output=True, text=True, env=env or ENV, cwd=settings.PROJECT_ROOT,
                          timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _start_server(home: Path) -> subprocess.Popen:
    return start_warm_server(home, ENV)


def _renewed(proc: subprocess.Popen, home: Path) -> dict:
    """The server's answer once it has loaded afresh in the same process."""
    deadline = time.monotonic() + 300
    while True:
        answer = warm_client.ask(home, {"ping": True})
        if answer is not None and answer["nights"] == 0:
            return answer
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "the warm server did not load again within 5 minutes"
        time.sleep(0.2)


def _ended(proc: subprocess.Popen, timeout: float = 120) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()


def _night_pid(home: Path, day) -> int:
    import duckdb

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("select pid from ops.pipeline_runs where as_of = ? and status = 'success' "
                           "order by started_at desc limit 1", [day]).fetchone()[0]


def _lock_is_free(home: Path) -> bool:
    with open(home / "run.lock", "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return True


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    base = baseline_home(tmp_path_factory)
    root = tmp_path_factory.mktemp("warm")
    return copy_home(base, root / "cold"), copy_home(base, root / "warm")


def test_a_warm_night_publishes_what_a_cold_night_publishes(homes):
    cold_home, warm_home = homes
    server = _start_server(warm_home)
    try:
        again = subprocess.run([CRM, "serve", "--home", str(warm_home)], capture_output=True, text=True, env=ENV,
                               timeout=120)
        assert again.returncode == 1
        assert f"a warm server already serves {warm_home} (PID {server.pid})" in again.stdout + again.stderr

        warm, warm_cpu = _crm("run", "--home", str(warm_home), "--as-of", NEXT.isoformat())
        assert warm.returncode == 0, warm.stdout[-3000:] + warm.stderr[-3000:]
        # what a cold run prints: the summary on the caller's own output
        assert f"crm_nightly as_of {NEXT}: success" in warm.stdout
        assert "published" in warm.stdout and "stages" in warm.stdout
        # the night ran in the server, not in the command: recorded under the server's
        # process, and the command itself spent less CPU than importing Airflow takes
        assert _night_pid(warm_home, NEXT) == server.pid
        assert warm_cpu < 1.5, f"the crm command spent {warm_cpu:.1f} s of CPU: it ran the night itself"
        assert (warm_home / "logs" / f"run-{NEXT}.log").stat().st_size > 0
        # between nights the server holds no warehouse file: `crm status` opens it and
        # shows the server beside the runs
        shown, _ = _crm("status", "--home", str(warm_home), "--json")
        assert shown.returncode == 0, shown.stderr
        report = json.loads(shown.stdout)
        assert report["warm_server"]["pid"] == server.pid and report["warm_server"]["nights"] == 1
        assert report["runs"][0]["as_of"] == NEXT.isoformat() and report["runs"][0]["status"] == "success"
        shown, _ = _crm("status", "--home", str(warm_home))
        assert f"warm server: PID {server.pid}" in shown.stdout and "1 night(s) served" in shown.stdout

        cold, cold_cpu = _crm("run", "--home", str(cold_home), "--as-of", NEXT.isoformat())
        assert cold.returncode == 0, cold.stdout[-3000:] + cold.stderr[-3000:]
        assert cold_cpu > 5 * warm_cpu  # the cold night's work was in the command's process
        assert _night_pid(cold_home, NEXT) != server.pid

        warm_tables = published_checksum_url(f"duckdb:///{warm_home / 'warehouse.duckdb'}")
        cold_tables = published_checksum_url(f"duckdb:///{cold_home / 'warehouse.duckdb'}")
        assert len(warm_tables) >= 14
        assert warm_tables == cold_tables
        assert server.poll() is None  # it serves the next night too
    finally:
        warm_client.ask(warm_home, {"stop": True})
        assert _ended(server) == 0
    assert not warm_client.socket_path(warm_home).exists()


def test_nights_the_server_must_not_run_run_in_their_own_process(homes, tmp_path):
    _cold_home, warm_home = homes
    server = _start_server(warm_home)
    today = time.strftime("%Y-%m-%d", time.gmtime())  # a day that has not ended: refused in one line, fast
    try:
        # an Airflow setting read at import, set otherwise than in the server
        other = {**ENV, "AIRFLOW__CORE__PARALLELISM": "7"}
        done, cpu = _crm("run", "--home", str(warm_home), "--as-of", today, env=other)
        assert "sets AIRFLOW__CORE__PARALLELISM otherwise than the warm server" in done.stderr
        assert done.returncode == 1 and "has not ended" in done.stdout + done.stderr  # the cold command answered
        # a Spark warehouse
        done, _ = _crm("run", "--home", str(warm_home), "--as-of", today, "--warehouse", f"spark://{tmp_path}/s")
        assert "a night on Spark runs in its own process" in done.stderr
        assert done.returncode == 1
        # --help is the command line's, never the server's
        done, _ = _crm("run", "--home", str(warm_home), "--help")
        assert done.returncode == 0 and "Usage: crm run" in done.stdout
        assert server.poll() is None
        assert warm_client.ask(warm_home, {"ping": True})["nights"] == 0

        # the package's code changes while the server runs: the night runs cold, the server
        # loads again in the same process (and so serves the changed code)
        module = Path(warm_client.__file__)
        stat = module.stat()
        os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        try:
            done, _ = _crm("run", "--home", str(warm_home), "--as-of", today)
            assert "started before the code or the libraries changed: it reloads" in done.stderr
            assert done.returncode == 1 and "has not ended" in done.stdout + done.stderr
            assert _renewed(server, warm_home)["pid"] == server.pid
        finally:
            os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        log = (warm_home / "logs" / "serve.log").read_text()
        assert "refused" in log and "renews itself after 0 night(s)" in log
        # stopped, it ends and takes its socket with it
        stopped, _ = _crm("serve", "--home", str(warm_home), "--stop")
        assert stopped.returncode == 0 and f"(PID {server.pid}) stops" in stopped.stdout
        assert _ended(server) == 0
        assert not warm_client.socket_path(warm_home).exists()
    finally:
        if server.poll() is None:
            server.kill()


def test_a_busy_server_an_interrupted_night_and_stop(homes):
    _cold_home, warm_home = homes
    stopped, _ = _crm("serve", "--home", str(warm_home), "--stop")
    assert stopped.returncode == 1 and f"no warm server serves {warm_home}" in stopped.stdout + stopped.stderr

    server = _start_server(warm_home)
    day = NEXT + timedelta(days=1)
    try:
        night = subprocess.Popen([CRM, "run", "--home", str(warm_home), "--as-of", day.isoformat()],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                                 cwd=settings.PROJECT_ROOT)
        deadline = time.monotonic() + 120
        while not (warm_client.ask(warm_home, {"ping": True}) or {}).get("busy"):
            assert time.monotonic() < deadline and night.poll() is None
            time.sleep(0.1)
        # Ctrl-C on the command interrupts the night in the server, which then loads afresh
        night.send_signal(signal.SIGINT)
        # a second night meanwhile is not taken: its command runs it in its own process,
        # where it meets the home's lock
        assert warm_client.run_warm(warm_home, ["run", "--home", str(warm_home), "--as-of", day.isoformat()]) is None
        out, err = night.communicate(timeout=300)
        assert night.returncode == 130, out[-2000:] + err[-2000:]
        assert "interrupted" in out + err
        assert _renewed(server, warm_home)["pid"] == server.pid
        assert _lock_is_free(warm_home)
        assert "interrupted: the server renews itself" in (warm_home / "logs" / "serve.log").read_text()
        # SIGTERM ends it, socket and all
        server.terminate()
        assert _ended(server) != 0
        assert not warm_client.socket_path(warm_home).exists()
    finally:
        if server.poll() is None:
            server.kill()


def test_messages_keep_their_bytes_and_descriptors_across_the_socket(tmp_path):
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    note = tmp_path / "note.txt"
    with left, right, open(note, "w") as handle:
        big = {"night": ["run", "--as-of", "2026-01-01"], "env": {f"K{i}": "v" * 100 for i in range(2000)}}
        # larger than the socket's buffer: sent while the other end reads, as client and server do
        sender = threading.Thread(target=warm_client.send_message, args=(left, big, [handle.fileno()]))
        sender.start()
        got, fds = warm_client.receive_message(right, max_fds=3)
        sender.join(timeout=30)
        assert got == big and len(fds) == 1
        with os.fdopen(fds[0], "w") as passed:  # the same open file, through the socket
            passed.write("written by the receiver\n")
    assert note.read_text() == "written by the receiver\n"


@pytest.mark.parametrize("argv, expected", [
    (["run", "--home", "h1", "--as-of", "2026-01-01"], "h1"),
    (["run", "--home=h2"], "h2"),
    (["backfill", "--home", "h1", "--from", "2026-01-01", "--home", "h3"], "h3"),
])
def test_the_home_of_a_night_is_the_one_its_arguments_name(argv, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert warm_client.home_of(argv) == tmp_path / expected


def test_without_home_a_night_uses_the_settings_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_HOME", str(tmp_path / "elsewhere"))
    assert warm_client.home_of(["run", "--as-of", "2026-01-01"]) == tmp_path / "elsewhere"


def test_an_interrupt_asked_of_a_night_stops_its_next_stage():
    """What the warm server records on a forwarded Ctrl-C (interrupts.py): a stage that
    starts afterwards raises KeyboardInterrupt, as Ctrl-C would, until the next night."""
    interrupts.clear()
    interrupts.check()  # nothing asked: no interrupt
    interrupts.request()
    with pytest.raises(KeyboardInterrupt):
        interrupts.check()
    interrupts.clear()
    interrupts.check()
