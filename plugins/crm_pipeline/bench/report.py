"""The benchmark's verdict and report: the targets (binding for a DuckDB warehouse at
scale L, shown at every scale), the ratios they are judged on, and the tables ``crm bench``
prints."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from crm_pipeline.bench.figures import PHASES, BenchResult, RunFigures
from crm_pipeline.bench.reference import REFERENCES

TARGETS = {
    "extract_vs_copy": 0.80,
    "full_seconds": 600.0,
    "full_peak_rss_mb": 4096.0,
    "increment_seconds": 120.0,
    "increment_2x_ratio": 1.1,
    "postgres_stage_vs_duckdb": 3.0,
    # a night's cost follows what changed: the increment over the full load of the same run
    # (L's limit at L, S's at every other scale)
    "increment_vs_full": {"S": 0.20, "L": 0.10},
    # the fixed cost (the next night of a tiny source) over the increment
    "fixed_cost_vs_increment": 0.25,
    # the full load over the time of the COPY ceiling reading the same source
    "full_vs_copy_ceiling": 8.0,
    # fit, predict and the uncertainty bands over fit and predict alone (docs/rules.md "Lifetime value")
    "clv_with_uncertainty_vs_fit_predict": 5.0,
    # the embedded default (crm bench --scale demo): the next day over the first run
    "demo_next_day_vs_first_run": 0.25,
}


def evaluate(result: BenchResult) -> None:
    """The ratios (extraction vs the COPY ceiling, increment on twice the history vs the
    increment) and every target's verdict, naming the longest stage behind a miss."""
    ceiling = result.reference.get("copy_ceiling", {}).get("rows_per_s")
    full = result.run("full", "duckdb")
    if full and "extract" in full.stages:
        ours = full.stages["extract"].rows_per_s
        result.ratios["extract_rows_per_s"] = ours
        result.ratios["extract_vs_copy"] = round(ours / ceiling, 3) if ours and ceiling else None
    inc, inc2 = result.run("increment", "duckdb"), result.run("increment_2x", "duckdb")
    if inc and inc2 and inc.ok and inc2.ok:
        result.ratios["increment_2x_ratio"] = round(inc2.stages["total"].seconds / inc.stages["total"].seconds, 3)
    if full and inc and full.ok and inc.ok:
        result.ratios["increment_vs_full"] = round(inc.stages["total"].seconds / full.stages["total"].seconds, 3)
    fixed = result.run("fixed", "duckdb")
    if fixed and fixed.ok:
        result.ratios["fixed_cost_seconds"] = round(fixed.stages["total"].seconds, 1)
        if inc and inc.ok:
            result.ratios["fixed_cost_vs_increment"] = round(
                fixed.stages["total"].seconds / inc.stages["total"].seconds, 3)
    copy_seconds = result.reference.get("copy_ceiling", {}).get("seconds")
    if full and full.ok and copy_seconds:
        result.ratios["full_vs_copy_ceiling"] = round(full.stages["total"].seconds / copy_seconds, 2)
    first, nxt = result.run("first_run", "duckdb"), result.run("next_day", "duckdb")
    if first and nxt and first.ok and nxt.ok:
        result.ratios["demo_next_day_vs_first_run"] = round(
            nxt.stages["total"].seconds / first.stages["total"].seconds, 3)
    if full and "clv_fit:uncertainty" in full.stages and full.stages["clv_fit:fit_and_predict"].seconds:
        base = full.stages["clv_fit:fit_and_predict"].seconds
        result.ratios["clv_with_uncertainty_vs_fit_predict"] = round(
            (base + full.stages["clv_fit:uncertainty"].seconds) / base, 2)
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
    if result.scale != "DEMO":  # the demo scale has no COPY ceiling to compare with
        target("extraction rows/s vs COPY ceiling", r, TARGETS["extract_vs_copy"],
               None if r is None else r >= TARGETS["extract_vs_copy"], full, higher_is_better=True,
               within="extract:")
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
    ri = result.ratios.get("increment_vs_full")
    if ri is not None:
        limit = TARGETS["increment_vs_full"]["L" if result.scale == "L" else "S"]
        target("increment / full load (DuckDB)", ri, limit, ri <= limit, inc)
    rf = result.ratios.get("fixed_cost_vs_increment")
    if rf is not None:
        target(f"fixed cost ({result.ratios['fixed_cost_seconds']} s) / increment (DuckDB)", rf,
               TARGETS["fixed_cost_vs_increment"], rf <= TARGETS["fixed_cost_vs_increment"], fixed)
    rc = result.ratios.get("full_vs_copy_ceiling")
    if rc is not None:
        target("full load / COPY ceiling time (DuckDB)", rc, TARGETS["full_vs_copy_ceiling"],
               rc <= TARGETS["full_vs_copy_ceiling"], full)
    r2 = result.ratios.get("increment_2x_ratio")
    if r2 is not None:
        target("increment on 2x history / increment (DuckDB)", r2, TARGETS["increment_2x_ratio"],
               r2 <= TARGETS["increment_2x_ratio"], inc2)
    rd = result.ratios.get("demo_next_day_vs_first_run")
    if rd is not None:
        target("demo: next day / first run (DuckDB)", rd, TARGETS["demo_next_day_vs_first_run"],
               rd <= TARGETS["demo_next_day_vs_first_run"], nxt)
    ru = result.ratios.get("clv_with_uncertainty_vs_fit_predict")
    if ru is not None:
        target("CLV with uncertainty bands / fit and predict (DuckDB)", ru,
               TARGETS["clv_with_uncertainty_vs_fit_predict"], ru <= TARGETS["clv_with_uncertainty_vs_fit_predict"],
               full, within="clv_fit:")
    for phase in PHASES:  # no target yet: the same night on Spark
        d, s = result.run(phase, "duckdb"), result.run(phase, "spark")
        if d and s and d.ok and s.ok:
            result.ratios[f"spark_vs_duckdb_total_{phase}"] = round(s.stages["total"].seconds
                                                                   / max(d.stages["total"].seconds, 0.5), 2)
            worst = _worst_stage(d, s)
            if worst is not None:
                result.ratios[f"spark_vs_duckdb_worst_stage_{phase}"] = round(worst[0], 2)
    for phase in PHASES:
        d, p = result.run(phase, "duckdb"), result.run(phase, "postgres")
        if not (d and p):
            continue
        worst, worst_stage = _worst_stage(d, p) or (None, None)
        if worst is not None:
            result.ratios[f"postgres_vs_duckdb_worst_stage_{phase}"] = round(worst, 2)
            result.targets.append({"target": f"PostgreSQL stage vs DuckDB ({phase}, worst: {worst_stage})",
                                   "measured": round(worst, 2), "limit": TARGETS["postgres_stage_vs_duckdb"],
                                   "ok": p.ok and worst <= TARGETS["postgres_stage_vs_duckdb"], "binding": binding,
                                   "bottleneck": worst_stage if worst > TARGETS["postgres_stage_vs_duckdb"] else None,
                                   "direction": "<="})


def _worst_stage(duckdb_run, other) -> tuple[float, str] | None:
    """The stage of ``other`` slowest against the same stage of ``duckdb_run``: (ratio, stage)."""
    worst: tuple[float, str] | None = None
    for k, v in other.stages.items():
        if ":" in k or k in ("total", "airflow_and_startup") or k not in duckdb_run.stages \
                or not duckdb_run.stages[k].seconds:
            continue
        ratio = v.seconds / max(duckdb_run.stages[k].seconds, 0.5)
        if worst is None or ratio > worst[0]:
            worst = (ratio, k)
    return worst


def render(result: BenchResult, console: Console) -> None:
    """The figures as tables: stages per run, slowest dbt models, reference readers, targets."""
    console = Console(width=max(console.width, 132), file=console.file)

    t = Table(title=f"crm bench, scale {result.scale}: {result.customers:,} customers, {result.orders:,} orders"
                    + ("" if result.scale == "DEMO" else " (×2 for *_2x)") + f", as of {result.as_of}")
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
    if result.warm:
        loads = ", ".join(f"{home} {sec:.1f} s" for home, sec in result.server_load_seconds.items())
        console.print(f"every night ran in a warm server (`crm serve`); loading them, apart from the nights: {loads}",
                      highlight=False)
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
