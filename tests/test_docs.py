"""Docs that open: `crm docs` serves the dbt docs and the Data Docs of a real run, and
headless Chromium, with every host but this machine unreachable, finds the project
overview, the published tables under their published names, and Data Docs styled by
the shipped assets; the dbt docs also open from disk."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from crm_pipeline import docs_site
from helpers import PROJECT_ROOT, crm, headless_chromium

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("docs") / "home"
    result = crm("run", "--home", str(home), "--as-of", "2026-03-31", "--customers", "300",
                 env={"CRM_DBT_DOCS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    return home


@pytest.fixture(scope="module")
def served(home):
    proc = subprocess.Popen([sys.executable, "-m", "crm_pipeline.cli", "docs", "--home", str(home), "--port", "0"],
                            cwd=PROJECT_ROOT, env={**os.environ, "COLUMNS": "200"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    urls: dict[str, str] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line or line.startswith("serving"):
            break
        name, _, url = line.partition(":")
        urls[name.strip()] = url.strip()
    try:
        yield urls
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    # no host but this machine can be reached: a page that needs a CDN shows it
    driver = headless_chromium("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    try:
        yield driver
    finally:
        driver.quit()


def _text_appears(driver, text: str, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    body = ""
    while time.monotonic() < deadline:
        body = driver.execute_script("return document.body ? document.body.innerText : ''")
        if text in body:
            return body
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not shown; the page shows: {body[:1500]}")


def test_crm_docs_prints_where_each_site_is_served(served):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/dbt/index\.html", served["dbt docs"])
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/gx/index\.html", served["data docs"])


def test_the_dbt_docs_show_the_overview_and_the_published_names(served, browser):
    browser.get(served["dbt docs"])
    _text_appears(browser, "crm — nightly customer-value marts")
    _text_appears(browser, "Where to start")
    browser.get(served["dbt docs"] + "#!/model/model.crm.customer_segments")
    shown = _text_appears(browser, "Published as published.customer_segments.")
    assert "published.customer_segments" in browser.page_source
    assert "audit.customer_segments" not in shown


def test_the_dbt_docs_open_from_disk(home, browser):
    browser.get((home / "docs" / "dbt" / "index.html").as_uri())
    _text_appears(browser, "crm — nightly customer-value marts")


def test_the_data_docs_are_styled_offline(home, served, browser):
    assert docs_site.remote_loads(home / "docs" / "gx") == []
    browser.get(served["data docs"])
    _text_appears(browser, "Expectation Suites")
    # the index lists the night's validation runs (a table its scripts draw: offline it
    # stayed empty while they came from a CDN)
    _text_appears(browser, "gate2 as_of 2026-03-31")
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(name.startswith("http://127.0.0.1:") for name in loaded), loaded
    rules = browser.execute_script(
        "const sheet = [...document.styleSheets].find(s => (s.href || '').endsWith('bootstrap.min.css'));"
        "return sheet ? sheet.cssRules.length : 0")
    assert rules > 1000  # bootstrap 4.3.1's stylesheet, loaded from the site itself
    assert browser.execute_script("return typeof window.jQuery") == "function"
    navbar = browser.execute_script("const n = document.querySelector('nav');"
                                    "return n ? getComputedStyle(n).display : ''")
    assert navbar == "flex"  # bootstrap's .navbar rule applied
