"""Live progress of `crm run`: each stage is shown as it starts and ends, with how far a
dbt stage is, while the run goes on (read as it is emitted, not from the final summary);
on a terminal as a live display (here), in a log or CI as plain lines
(``tests/test_run_records.py``, whose busy-home night is read as it runs)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from helpers import ANSI, PROJECT_ROOT, first_match, read_as_it_comes

pytestmark = pytest.mark.slow

def _crm_run(home, as_of: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm-256color", "CRM_DBT_DOCS": "0"}
    return subprocess.Popen([sys.executable, "-m", "crm_pipeline.cli", "run", "--home", str(home), "--as-of", as_of,
                             "--customers", "300"], cwd=PROJECT_ROOT, env=env, **popen)


def test_a_terminal_sees_each_stage_and_the_dbt_node_count_while_the_run_goes_on(tmp_path):
    main, child = pty.openpty()
    proc = _crm_run(tmp_path / "home", "2026-03-31", stdin=subprocess.DEVNULL, stdout=child, stderr=child)
    os.close(child)
    try:
        pieces = read_as_it_comes(proc, main)
    finally:
        os.close(main)
    assert proc.returncode == 0, ANSI.sub("", "".join(t for _, t in pieces))[-3000:]
    ended = pieces[-1][0]
    extract_done = first_match(pieces, r"✓ extract")
    staging_nodes = first_match(pieces, r"dbt_staging\s+node \d+ of \d+")
    marts_nodes = first_match(pieces, r"dbt_marts\s+node \d+ of \d+")
    publish_done = first_match(pieces, r"✓ publish")
    # shown as they happen, in order, not all at once when the run ends
    assert extract_done < staging_nodes < marts_nodes <= publish_done
    assert ended - extract_done > 10, (extract_done, ended)
    assert marts_nodes - extract_done > 5
