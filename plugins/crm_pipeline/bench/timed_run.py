"""One timed ``crm run`` for the benchmark: the real nightly DAG in a child process whose
whole process tree's memory is sampled, then its run record read back from the warehouse
as seconds, rows and peak RSS per stage; with ``--warm``, the warm servers (``crm serve``)
the nights are handed to, their memory sampled with the run's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from crm_pipeline import warm_client
from crm_pipeline.bench.figures import RunFigures, StageFigure
from crm_pipeline.connections import WarehouseConfig
from crm_pipeline.contract import ENTITIES
from crm_pipeline.warehouse import Warehouse

#: models listed per run in the "slowest dbt models" table
SLOWEST_MODELS = 6


#: longest wait for a warm server to load
SERVER_LOAD_TIMEOUT_S = 300


class TreeSampler:
    """Samples the summed RSS of processes and all their descendants every ``interval``
    seconds; ``peak(start, end)`` over a stage's interval in ``ops.run_stages`` is that
    stage's peak RSS."""

    def __init__(self, *pids: int, interval: float = 0.2):
        import psutil

        self._roots = [psutil.Process(pid) for pid in pids]
        self._interval = interval
        self.samples: list[tuple[datetime, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            try:
                procs = [p for root in self._roots for p in (root, *root.children(recursive=True))]
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


def _crm_command() -> list[str]:
    exe = Path(sys.executable).parent / "crm"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("crm")
    return [found] if found else [sys.executable, "-c", "from crm_pipeline.cli import main; main()"]


class WarmServers:
    """A warm server (``crm serve``) per home the benchmark's nights run in: started before
    the home's first night, its load time kept apart from the nights, stopped at the end."""

    def __init__(self) -> None:
        self.procs: dict[Path, subprocess.Popen] = {}
        #: seconds from start until the server answered, per home folder's name
        self.load_seconds: dict[str, float] = {}

    def pid(self, home: Path) -> int:
        """The PID of the warm server of ``home``, started and loaded if it is not yet."""
        if home not in self.procs:
            t0 = time.perf_counter()
            with open(home / "bench-serve.out", "w") as out:
                proc = subprocess.Popen([*_crm_command(), "serve", "--home", str(home)], stdout=out,
                                        stderr=subprocess.STDOUT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            self.procs[home] = proc
            if not warm_client.wait_until_serving(home, proc, SERVER_LOAD_TIMEOUT_S):
                raise RuntimeError(f"the warm server of {home} did not start: see {home / 'bench-serve.out'}")
            self.load_seconds[home.name] = round(time.perf_counter() - t0, 1)
        return self.procs[home].pid

    def stop(self) -> None:
        for home, proc in self.procs.items():
            warm_client.ask(home, {"stop": True})
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def _sampled_child(cmd: list[str], out_path: Path, server_pid: int | None = None
                   ) -> tuple[int, float, TreeSampler, str]:
    """Run ``cmd`` with its output in ``out_path`` while its process tree (and the warm
    server's, if any) is sampled; returns its exit code, wall seconds, the sampler and its
    last lines (the reason when it failed)."""
    t0 = time.perf_counter()
    with open(out_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONWARNINGS": "ignore"})
        with TreeSampler(proc.pid, *([server_pid] if server_pid else [])) as sampler:
            rc = proc.wait()
    wall = time.perf_counter() - t0
    tail = " | ".join(
        line.strip() for line in out_path.read_text(errors="replace").strip().splitlines()[-3:])[:300]
    return rc, wall, sampler, tail


def run_pipeline(phase: str, label: str, home: Path, as_of: date, source: str, warehouse: str,
                 servers: WarmServers | None = None) -> RunFigures:
    """``crm run`` in a child process (handed to the home's warm server with ``servers``,
    except on Spark), sampled, then its run record read back."""
    cmd = [*_crm_command(), "run", "--home", str(home), "--as-of", as_of.isoformat(), "--source", source,
           "--warehouse", warehouse]
    server_pid = servers.pid(home) if servers is not None and not warehouse.startswith("spark:") else None
    rc, wall, sampler, tail = _sampled_child(cmd, home / f"bench-{phase}.out", server_pid)
    fig = RunFigures(phase, label, as_of, ok=rc == 0)
    if rc != 0:
        fig.message = tail
    _read_run_record(fig, warehouse, as_of, sampler)
    extracted = sum(s.rows or 0 for k, s in fig.stages.items() if k.startswith("extract:"))
    fig.stages["total"] = StageFigure(wall, extracted, sampler.peak())
    stage_sum = sum(s.seconds for k, s in fig.stages.items() if ":" not in k and k != "total")
    fig.stages["airflow_and_startup"] = StageFigure(max(0.0, wall - stage_sum), None, None)
    return fig


def _read_run_record(fig: RunFigures, warehouse: str, as_of: date, sampler: TreeSampler) -> None:
    try:
        # the run record: in the warehouse, or in a Spark warehouse's control file
        with Warehouse(WarehouseConfig.from_url(warehouse).control, read_only=True) as wh:
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
        if stage == "clv_fit" and info.get("uncertainty_seconds") is not None:
            # the CLV's parts: fit and predict, and the bands from the parameters' uncertainty
            fig.stages["clv_fit:fit_and_predict"] = StageFigure(
                float(info.get("fit_seconds") or 0.0) + float(info.get("predict_seconds") or 0.0), rows_n)
            fig.stages["clv_fit:uncertainty"] = StageFigure(float(info["uncertainty_seconds"]), rows_n)
        for model, model_s in (info.get("model_seconds") or {}).items():
            fig.slowest_models.append((stage, model, float(model_s)))
        tests = info.get("test_seconds") or {}
        if tests.get("n"):
            fig.dbt_tests[stage] = {"n": int(tests["n"]), "seconds": float(tests.get("seconds") or 0.0)}
    fig.slowest_models = sorted(fig.slowest_models, key=lambda t: -t[2])[:SLOWEST_MODELS]
    for entity, n, seconds in sorted(batches):
        peak = sampler.peak(*extract_window) if extract_window else None
        fig.stages[f"extract:{entity}"] = StageFigure(float(seconds or 0.0), int(n), peak)
