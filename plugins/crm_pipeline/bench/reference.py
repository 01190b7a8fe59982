"""The benchmark's reference readers: other ways to read the same source (PostgreSQL
``COPY`` to nowhere, the ceiling; DuckDB's postgres extension; connectorx; naive pandas
``read_sql``), each in its own child process so that its peak RSS is its own."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import sqlalchemy as sa

from crm_pipeline.bench.databases import plain_postgres_url
from crm_pipeline.connections import sqlalchemy_url
from crm_pipeline.contract import ENTITIES
from crm_pipeline.extract.readers import postgres_extension_path, sql_string


def reference_copy(source: str) -> dict:
    """``COPY (select * ...) TO '/dev/null'`` on the server for every entity: the ceiling.
    Falls back to ``COPY ... TO STDOUT`` into a discarding sink when the role may not write
    server files."""
    con = psycopg2.connect(plain_postgres_url(source))
    con.autocommit = True
    rows = 0
    seconds = 0.0
    mode = "server"

    class _Sink:
        def write(self, data):  # noqa: D401 - a file-like that drops everything
            return len(data)

    with con.cursor() as cur:
        for e in ENTITIES:
            cur.execute(f"select count(*) from {e.name}")  # not timed: only the COPY is
            rows += int(cur.fetchone()[0])
            t0 = time.perf_counter()
            try:
                cur.execute(f"copy (select * from {e.name}) to '/dev/null'")
            except psycopg2.Error:
                mode = "client"
                cur.copy_expert(f"copy (select * from {e.name}) to stdout", _Sink())
            seconds += time.perf_counter() - t0
    con.close()
    return {"rows": rows, "seconds": seconds, "mode": mode}


def reference_duckdb_ctas(source: str) -> dict:
    import duckdb

    path = Path(tempfile.mkdtemp(prefix="crm-bench-ref-")) / "ref.duckdb"
    con = duckdb.connect(str(path), config={"autoinstall_known_extensions": False,
                                            "autoload_known_extensions": False})
    try:
        con.execute(f"LOAD '{postgres_extension_path()}'")
        con.execute(f"ATTACH {sql_string(plain_postgres_url(source))} AS src (TYPE postgres, READ_ONLY)")
        t0 = time.perf_counter()
        con.execute("create table orders as select * from src.public.orders")
        seconds = time.perf_counter() - t0
        rows = int(con.execute("select count(*) from orders").fetchone()[0])
    finally:
        con.close()
        shutil.rmtree(path.parent, ignore_errors=True)
    return {"rows": rows, "seconds": seconds}


def reference_connectorx(source: str) -> dict:
    import connectorx as cx

    t0 = time.perf_counter()
    table = cx.read_sql(plain_postgres_url(source), "select * from orders", return_type="arrow",
                        partition_on="order_id", partition_num=2)
    return {"rows": table.num_rows, "seconds": time.perf_counter() - t0}


def reference_pandas(source: str) -> dict:
    import duckdb
    import pandas as pd

    engine = sa.create_engine(sqlalchemy_url(source))
    path = Path(tempfile.mkdtemp(prefix="crm-bench-ref-")) / "ref.duckdb"
    con = duckdb.connect(str(path))
    rows = 0
    t0 = time.perf_counter()
    try:
        with engine.connect().execution_options(stream_results=True) as sc:
            for i, chunk in enumerate(pd.read_sql("select * from orders", sc, chunksize=100_000)):
                con.register("chunk", chunk)
                con.execute("create table orders as select * from chunk" if i == 0 else
                            "insert into orders select * from chunk")
                con.unregister("chunk")
                rows += len(chunk)
        seconds = time.perf_counter() - t0
    finally:
        con.close()
        engine.dispose()
        shutil.rmtree(path.parent, ignore_errors=True)
    return {"rows": rows, "seconds": seconds}


REFERENCES = {
    "copy_ceiling": ("PostgreSQL COPY ... TO '/dev/null' (all entities; the ceiling)", reference_copy),
    "duckdb_postgres_ctas": ("DuckDB postgres extension, CREATE TABLE AS (orders)", reference_duckdb_ctas),
    "connectorx_arrow": ("connectorx → Arrow, 2 partitions (orders)", reference_connectorx),
    "pandas_read_sql": ("pandas read_sql chunks → DuckDB, naive (orders)", reference_pandas),
}


def run_reference(name: str, source: str) -> dict:
    """One reference reader in a child process (its own peak RSS)."""
    cmd = [sys.executable, "-c", "import sys, json; from crm_pipeline.bench import reference; "
           "print(json.dumps(reference.reference_child(sys.argv[1], sys.argv[2])))", name, source]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["rows_per_s"] = round(out["rows"] / out["seconds"], 1) if out["seconds"] else None
    return out


def reference_child(name: str, source: str) -> dict:
    """The body of ``run_reference``'s child process: one reader and the process's peak RSS."""
    out = REFERENCES[name][1](source)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    return out
