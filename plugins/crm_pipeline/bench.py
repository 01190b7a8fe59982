"""``crm bench``: the real nightly DAG at scale, timed stage by stage.

For each warehouse (DuckDB and/or PostgreSQL) it runs, through ``crm run`` (Airflow's
``dag.test``, dbt, CLV fit, gates, publish, docs: the job a user runs):

1. ``full``: the first load of a scaled PostgreSQL source (``crm demo-data --scale``);
2. ``increment``: the next day, after one day of changes (about 0.3% of the orders);
3. ``full_2x``/``increment_2x``: the same on a source with twice the history (twice the
   days and orders, same customers, the same number of changes that day).

Each run is a child process; the benchmark samples the resident memory of its whole
process tree (psutil, every 0.2 s), so every stage gets its own peak RSS from the samples
inside the stage's interval in ``ops.run_stages``. The reference readers (PostgreSQL
``COPY ... TO '/dev/null'``, DuckDB's postgres extension ``CREATE TABLE AS``, connectorx
into Arrow with 2 partitions and, unless ``--skip-naive``, pandas ``read_sql`` chunks into
DuckDB) read the same source in the same run, and extraction throughput is reported as a
ratio to the ``COPY`` ceiling, which carries between machines.

Targets (issue: DuckDB warehouse at scale L) are evaluated and printed for every scale,
but only binding at L; a missed target names the stage that took longest.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from crm_pipeline import scale as scaling
from crm_pipeline.contract import ENTITIES
from crm_pipeline.connections import WarehouseConfig, redact
from crm_pipeline.warehouse import Warehouse

#: the full load's date; the increment is the day after: an ordinary night inside a quarter
#: (the first night of a quarter also computes that quarter's credit snapshot once)
DEFAULT_AS_OF = date(2025, 6, 15)
PHASES = ("full", "increment", "full_2x", "increment_2x")
TARGETS = {
    "extract_vs_copy": 0.60,
    "full_seconds": 600.0,
    "full_peak_rss_mb": 4096.0,
    "increment_seconds": 120.0,
    "increment_2x_ratio": 1.3,
    "postgres_stage_vs_duckdb": 5.0,
}


# -- process-tree memory ---------------------------------------------------------------


class TreeSampler:
    """Samples the summed RSS of a process and all its descendants."""

    def __init__(self, pid: int, interval: float = 0.2):
        import psutil

        self._root = psutil.Process(pid)
        self._interval = interval
        self.samples: list[tuple[datetime, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            try:
                procs = [self._root, *self._root.children(recursive=True)]
            except psutil.Error:
                break
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.samples.append((datetime.now(timezone.utc).replace(tzinfo=None), total / 2**20))
            self._stop.wait(self._interval)

    def __enter__(self) -> "TreeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def peak(self, start: datetime | None = None, end: datetime | None = None) -> float | None:
        vals = [mb for t, mb in self.samples if (start is None or t >= start) and (end is None or t <= end)]
        return round(max(vals), 1) if vals else None


# -- one run -------------------------------------------------------------------------


@dataclass
class StageFigure:
    seconds: float
    rows: int | None = None
    peak_rss_mb: float | None = None

    @property
    def rows_per_s(self) -> float | None:
        if self.rows is None or not self.seconds:
            return None
        return round(self.rows / self.seconds, 1)

    def as_dict(self) -> dict:
        return {"seconds": round(self.seconds, 3), "rows": self.rows, "rows_per_s": self.rows_per_s,
                "peak_rss_mb": self.peak_rss_mb}


@dataclass
class RunFigures:
    phase: str
    warehouse: str
    as_of: date
    ok: bool
    message: str = ""
    stages: dict[str, StageFigure] = field(default_factory=dict)
    #: ``(dbt stage, model, seconds)`` of the slowest models, slowest first
    slowest_models: list[tuple[str, str, float]] = field(default_factory=list)
    #: per dbt stage, its data tests: how many ran and their seconds in all
    dbt_tests: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"phase": self.phase, "warehouse": self.warehouse, "as_of": self.as_of.isoformat(), "ok": self.ok,
                "message": self.message, "stages": {k: v.as_dict() for k, v in self.stages.items()},
                "slowest_models": [{"stage": st, "model": m, "seconds": sec} for st, m, sec in self.slowest_models],
                "dbt_tests": self.dbt_tests}


#: models listed per run in the "slowest dbt models" table
SLOWEST_MODELS = 6


def _crm_command() -> list[str]:
    exe = Path(sys.executable).parent / "crm"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("crm")
    return [found] if found else [sys.executable, "-c", "from crm_pipeline.cli import main; main()"]


def run_pipeline(phase: str, label: str, home: Path, as_of: date, source: str, warehouse: str) -> RunFigures:
    """``crm run`` in a child process, sampled, then its run record read back."""
    cmd = [*_crm_command(), "run", "--home", str(home), "--as-of", as_of.isoformat(), "--source", source,
           "--warehouse", warehouse]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    with open(home / f"bench-{phase}.out", "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        with TreeSampler(proc.pid) as sampler:
            rc = proc.wait()
    wall = time.perf_counter() - t0
    fig = RunFigures(phase, label, as_of, ok=rc == 0)
    if rc != 0:
        tail = (home / f"bench-{phase}.out").read_text(errors="replace").strip().splitlines()[-3:]
        fig.message = " | ".join(line.strip() for line in tail)[:300]
    _read_run_record(fig, warehouse, as_of, sampler)
    extracted = sum(s.rows or 0 for k, s in fig.stages.items() if k.startswith("extract:"))
    fig.stages["total"] = StageFigure(wall, extracted, sampler.peak())
    stage_sum = sum(s.seconds for k, s in fig.stages.items() if ":" not in k and k != "total")
    fig.stages["airflow_and_startup"] = StageFigure(max(0.0, wall - stage_sum), None, None)
    return fig


def _read_run_record(fig: RunFigures, warehouse: str, as_of: date, sampler: TreeSampler) -> None:
    try:
        with Warehouse(WarehouseConfig.from_url(warehouse), read_only=True) as wh:
            rows = wh.query("select run_id from ops.pipeline_runs where as_of = ? order by started_at desc limit 1",
                            (as_of,))
            if not rows:
                return
            run_id = rows[0][0]
            stages = wh.query("select stage, seconds, started_at, details from ops.run_stages where run_id = ? "
                              "order by started_at", (run_id,))
            batches = wh.query("select entity, rows_extracted, seconds from ops.extract_batches where run_id = ? "
                               "and as_of = ?", (run_id, as_of))
            raw_rows = sum(int(wh.scalar(f"select count(*) from raw.{e.name}")) for e in ENTITIES)
    except Exception as exc:  # noqa: BLE001 - a failed run may have no record: report, don't crash
        fig.message = (fig.message + f" | run record unreadable: {str(exc).splitlines()[0]}").strip(" |")
        return
    extract_window: tuple[datetime, datetime] | None = None
    for stage, seconds, started_at, details in stages:
        seconds = float(seconds or 0.0)
        start = started_at
        end = start + timedelta(seconds=seconds) if start else None
        info = json.loads(details or "{}")
        rows_n: int | None = None
        if stage == "extract":
            extract_window = (start, end)
            rows_n = sum(int(b[1]) for b in batches)
        elif stage in ("dbt_staging", "dbt_marts"):
            rows_n = raw_rows
        elif stage == "clv_fit":
            rows_n = info.get("n_customers")
        elif stage == "publish" and isinstance(info.get("tables"), dict):
            rows_n = int(sum(int(v or 0) for v in info["tables"].values()))
        fig.stages[stage] = StageFigure(seconds, rows_n, sampler.peak(start, end))
        for model, model_s in (info.get("model_seconds") or {}).items():
            fig.slowest_models.append((stage, model, float(model_s)))
        tests = info.get("test_seconds") or {}
        if tests.get("n"):
            fig.dbt_tests[stage] = {"n": int(tests["n"]), "seconds": float(tests.get("seconds") or 0.0)}
    fig.slowest_models = sorted(fig.slowest_models, key=lambda t: -t[2])[:SLOWEST_MODELS]
    for entity, n, seconds in sorted(batches):
        peak = sampler.peak(*extract_window) if extract_window else None
        fig.stages[f"extract:{entity}"] = StageFigure(float(seconds or 0.0), int(n), peak)


# -- reference readers -------------------------------------------------------------------


def _pg_plain(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://")


def reference_copy(source: str) -> dict:
    """``COPY (select * ...) TO '/dev/null'`` on the server for every entity: the ceiling.
    Falls back to ``COPY ... TO STDOUT`` into a discarding sink when the role may not write
    server files."""
    import psycopg2

    con = psycopg2.connect(_pg_plain(source))
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
    from crm_pipeline.extract.readers import postgres_extension_path as _postgres_extension_path, sql_string as _sql_string

    import duckdb

    path = Path(tempfile.mkdtemp(prefix="crm-bench-ref-")) / "ref.duckdb"
    con = duckdb.connect(str(path), config={"autoinstall_known_extensions": False,
                                            "autoload_known_extensions": False})
    try:
        con.execute(f"LOAD '{_postgres_extension_path()}'")
        con.execute(f"ATTACH {_sql_string(_pg_plain(source))} AS src (TYPE postgres, READ_ONLY)")
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
    table = cx.read_sql(_pg_plain(source), "select * from orders", return_type="arrow",
                        partition_on="order_id", partition_num=2)
    return {"rows": table.num_rows, "seconds": time.perf_counter() - t0}


def reference_pandas(source: str) -> dict:
    import duckdb
    import pandas as pd
    import sqlalchemy as sa

    from crm_pipeline.connections import sqlalchemy_url

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
    cmd = [sys.executable, "-c", "import sys, json; from crm_pipeline import bench; "
           "print(json.dumps(bench._reference_child(sys.argv[1], sys.argv[2])))", name, source]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["rows_per_s"] = round(out["rows"] / out["seconds"], 1) if out["seconds"] else None
    return out


def _reference_child(name: str, source: str) -> dict:
    import resource

    out = REFERENCES[name][1](source)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    return out


# -- the whole benchmark -------------------------------------------------------------------


def _database_url(url: str, dbname: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=dbname).render_as_string(hide_password=False)


def _admin_url(url: str) -> str:
    """The server's maintenance database (``postgres``): the named one may not exist yet."""
    return _database_url(url, "postgres")


