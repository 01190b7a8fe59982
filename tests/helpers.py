"""Shared test helpers: ordered checksums of published tables by warehouse URL, and the
``crm`` command in a fresh process (used by the source, backfill and extraction tests)."""

from __future__ import annotations

import hashlib
import os
import re
import select
import subprocess
import sys
import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: columns that legitimately differ between two runs of the same date (timings, ids,
#: clocks); they are left out of the published checksum
VOLATILE = re.compile(r"^(run_id|published_at|loaded_at|_loaded_at|fitted_at|generated_at|seconds)$|_seconds$")


def _value_text(v) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, float):
        return repr(round(v, 9)) if v == v else "nan"
    if isinstance(v, Decimal):
        return repr(round(float(v), 9))
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return str(v)


def comparable(value):
    """A value as two engines' results are compared: decimals to six places, floats to
    nine significant digits, dates and times as ISO text."""
    if isinstance(value, Decimal):
        return round(float(value), 6)
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return value


def comparable_rows(rows) -> list[tuple]:
    """Rows of ``comparable`` values, sorted (nulls last in each column)."""
    out = [tuple(comparable(v) for v in r) for r in rows]
    return sorted(out, key=lambda r: tuple((v is None, str(v)) for v in r))


def _connect(warehouse_url: str):
    if warehouse_url.startswith("duckdb:///"):
        import duckdb

        return "duckdb", duckdb.connect(warehouse_url[len("duckdb:///"):], read_only=True)
    import psycopg2

    return "postgres", psycopg2.connect(warehouse_url.replace("postgresql+psycopg2://", "postgresql://"))


def _query(kind, con, sql, params=()):
    if kind == "duckdb":
        cur = con.execute(sql, list(params))
        return [d[0] for d in cur.description], cur.fetchall()
    with con.cursor() as cur:
        cur.execute(sql.replace("?", "%s"), params or None)
        return [d[0] for d in cur.description], cur.fetchall()


def published_tables(warehouse_url: str, schema: str = "published") -> list[str]:
    kind, con = _connect(warehouse_url)
    try:
        _, rows = _query(kind, con, "select table_name from information_schema.tables where table_schema = ? "
                                    "order by table_name", (schema,))
        return [r[0] for r in rows]
    finally:
        con.close()


def table_checksum(warehouse_url: str, table: str, where: str = "", schema: str = "published") -> tuple[int, str]:
    """(rows, sha256) of a table's rows, sorted, over its non-volatile columns."""
    kind, con = _connect(warehouse_url)
    try:
        cols, _ = _query(kind, con, f"select * from {schema}.{table} where 1 = 0")
        keep = [c for c in cols if not VOLATILE.search(c)]
        _, rows = _query(kind, con, f"select {', '.join(keep)} from {schema}.{table} {where}")
    finally:
        con.close()
    return _digest(keep, rows)


def _digest(cols: list[str], rows: list) -> tuple[int, str]:
    lines = sorted("\x1f".join(_value_text(v) for v in r) for r in rows)
    h = hashlib.sha256(("\x1f".join(cols) + "\n").encode())
    for line in lines:
        h.update(line.encode("utf-8", "surrogatepass") + b"\n")
    return len(lines), h.hexdigest()


def published_checksum_url(warehouse_url: str, schema: str = "published") -> dict[str, tuple[int, str]]:
    """An ordered checksum of every table in ``published`` of the warehouse at a URL."""
    return {t: table_checksum(warehouse_url, t, schema=schema) for t in published_tables(warehouse_url, schema)}


def crm(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the ``crm`` command in a fresh process (each run imports Airflow afresh)."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "crm_pipeline.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=PROJECT_ROOT, timeout=timeout)


def psycopg2_url(url: str) -> str:
    """The URL for SQLAlchemy with psycopg2 (SQLAlchemy 2.1 defaults to psycopg 3 for postgresql://)."""
    return url.replace("postgresql://", "postgresql+psycopg2://", 1) if url.startswith("postgresql://") else url


def headless_chromium(*arguments: str, browser_log: bool = False):
    """Debian's chromium under its chromedriver, headless, with ``arguments`` added (for
    example a host-resolver rule that cuts the network); the caller quits it."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and chromedriver, "Debian's chromium and chromium-driver are needed (.ci/run installs them)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *arguments):
        options.add_argument(argument)
    if browser_log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(60)
    return driver


ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


def read_as_it_comes(proc: subprocess.Popen, fd: int, timeout: float = 600) -> list[tuple[float, str]]:
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


def first_match(pieces: list[tuple[float, str]], pattern: str) -> float:
    """When the output first matched ``pattern`` (escape codes removed)."""
    seen = ""
    for at, text in pieces:
        seen += ANSI.sub("", text)
        if re.search(pattern, seen, re.M):
            return at
    raise AssertionError(f"{pattern!r} never shown:\n{ANSI.sub('', ''.join(t for _, t in pieces))[-3000:]}")


#: the installed ``crm`` entry point (crm_pipeline.warm_client:main): a night goes to the
#: home's warm server when one runs
CRM_COMMAND = str(Path(sys.executable).parent / "crm")


def start_warm_server(home: Path, env: dict | None = None, timeout: float = 300) -> subprocess.Popen:
    """``crm serve --home HOME`` in a child process, returned once it answers."""
    from crm_pipeline import warm_client

    proc = subprocess.Popen([CRM_COMMAND, "serve", "--home", str(home)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}, cwd=PROJECT_ROOT)
    if not warm_client.wait_until_serving(home, proc, timeout):
        assert proc.poll() is None, proc.stdout.read()
        raise AssertionError(f"the warm server did not answer within {timeout} s")
    return proc


def stop_warm_server(proc: subprocess.Popen, home: Path) -> int:
    """Ask the warm server to stop and return its exit code (killed after two minutes)."""
    from crm_pipeline import warm_client

    warm_client.ask(home, {"stop": True})
    try:
        return proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
