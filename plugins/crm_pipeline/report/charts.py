"""The report's charts: Plotly figures built from the sections' frames, as JSON for the page.

Plotly draws them in the browser from one bundled script (``render``); every chart also
carries its numbers (labels on bars, values in hover and in the tables next to it).
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.utils import PlotlyJSONEncoder

from crm_pipeline.report.data import Section

FONT = ("Noto Sans CJK SC, Source Han Sans SC, Microsoft YaHei, PingFang SC, WenQuanYi Micro Hei, Segoe UI, "
        "Helvetica, Arial, sans-serif")
GRADE_COLOURS = {"AAA": "#1a7f37", "AA": "#4caf50", "A": "#9ccc65", "B": "#ffb300", "C": "#e53935",
                 "(not graded)": "#bdbdbd"}


def _layout(fig: go.Figure, title: str, height: int = 320, **kw) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0, "font": {"size": 14}}, height=height,
                      margin={"l": 60, "r": 20, "t": 40, "b": 50}, font={"family": FONT, "size": 12},
                      paper_bgcolor="white", plot_bgcolor="white", showlegend=kw.pop("showlegend", False), **kw)
    fig.update_xaxes(gridcolor="#eee")
    fig.update_yaxes(gridcolor="#eee")
    return fig


def _plain(value):
    """Plotly 6 stores numeric arrays as base64 typed arrays; the page keeps plain numbers, so
    that the figures read (and print) as the numbers they draw."""
    if isinstance(value, dict):
        if set(value) >= {"dtype", "bdata"}:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
            if "shape" in value:
                array = array.reshape([int(n) for n in str(value["shape"]).split(",")])
            return _plain(array.tolist())
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN: a gap in the chart
    return value


def _as_json(fig: go.Figure) -> str:
    return json.dumps(_plain(json.loads(json.dumps(fig.to_plotly_json(), cls=PlotlyJSONEncoder))), allow_nan=False)


def night(s: Section) -> list[str]:
    stages = s.frames.get("stages")
    if stages is None or stages.empty:
        return []
    fig = go.Figure(go.Bar(x=stages.seconds, y=stages.stage, orientation="h", text=stages.seconds, textposition="auto",
                           marker_color=["#e53935" if x != "ok" else "#1565c0" for x in stages.status]))
    fig.update_yaxes(autorange="reversed")
    return [_as_json(_layout(fig, "Seconds per stage", height=260))]


def value(s: Section) -> list[str]:
    out = []
    pyramid = s.frames.get("pyramid")
    if pyramid is not None and len(pyramid):
        fig = go.Figure(go.Bar(x=pyramid.customers, y=pyramid.value_tier, orientation="h",
                               text=[f"{c:,} · {float(v):,.0f}" for c, v in zip(pyramid.customers, pyramid.revenue)],
                               textposition="auto", marker_color="#1565c0"))
        fig.update_yaxes(autorange="reversed")
        out.append(_as_json(_layout(fig, "Customer pyramid: customers · revenue (trailing 12 months)")))
    curves = go.Figure()
    if "pareto" in s.frames:
        p = s.frames["pareto"]
        curves.add_trace(go.Scatter(x=p.customer_share, y=p.revenue_share, name="revenue (Pareto)", mode="lines"))
    if "whale" in s.frames and len(s.frames["whale"]):
        w = s.frames["whale"]
        curves.add_trace(go.Scatter(x=w.customer_share, y=w.cumulative_profit_share, name="profit (whale curve)",
                                    mode="lines"))
    if curves.data:
        curves.add_trace(go.Scatter(x=[0, 1], y=[0, 1], name="equal shares", mode="lines",
                                    line={"dash": "dot", "color": "#999"}))
        curves.update_xaxes(tickformat=".0%", title="share of customers (best first)")
        curves.update_yaxes(tickformat=".0%", title="cumulative share")
        out.append(_as_json(_layout(curves, "Pareto curve of revenue and whale curve of profit", showlegend=True)))
    abc = s.frames.get("abc")
    if abc is not None and len(abc):
        fig = go.Figure(go.Bar(x=abc.abc_class, y=abc.revenue, text=[f"{c:,} customers" for c in abc.customers],
                               textposition="auto", marker_color="#6a1b9a"))
        out.append(_as_json(_layout(fig, "ABC classes: revenue", height=260)))
    return out


def rfm(s: Section) -> list[str]:
    grid = s.frames.get("grid")
    if grid is None or grid.empty:
        return []
    counts = grid.pivot(index="r_score", columns="f_score", values="customers").sort_index(ascending=False)
    names = grid.pivot(index="r_score", columns="f_score", values="segment").reindex_like(counts)
    text = [[f"{'' if pd.isna(c) else int(c)}<br>{'' if pd.isna(n) else n}" for c, n in zip(rc, rn)]
            for rc, rn in zip(counts.to_numpy(), names.to_numpy())]
    fig = go.Figure(go.Heatmap(z=counts.to_numpy(), x=[f"F{c}" for c in counts.columns],
                               y=[f"R{r}" for r in counts.index], text=text, texttemplate="%{text}",
                               colorscale="Blues", showscale=False))
    return [_as_json(_layout(fig, "R × F: customers and segment", height=380))]


def retention(s: Section) -> list[str]:
    out = []
    months = s.frames.get("months")
    if months is not None and len(months):
        fig = go.Figure()
        for col, name in (("retention_rate", "retention"), ("churn_rate", "churn"), ("acquisition_rate", "acquisition")):
            fig.add_trace(go.Scatter(x=months.period_start.astype(str), y=months[col], name=name, mode="lines+markers"))
        fig.update_yaxes(tickformat=".0%")
        out.append(_as_json(_layout(fig, "Monthly retention, churn and acquisition rates", showlegend=True)))
        lost = go.Figure(go.Bar(x=months.period_start.astype(str), y=months.revenue_lost_churned, marker_color="#e53935"))
        out.append(_as_json(_layout(lost, "Yearly revenue lost with the customers who churned", height=260)))
    tri = s.frames.get("triangle")
    if tri is not None and len(tri):
        table = tri.pivot(index="cohort_month", columns="months_since_acquisition", values="retention_rate")
        fig = go.Figure(go.Heatmap(z=table.to_numpy(), x=[f"+{c}" for c in table.columns],
                                   y=[str(i)[:7] for i in table.index], texttemplate="%{z:.0%}",
                                   colorscale="Greens", showscale=False))
        fig.update_yaxes(autorange="reversed")
        out.append(_as_json(_layout(fig, "Cohort retention triangle (months since the first purchase)", height=460)))
    return out


def credit(s: Section) -> list[str]:
    out = []
    mix = s.frames.get("mix")
    if mix is not None and len(mix):
        fig = go.Figure()
        for grade in [g for g in GRADE_COLOURS if g in set(mix.credit_grade)]:
            part = mix[mix.credit_grade == grade]
            fig.add_trace(go.Bar(x=part.grade_quarter.astype(str), y=part.customers, name=grade,
                                 marker_color=GRADE_COLOURS[grade]))
        fig.update_layout(barmode="stack")
        fig.update_xaxes(type="category")
        out.append(_as_json(_layout(fig, "Grade mix per quarter", showlegend=True)))
    mig = s.frames.get("migration")
    if mig is not None and len(mig):
        table = mig.pivot_table(index="from_grade", columns="to_grade", values="customers", aggfunc="sum")
        order = {g: float(o) for g, o in zip(mig.from_grade, mig.from_grade_order) if pd.notna(o)} | {
            g: float(o) for g, o in zip(mig.to_grade, mig.to_grade_order) if pd.notna(o)}
        table = table.loc[sorted(table.index, key=lambda g: order.get(g, 99.0)),
                          sorted(table.columns, key=lambda g: order.get(g, 99.0))]
        fig = go.Figure(go.Heatmap(z=table.to_numpy(), x=list(table.columns), y=list(table.index),
                                   texttemplate="%{z}", colorscale="Oranges", showscale=False))
        fig.update_xaxes(title="to grade")
        fig.update_yaxes(title="from grade")
        out.append(_as_json(_layout(fig, f"Grade migration into the quarter from {mig.grade_quarter.iloc[0]}", height=360)))
    outcomes = s.frames.get("outcomes")
    if outcomes is not None and len(outcomes):
        latest = outcomes[outcomes.grade_quarter == outcomes.grade_quarter.max()]
        fig = go.Figure(go.Bar(x=latest.credit_grade, y=latest.bad_rate, marker_color="#e53935",
                               text=[f"{int(b)} of {int(c)}" for b, c in zip(latest.bad_customers, latest.customers)],
                               textposition="auto"))
        fig.update_yaxes(tickformat=".0%")
        out.append(_as_json(_layout(fig, f"Bad rate by grade, quarter from {latest.grade_quarter.iloc[0]}", height=280)))
    return out


def segments(s: Section) -> list[str]:
    out = []
    profiles = s.frames.get("profiles")
    if profiles is not None and len(profiles):
        fig = go.Figure([go.Bar(x=profiles.segment, y=profiles.customer_share, name="customers"),
                         go.Bar(x=profiles.segment, y=profiles.revenue_share, name="revenue")])
        fig.update_yaxes(tickformat=".0%")
        out.append(_as_json(_layout(fig, "Segment size and revenue share", showlegend=True)))
    pnl = s.frames.get("pnl")
    if pnl is not None and len(pnl):
        fig = go.Figure(go.Bar(x=pnl.segment, y=pnl.profit, text=[f"{float(v):,.0f}" for v in pnl.profit],
                               textposition="auto",
                               marker_color=["#1a7f37" if b else "#e53935" for b in pnl.is_break_even.astype(bool)]))
        out.append(_as_json(_layout(fig, "Segment P&L: profit", height=300)))
    mig = s.frames.get("migration")
    if mig is not None and len(mig):
        labels = sorted(set(mig.from_segment) | set(mig.to_segment))
        n = len(labels)
        fig = go.Figure(go.Sankey(node={"label": [f"{x} (before)" for x in labels] + [f"{x} (now)" for x in labels]},
                                  link={"source": [labels.index(x) for x in mig.from_segment],
                                        "target": [n + labels.index(x) for x in mig.to_segment],
                                        "value": [int(v) for v in mig.customers]}))
        out.append(_as_json(_layout(fig, "Segment migration since the previous published date", height=460)))
    return out


def lifetime_value(s: Section) -> list[str]:
    out = []
    dist = s.frames.get("distribution")
    if dist is not None and len(dist):
        fig = go.Figure(go.Bar(x=[f"{a:,.0f}–{b:,.0f}" for a, b in zip(dist["from"], dist["to"])], y=dist.customers,
                               marker_color="#00838f"))
        out.append(_as_json(_layout(fig, "12-month CLV: customers per band (twentieths)", height=300)))
    alive = s.frames.get("alive")
    if alive is not None and len(alive):
        table = alive.pivot(index="frequency_band", columns="idle_band", values="mean_prob_alive")
        fig = go.Figure(go.Heatmap(z=table.to_numpy(), x=[str(c) for c in table.columns],
                                   y=[("10+" if i == 10 else str(i)) for i in table.index], texttemplate="%{z:.2f}",
                                   colorscale="RdYlGn", zmin=0, zmax=1, showscale=False))
        fig.update_xaxes(title="time since the last purchase")
        fig.update_yaxes(title="repeat purchases")
        out.append(_as_json(_layout(fig, "P(alive) by repeat purchases and time since the last one", height=380)))
    calib = s.frames.get("calibration")
    if calib is not None and len(calib) and (calib.fit_status == "ok").all():
        groups = calib[calib.frequency_group != "all"]
        fig = go.Figure([go.Bar(x=groups.frequency_group, y=groups.actual_purchases_mean, name="actual"),
                         go.Bar(x=groups.frequency_group, y=groups.predicted_purchases_mean, name="predicted")])
        fig.update_xaxes(title="repeat purchases in the calibration period")
        out.append(_as_json(_layout(fig, "Holdout check: repeat purchases per customer", showlegend=True)))
    return out


def who_to_call(s: Section) -> list[str]:
    managers = s.facts.get("managers") or {}
    if not managers:
        return []
    names = list(managers)
    fig = go.Figure()
    for list_name in s.facts.get("counts", {}):
        fig.add_trace(go.Bar(x=names, y=[len(managers[m].get(list_name, [])) for m in names], name=list_name))
    fig.update_layout(barmode="stack")
    return [_as_json(_layout(fig, "Calls per account manager (short lists)", height=300, showlegend=True))]


CHARTS = {"night": night, "value": value, "rfm": rfm, "retention": retention, "credit": credit,
          "segments": segments, "clv": lifetime_value, "calls": who_to_call}
