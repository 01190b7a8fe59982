"""The nightly report: written by every run and by `crm report`, its figures equal the
published tables, and headless Chromium (networking disabled) draws every section.

The figures are recounted here with SQL on the published tables and compared with the
numbers the page carries (chart data and takeaways), never with the report's own frames.
"""

from __future__ import annotations

import html
import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import headless_chromium
from wap_helpers import BASE_AS_OF, baseline_home, copy_home, open_wh, run_cli

pytestmark = pytest.mark.slow

DBT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"
SECTIONS = ["night", "value", "rfm", "retention", "credit", "segments", "clv", "calls"]
#: where the browser test leaves its screenshot (git ignores the folder)
SCREENSHOT = Path(__file__).resolve().parents[1] / ".pytest_cache" / "report" / "report-browser.png"


class _Figures(HTMLParser):
    """The Plotly figures of a page per section, in order."""

    def __init__(self):
        super().__init__()
        self.section, self.figures = None, {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.section = attrs.get("data-section")
        if "data-figure" in attrs:
            self.figures.setdefault(self.section, []).append(json.loads(attrs["data-figure"]))


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return baseline_home(tmp_path_factory)  # read only here; tests that change it work on a copy


@pytest.fixture(scope="module")
def page(home):
    path = home / "docs" / "report" / f"{BASE_AS_OF}.html"
    parser = _Figures()
    parser.feed(path.read_text(encoding="utf-8"))
    return path, parser.figures


def test_every_run_writes_the_report_and_the_index(home, page):
    path, figures = page
    assert path.exists() and (home / "docs" / "report" / "index.html").exists()
    assert (home / "docs" / "report" / "plotly.min.js").exists()
    assert path.stat().st_size < 3 * 1024 * 1024
    assert set(figures) == set(SECTIONS)
    text = path.read_text(encoding="utf-8")
    assert "cdn." not in text and "https://" not in text  # nothing to fetch


def test_the_figures_equal_the_published_tables(home, page):
    path, figures = page
    text = path.read_text(encoding="utf-8")
    with open_wh(f"duckdb:///{home / 'warehouse.duckdb'}") as wh:
        tiers = dict(wh.query("select value_tier, count(*) from published.customer_value_tiers group by 1"))
        buyers = wh.scalar("select count(*) from published.customer_value_tiers where revenue_rank is not null")
        vip_share = wh.scalar("select sum(case when value_tier = 'VIP' then trailing_12m_revenue else 0 end) "
                              "/ sum(trailing_12m_revenue) from published.customer_value_tiers "
                              "where revenue_rank is not null")
        grades = wh.query("select cast(grade_quarter as varchar), coalesce(credit_grade, '(not graded)'), count(*) "
                          "from published.customer_credit_grades group by 1, 2")
        migration = wh.query("select from_grade, to_grade, customers from published.credit_grade_migration")
        top20 = wh.scalar("select top20_revenue_share from published.pareto_concentration where as_of = ?",
                          (BASE_AS_OF,))
    pyramid = figures["value"][0]["data"][0]
    assert dict(zip(pyramid["y"], pyramid["x"])) == tiers
    assert f"{tiers['VIP']} VIP customers, {100 * tiers['VIP'] / buyers:.0f} % of buyers, bring " \
           f"{100 * float(vip_share):.0f} % of revenue" in text
    pareto = figures["value"][1]["data"][0]
    k = -(-20 * buyers // 100)  # the first ceil(20 % x buyers) buyers
    assert pareto["x"][20] == pytest.approx(k / buyers)
    assert pareto["y"][20] == pytest.approx(float(top20), abs=1e-6)
    mix = {}
    for trace in figures["credit"][0]["data"]:
        for quarter, n in zip(trace["x"], trace["y"]):
            mix[(quarter[:10], trace["name"])] = n
    assert mix == {(q[:10], g): n for q, g, n in grades}
    if migration:  # the first night has a single graded quarter: nothing migrated yet
        heat = figures["credit"][1]["data"][0]
        cells = {(f, t): z for f, row in zip(heat["y"], heat["z"]) for t, z in zip(heat["x"], row) if z is not None}
        assert cells == {(f, t): n for f, t, n in migration}


def test_lifetime_value_and_the_call_lists_equal_the_published_tables(home, page):
    path, figures = page
    text = html.unescape(path.read_text(encoding="utf-8"))
    with open_wh(f"duckdb:///{home / 'warehouse.duckdb'}") as wh:
        clv = wh.query_df("select clv_12m, prob_alive, frequency, recency, t from published.customer_lifetime_value "
                          "where as_of = ? and clv_12m is not null", (BASE_AS_OF,))
        segments = wh.query_df("select customer_id, value_tier from published.customer_segments")
        churn = wh.query_df("select customer_id, is_dormant, is_top_customer_decline, is_lost "
                            "from published.customer_churn")
    values = clv.clv_12m.astype(float).sort_values(ascending=False)
    top = values.head(max(1, len(values) // 10)).sum()
    assert (f"{len(values):,} buyers worth {values.sum():,.0f} of margin in the next 12 months; the top 10 % "
            f"hold {100 * top / values.sum():.0f} %") in text
    bands = figures["clv"][0]["data"][0]
    assert bands["y"] == [len(g) for g in np.array_split(np.sort(values.to_numpy()), 20)]  # twentieths, as ntile
    heat = figures["clv"][1]["data"][0]
    idle = clv.t.astype(float) - clv.recency.astype(float)
    clv["idle"] = pd.cut(idle, bins=[-1e9, 4, 13, 26, 52, 1e9], labels=["<1 m", "1-3 m", "3-6 m", "6-12 m", ">12 m"])
    clv["freq"] = clv.frequency.clip(upper=10).map(lambda f: "10+" if f == 10 else str(int(f)))
    expected = clv.groupby(["freq", "idle"], observed=True).prob_alive.mean()
    shown = {(f, i): z for f, row in zip(heat["y"], heat["z"]) for i, z in zip(heat["x"], row) if z is not None}
    assert shown.keys() == set(expected.index)
    assert all(shown[k] == pytest.approx(float(v), abs=1e-6) for k, v in expected.items())
    # the large tiers come from the dbt var, as the report's do
    tiers = yaml.safe_load((DBT_DIR / "dbt_project.yml").read_text())["vars"]["large_customer_tiers"]
    joined = segments.merge(churn, on="customer_id")
    at_risk = joined[joined.value_tier.isin(tiers) & (joined.is_dormant | joined.is_top_customer_decline
                                                      | joined.is_lost)]
    assert f"At risk ({' and '.join(tiers)}) {len(at_risk)};" in text


def test_crm_report_writes_any_published_date_and_refuses_others(home, tmp_path):
    home = copy_home(home, tmp_path / "home")
    out = tmp_path / "night.html"
    result = run_cli(["report", "--home", home, "--as-of", BASE_AS_OF.isoformat(), "--out", out])
    assert result.exit_code == 0, result.output
    assert out.exists() and (tmp_path / "plotly.min.js").exists()
    refused = run_cli(["report", "--home", home, "--as-of", "2026-01-01"])
    assert refused.exit_code == 1 and "2026-01-01 was never published" in refused.output
    assert "Traceback" not in refused.output


def test_a_section_whose_table_is_not_published_says_so(home, tmp_path):
    copy = copy_home(home, tmp_path / "home")
    with open_wh(f"duckdb:///{copy / 'warehouse.duckdb'}") as wh:
        wh.execute("drop table published.segment_profiles")
    result = run_cli(["report", "--home", copy])
    assert result.exit_code == 0, result.output
    text = (copy / "docs" / "report" / f"{BASE_AS_OF}.html").read_text(encoding="utf-8")
    segment = text[text.index('data-section="segments"'):text.index('data-section="clv"')]
    assert "Not published yet: segment_profiles." in segment
    assert 'data-section="calls"' in text  # the sections after it are still there


@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium("--window-size=1200,900", "--host-resolver-rules=MAP * ~NOTFOUND",  # no network
                               browser_log=True)
    try:
        yield driver
    finally:
        driver.quit()


def test_every_section_is_drawn_in_a_real_browser_offline(page, browser):
    path, figures = page
    browser.get(path.as_uri())
    deadline = time.monotonic() + 60
    drawn = {}
    while time.monotonic() < deadline:
        drawn = browser.execute_script(
            "const out = {};"
            "document.querySelectorAll('section[data-section]').forEach(s => {"
            "  const svgs = [...s.querySelectorAll('svg.main-svg')].filter(g => g.getBoundingClientRect().width > 0"
            "    && g.querySelectorAll('path, rect, text').length > 0);"
            "  out[s.dataset.section] = svgs.length; });"
            "return out;")
        if all(drawn.get(k, 0) >= len(figures.get(k, [])) > 0 for k in SECTIONS):
            break
        time.sleep(0.5)
    assert all(drawn.get(k, 0) > 0 for k in SECTIONS), drawn
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    assert browser.execute_script("return typeof Plotly") == "object"
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(name.startswith("file://") for name in loaded), loaded
    body = browser.execute_script("return document.body.innerText")
    assert re.search(r"\d+ VIP customers", body)
    browser.set_window_size(1200, 2400)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))


def test_a_report_that_cannot_be_written_is_a_warning_not_a_failure(home, tmp_path, monkeypatch):
    from crm_pipeline import pipeline

    copy = copy_home(home, tmp_path / "home")
    (copy / "docs").mkdir(exist_ok=True)
    (copy / "docs" / "report").write_text("a file where the report folder should be")
    monkeypatch.setenv("CRM_HOME", str(copy))
    monkeypatch.setenv("AIRFLOW_CONN_CRM_WAREHOUSE", f"duckdb:///{copy / 'warehouse.duckdb'}")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_SOURCE", f"sqlite:///{copy / 'source.sqlite'}")
    result = pipeline.report("manual-report-test", BASE_AS_OF)
    assert "error" in result and "Traceback" not in result["error"]
    with open_wh(f"duckdb:///{copy / 'warehouse.duckdb'}") as wh:
        assert wh.query("select status from ops.run_stages where run_id = 'manual-report-test' "
                        "and stage = 'report'") == [("failed",)]
        assert wh.scalar("select count(*) from published.customer_segments") > 0  # nothing unpublished
