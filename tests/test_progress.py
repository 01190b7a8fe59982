"""Live progress of `crm run`: each stage is shown as it starts and ends, with how far a
dbt stage is, while the run goes on (read as it is emitted, not from the final summary);
on a terminal as a live display, in a log or CI as plain lines."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from helpers import PROJECT_ROOT

pytestmark = pytest.mark.slow

ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


def _read_as_it_comes(proc: subprocess.Popen, fd: int, timeout: float = 600) -> list[tuple[float, str]]:
    """(seconds since start, text) for every piece of output, until the process ends."""
    started = time.monotonic()
    pieces: list[tuple[float, str]] = []
    while time.monotonic() - started < timeout:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            pieces.append((time.monotonic() - started, chunk.decode(errors="replace")))
        elif proc.poll() is not None:
            break
    proc.wait(timeout=60)
    pieces.append((time.monotonic() - started, ""))
    return pieces


def _first(pieces: list[tuple[float, str]], pattern: str) -> float:
    """When the output first matched ``pattern`` (escape codes removed)."""
    seen = ""
    for at, text in pieces:
        seen += ANSI.sub("", text)
        if re.search(pattern, seen, re.M):
            return at
    raise AssertionError(f"{pattern!r} never shown:\n{ANSI.sub('', ''.join(t for _, t in pieces))[-3000:]}")


def _crm_run(home, as_of: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm-256color", "CRM_DBT_DOCS": "0"}
    return subprocess.Popen([sys.executable, "-m", "crm_pipeline.cli", "run", "--home", str(home), "--as-of", as_of,
                             "--customers", "300"], cwd=PROJECT_ROOT, env=env, **popen)


def test_a_terminal_sees_each_stage_and_the_dbt_node_count_while_the_run_goes_on(tmp_path):
    main, child = pty.openpty()
    proc = _crm_run(tmp_path / "home", "2026-03-31", stdin=subprocess.DEVNULL, stdout=child, stderr=child)
    os.close(child)
    try:
        pieces = _read_as_it_comes(proc, main)
    finally:
        os.close(main)
    assert proc.returncode == 0, ANSI.sub("", "".join(t for _, t in pieces))[-3000:]
    ended = pieces[-1][0]
    extract_done = _first(pieces, r"✓ extract")
    staging_nodes = _first(pieces, r"dbt_staging\s+node \d+ of \d+")
    marts_nodes = _first(pieces, r"dbt_marts\s+node \d+ of \d+")
    publish_done = _first(pieces, r"✓ publish")
    # shown as they happen, in order, not all at once when the run ends
    assert extract_done < staging_nodes < marts_nodes <= publish_done
    assert ended - extract_done > 10, (extract_done, ended)
    assert marts_nodes - extract_done > 5


def test_a_log_gets_one_plain_line_per_stage_event_as_it_happens(tmp_path):
    proc = _crm_run(tmp_path / "home", "2026-03-31", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT)
    pieces = _read_as_it_comes(proc, proc.stdout.fileno())
    output = "".join(t for _, t in pieces)
    assert proc.returncode == 0, output[-3000:]
    assert not ANSI.search(output), "escape codes in a log"
    ended = pieces[-1][0]
    times = {}
    for stage in ("extract", "dbt_staging", "clv_fit", "dbt_marts", "gate", "publish"):
        times[stage] = (_first(pieces, rf"^\d\d:\d\d:\d\d {stage} started$"),
                        _first(pieces, rf"^\d\d:\d\d:\d\d {stage} ok in \d+\.\ds$"))
    order = [at for stage in times for at in times[stage]]
    assert order == sorted(order)
    assert ended - times["extract"][1] > 10, (times, ended)