def _recreate_database(url: str, dbname: str) -> str:
    """Drop and create ``dbname`` on the server of ``url`` (connecting to ``url``'s database)."""
    import psycopg2
    from psycopg2 import sql

    con = psycopg2.connect(_pg_plain(_admin_url(url)))
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s "
                    "and pid <> pg_backend_pid()", (dbname,))
        cur.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(dbname)))
        cur.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    con.close()
    return _database_url(url, dbname)


def _ensure_database(url: str, dbname: str) -> str:
    import psycopg2
    from psycopg2 import sql

    con = psycopg2.connect(_pg_plain(_admin_url(url)))
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute("select 1 from pg_database where datname = %s", (dbname,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    con.close()
    return _database_url(url, dbname)


def _dbname(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).database or "postgres"


@dataclass
class BenchResult:
    scale: str
    customers: int
    orders: int
    as_of: date
    runs: list[RunFigures] = field(default_factory=list)
    reference: dict[str, dict] = field(default_factory=dict)
    ratios: dict[str, float | None] = field(default_factory=dict)
    targets: list[dict] = field(default_factory=list)
    sources: dict[str, dict] = field(default_factory=dict)

    def run(self, phase: str, warehouse: str) -> RunFigures | None:
        for r in self.runs:
            if r.phase == phase and r.warehouse == warehouse:
                return r
        return None

    def as_dict(self) -> dict:
        return {
            "scale": self.scale, "customers": self.customers, "orders": self.orders, "as_of": self.as_of.isoformat(),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "memory_gb": _memory_gb()},
            "sources": self.sources,
            "runs": [r.as_dict() for r in self.runs],
            "reference": self.reference,
            "ratios": self.ratios,
            "targets": self.targets,
        }


def _memory_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # noqa: BLE001
        return None


def run_bench(scale_name: str, source: str, warehouses: list[str], home: Path, *, as_of: date = DEFAULT_AS_OF,
              skip_naive: bool = False, skip_reference: bool = False, phases: tuple[str, ...] = PHASES,
              on_event=None) -> BenchResult:
    """Everything ``crm bench`` does; ``on_event(text)`` reports progress."""
    customers, orders = scaling.parse_scale(scale_name)
    say = on_event or (lambda text: None)
    result = BenchResult(scale_name.upper(), customers, orders, as_of)
    home.mkdir(parents=True, exist_ok=True)
    base = _dbname(source)
    wh_targets: list[tuple[str, str]] = []  # (label, url or "duckdb")
    for w in warehouses:
        if w == "duckdb":
            wh_targets.append(("duckdb", "duckdb"))
        elif w == "postgres":
            wh_targets.append(("postgres", _database_url(source, f"{base}_warehouse")))
        elif w.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
            wh_targets.append(("postgres", w))
        else:
            raise ValueError(f"--warehouse {w!r}: use duckdb, postgres or a postgresql:// URL")

    for factor, (full, inc) in ((1, ("full", "increment")), (2, ("full_2x", "increment_2x"))):
        if full not in phases and inc not in phases:
            continue
        src = _ensure_database(source, f"{base}_h{factor}")
        say(f"source ×{factor} history: filling {customers:,} customers / {orders * factor:,} orders …")
        filled = scaling.ensure(src, customers=customers, orders=orders, until=as_of, history_factor=factor)
        result.sources[f"h{factor}"] = {"url": redact(src), "rows": filled.rows, "fill_seconds": round(filled.seconds, 1)}
        if factor == 1 and not skip_reference:
            for name in REFERENCES:
                if name == "pandas_read_sql" and skip_naive:
                    continue
                say(f"reference reader: {REFERENCES[name][0]} …")
                result.reference[name] = run_reference(name, src)
        urls: dict[str, str] = {}
        for label, target in wh_targets:
            wh_home = home / f"{label}-h{factor}"
            shutil.rmtree(wh_home, ignore_errors=True)
            wh_home.mkdir(parents=True)
            if target == "duckdb":
                urls[label] = f"duckdb:///{wh_home / 'warehouse.duckdb'}"
            else:
                urls[label] = _recreate_database(target, f"{_dbname(target)}_h{factor}")
        if full in phases:
            for label, _ in wh_targets:
                say(f"{full} on {label} …")
                result.runs.append(run_pipeline(full, label, home / f"{label}-h{factor}", as_of, src, urls[label]))
        if inc in phases:
            day = as_of + timedelta(days=1)
            say(f"source ×{factor} history: one day of changes ({day}) …")
            scaling.ensure(src, customers=customers, orders=orders, until=day, history_factor=factor)
            for label, _ in wh_targets:
                say(f"{inc} on {label} …")
                result.runs.append(run_pipeline(inc, label, home / f"{label}-h{factor}", day, src, urls[label]))
    _evaluate(result)
    return result


def _evaluate(result: BenchResult) -> None:
    ceiling = result.reference.get("copy_ceiling", {}).get("rows_per_s")
    full = result.run("full", "duckdb")
    if full and "extract" in full.stages:
        ours = full.stages["extract"].rows_per_s
        result.ratios["extract_rows_per_s"] = ours
        result.ratios["extract_vs_copy"] = round(ours / ceiling, 3) if ours and ceiling else None
    inc, inc2 = result.run("increment", "duckdb"), result.run("increment_2x", "duckdb")
    if inc and inc2 and inc.ok and inc2.ok:
        result.ratios["increment_2x_ratio"] = round(inc2.stages["total"].seconds / inc.stages["total"].seconds, 3)
    binding = result.scale == "L"

    def target(name: str, measured, limit, ok: bool | None, run: RunFigures | None, higher_is_better=False,
               within: str | None = None):
        bottleneck = None
        if ok is False and run is not None:
            candidates = {k: v.seconds for k, v in run.stages.items()
                          if (k.startswith(within) if within else ":" not in k and k != "total")}
            bottleneck = max(candidates, key=candidates.get) if candidates else None
            slowest = next(((m, sec) for st, m, sec in run.slowest_models if st == bottleneck), None)
            if slowest:  # a dbt stage: name its slowest model too
                bottleneck += f" ({slowest[0]} {slowest[1]:.1f} s)"
        result.targets.append({"target": name, "measured": measured, "limit": limit,
                               "ok": ok, "binding": binding, "bottleneck": bottleneck,
                               "direction": ">=" if higher_is_better else "<="})

    r = result.ratios.get("extract_vs_copy")
    target("extraction rows/s vs COPY ceiling", r, TARGETS["extract_vs_copy"],
           None if r is None else r >= TARGETS["extract_vs_copy"], full, higher_is_better=True, within="extract:")
    if full:
        t, m = full.stages["total"].seconds, full.stages["total"].peak_rss_mb
        target("full load seconds (DuckDB)", round(t, 1), TARGETS["full_seconds"],
               full.ok and t <= TARGETS["full_seconds"], full)
        target("full load peak RSS MB (DuckDB)", m, TARGETS["full_peak_rss_mb"],
               None if m is None else m <= TARGETS["full_peak_rss_mb"], full)
    if inc:
        t = inc.stages["total"].seconds
        target("increment seconds (DuckDB)", round(t, 1), TARGETS["increment_seconds"],
               inc.ok and t <= TARGETS["increment_seconds"], inc)
    r2 = result.ratios.get("increment_2x_ratio")
    if r2 is not None:
        target("increment on 2x history / increment (DuckDB)", r2, TARGETS["increment_2x_ratio"],
               r2 <= TARGETS["increment_2x_ratio"], inc2)
    for phase in PHASES:
        d, p = result.run(phase, "duckdb"), result.run(phase, "postgres")
        if not (d and p):
            continue
        worst, worst_stage = None, None
        for k, v in p.stages.items():
            if ":" in k or k in ("total", "airflow_and_startup") or k not in d.stages or not d.stages[k].seconds:
                continue
            ratio = v.seconds / max(d.stages[k].seconds, 0.5)
            if worst is None or ratio > worst:
                worst, worst_stage = ratio, k
        if worst is not None:
            result.ratios[f"postgres_vs_duckdb_worst_stage_{phase}"] = round(worst, 2)
            result.targets.append({"target": f"PostgreSQL stage vs DuckDB ({phase}, worst: {worst_stage})",
                                   "measured": round(worst, 2), "limit": TARGETS["postgres_stage_vs_duckdb"],
                                   "ok": p.ok and worst <= TARGETS["postgres_stage_vs_duckdb"], "binding": binding,
                                   "bottleneck": worst_stage if worst > TARGETS["postgres_stage_vs_duckdb"] else None,
                                   "direction": "<="})


# -- output ------------------------------------------------------------------------------


def render(result: BenchResult, console) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(console.width, 132), file=console.file)

    t = Table(title=f"crm bench, scale {result.scale}: {result.customers:,} customers, {result.orders:,} orders "
                    f"(×2 for *_2x), as of {result.as_of}")
    for col in ("phase", "warehouse", "stage", "seconds", "rows", "rows/s", "peak RSS MB"):
        t.add_column(col, justify="left" if col in ("phase", "warehouse", "stage") else "right")
    for run in result.runs:
        first = True
        for name, s in run.stages.items():
            t.add_row(run.phase if first else "", run.warehouse if first else "",
                      name + ("" if run.ok or name != "total" else " (FAILED)"),
                      f"{s.seconds:,.1f}", "" if s.rows is None else f"{s.rows:,}",
                      "" if s.rows_per_s is None else f"{s.rows_per_s:,.0f}",
                      "" if s.peak_rss_mb is None else f"{s.peak_rss_mb:,.0f}")
            first = False
        if run.message:
            t.add_row("", "", "message", run.message[:120], "", "", "")
        t.add_section()
    console.print(t)
    if any(run.slowest_models for run in result.runs):
        m = Table(title="slowest dbt models per run")
        for col in ("phase", "warehouse", "dbt stage", "model", "seconds"):
            m.add_column(col, justify="right" if col == "seconds" else "left")
        for run in result.runs:
            for i, (stage, model, sec) in enumerate(run.slowest_models):
                m.add_row(run.phase if i == 0 else "", run.warehouse if i == 0 else "", stage, model, f"{sec:,.1f}")
            for stage, tests in run.dbt_tests.items():  # next to the models: the stage's tests, all together
                m.add_row("", "", stage, f"(its {tests['n']:,} data tests)", f"{tests['seconds']:,.1f}")
            m.add_section()
        console.print(m)
    if result.reference:
        r = Table(title="reference readers on the same source")
        for col in ("reader", "seconds", "rows", "rows/s", "peak RSS MB"):
            r.add_column(col, justify="left" if col == "reader" else "right")
        for name, fig in result.reference.items():
            label = REFERENCES[name][0] + (f" [{fig.get('mode')}]" if fig.get("mode") else "")
            if "error" in fig:
                r.add_row(label, "failed: " + fig["error"][:60], "", "", "")
                continue
            r.add_row(label, f"{fig['seconds']:.1f}", f"{fig['rows']:,}", f"{fig['rows_per_s']:,.0f}",
                      f"{fig.get('peak_rss_mb', 0):,.0f}")
        ours = result.ratios.get("extract_rows_per_s")
        if ours:
            r.add_row("our extraction, all entities (full load, DuckDB)", "", "", f"{ours:,.0f}", "")
        console.print(r)
    if result.targets:
        g = Table(title="targets" + ("" if result.scale == "L" else " (binding at scale L only)"))
        for col in ("target", "measured", "limit", "verdict", "bottleneck"):
            g.add_column(col, justify="left" if col in ("target", "verdict", "bottleneck") else "right")
        for tg in result.targets:
            verdict = "n/a" if tg["ok"] is None else ("met" if tg["ok"] else "MISSED")
            g.add_row(tg["target"], "" if tg["measured"] is None else str(tg["measured"]),
                      f"{tg['direction']} {tg['limit']}", verdict, tg["bottleneck"] or "")
        console.print(g)
