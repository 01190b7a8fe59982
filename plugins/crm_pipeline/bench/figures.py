"""What ``crm bench`` measures: seconds, rows and peak memory per stage of one run, and
the whole benchmark's runs, reference readers, ratios and targets, each convertible to
the JSON that ``crm bench --json`` writes."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from datetime import date

#: the phases of a benchmark, in the order they run: the first load and the next night's
#: increment, then the same on a source with twice the history, then the fixed cost: the
#: next night of a tiny source (everything it spends is what any night spends)
PHASES = ("full", "increment", "full_2x", "increment_2x", "fixed")


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
    #: whether every night was handed to a warm server (``crm bench --warm``)
    warm: bool = False
    #: with ``warm``: each server's seconds from start until it answered, per home folder
    server_load_seconds: dict[str, float] = field(default_factory=dict)

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
            "warm": self.warm,
            "server_load_seconds": self.server_load_seconds,
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
