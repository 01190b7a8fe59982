"""Data Docs keep their cost: gate 2's Great Expectations run over many nights lists only
the last INDEX_NIGHTS runs' validations on the index page (it reads every result it
lists), keeps every run's pages, renders the pages of earlier nights no more (nor a
suite's page while its expectations stay the same), and points
only the pages a build wrote at the shipped assets (docs/design.md, "Data Docs keep
their cost")."""

from __future__ import annotations

import os
import re
import time
from datetime import date, timedelta

import pandas as pd

from crm_pipeline.docs_site import CDN_ASSETS, localise_data_docs, remote_loads
from crm_pipeline.gates.audit_datasets import Dataset
from crm_pipeline.gates import audit_gx
from crm_pipeline.gates.audit_gx import INDEX_NIGHTS, run_gate2_gx

NIGHTS = INDEX_NIGHTS + 3
FIRST = date(2026, 3, 1)


def _datasets(night: int) -> list[Dataset]:
    frame = pd.DataFrame({"customer_id": [1, 2, 3 + night], "value": [1.0, 2.0, float(night)]})
    # the second suite carries a figure of the night, as the checks against what is published do
    between = {"column": "value", "min_value": 0, "max_value": 100 + night}
    return [
        Dataset("audit.first", frame, [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}}]),
        Dataset("audit.second", frame, [{"type": "expect_column_values_to_be_between", "kwargs": between}]),
    ]


def _listed_nights(index_html: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for night in re.findall(r"gate2 as_of (\d{4}-\d\d-\d\d)", index_html):
        counts[night] = counts.get(night, 0) + 1
    return counts


def test_the_index_lists_the_last_nights_and_earlier_pages_are_kept_untouched(tmp_path):
    docs = tmp_path / "docs" / "gx"
    nights = [FIRST + timedelta(days=n) for n in range(NIGHTS)]
    first_pages: dict = {}
    suite_pages: list[dict] = []
    for n, night in enumerate(nights):
        results = run_gate2_gx(_datasets(n), docs, night)
        assert [[r.success for r in suite] for suite in results] == [[True], [True]]
        if n == 0:
            first_pages = {page: page.stat().st_mtime_ns for page in (docs / "validations").rglob("*.html")}
            assert len(first_pages) == 2  # one page per dataset of the first night
        suite_pages.append({page.stem: page.stat().st_mtime_ns for page in (docs / "expectations").rglob("*.html")})
    # a suite's page is rendered once while its expectations stay, again when they change
    assert {pages["audit_first"] for pages in suite_pages} == {suite_pages[0]["audit_first"]}
    assert len({pages["audit_second"] for pages in suite_pages}) == NIGHTS
    assert f"{100 + NIGHTS - 1}" in (docs / "expectations" / "audit_marts" / "audit_second.html").read_text()

    listed = _listed_nights((docs / "index.html").read_text())
    # worked out from the constant: the newest INDEX_NIGHTS nights, two datasets each
    assert listed == {night.isoformat(): 2 for night in nights[-INDEX_NIGHTS:]}
    # every night's pages stay (within KEPT_RUNS), and the first night's were neither
    # rendered nor localised again
    pages = list((docs / "validations").rglob("*.html"))
    assert len(pages) == 2 * NIGHTS
    assert {page: page.stat().st_mtime_ns for page in first_pages} == first_pages
    assert remote_loads(docs) == []


def test_the_results_and_pages_of_runs_beyond_the_kept_ones_are_removed(tmp_path, monkeypatch):
    """The retention is a constant (90 runs); set to 3 here to see it act within 5 nights."""
    monkeypatch.setattr(audit_gx, "KEPT_RUNS", 3)
    docs = tmp_path / "docs" / "gx"
    nights = [FIRST + timedelta(days=n) for n in range(5)]
    for n, night in enumerate(nights):
        run_gate2_gx(_datasets(n), docs, night)
    store = tmp_path / "docs" / "gx_context" / "gx" / "uncommitted" / "validations"
    stored = {re.search(r"gate2 as_of (\d{4}-\d\d-\d\d)", str(path)).group(1) for path in store.rglob("*.json")}
    assert stored == {night.isoformat() for night in nights[-3:]}
    pages = list((docs / "validations").rglob("*.html"))
    assert len(pages) == 2 * 3 and all(nights[0].isoformat() not in str(page) for page in pages)
    assert _listed_nights((docs / "index.html").read_text()) == {night.isoformat(): 2 for night in nights[-3:]}
    # no folder left empty behind the removed runs
    assert not [folder for folder in [*store.rglob("*"), *(docs / "validations").rglob("*")]
                if folder.is_dir() and not any(folder.iterdir())]


def test_only_the_pages_written_since_the_build_began_are_localised(tmp_path):
    cdn = next(iter(CDN_ASSETS))
    page = f'<html><head><link href="{cdn}"></head></html>'
    old, new = tmp_path / "validations" / "old.html", tmp_path / "validations" / "new.html"
    old.parent.mkdir()
    old.write_text(page)
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    new.write_text(page)
    assert localise_data_docs(tmp_path, written_since=time.time() - 60) == 1
    assert old.read_text() == page  # an earlier night's page is not read again
    assert cdn not in new.read_text() and "../static/vendor/" in new.read_text()
    assert localise_data_docs(tmp_path) == 1  # without a time: every page, as before
    assert cdn not in old.read_text()
