"""The published site in a real browser, opened from disk (file://) as a reader would: every
page loads with no console error, a filter changes what the overview shows, a series page shows
the injected step with its commit, a point leads to its record, the matrix follows the chosen
reference, and hostile strings stay text.

Headless Debian ``chromium`` through ``chromium-driver`` and Selenium, as test_report_browser.
Set TRAINMARK_SCREENSHOTS=DIR to keep a screenshot of each page there.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.browser import HAVE_CHROMIUM, start_chromium  # noqa: E402

pytestmark = [
    pytest.mark.long,  # ~20 s: a browser start and a dozen page loads
    pytest.mark.skipif(
        not HAVE_CHROMIUM,
        reason="needs Debian's chromium and chromium-driver at /usr/bin (.ci/run installs them: "
               "apt-get install -y chromium chromium-driver)"),
]

from harness.cli import main  # noqa: E402
from tests.site_store import sha, write_runner_store, write_store  # noqa: E402
from tests.test_publish import data  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def open_page(driver, site: Path, page: str, timeout: float = 30.0) -> float:
    """Load ``page`` (with its #fragment) and wait until its script says it is drawn; the
    seconds from navigation to drawn. A page that shows an error fails."""
    name, _, fragment = page.partition("#")
    driver.get("about:blank")  # a fresh document even where only the #fragment differs
    start = time.perf_counter()
    driver.get((site / name).as_uri() + (f"#{fragment}" if fragment else ""))
    while time.perf_counter() - start < timeout:
        state = driver.execute_script(
            "const m = document.getElementById('missing');"
            "return [document.body.dataset.ready || '', m && !m.hidden ? m.textContent : ''];")
        if state[1]:
            raise AssertionError(f"{page}: {state[1]}")
        if state[0]:
            return time.perf_counter() - start
        time.sleep(0.05)
    raise AssertionError(f"{page} was not drawn within {timeout} s")


def problems(driver) -> list[dict]:
    """Console entries at warning level or worse (a failed load, a CSP violation, an error)."""
    return [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "WARNING")]


def screenshot(driver, name: str) -> bytes:
    png = driver.get_screenshot_as_png()
    folder = os.environ.get("TRAINMARK_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.png").write_bytes(png)
    return png


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("published")
    store = write_store(root / "store")
    out = root / "site"
    assert main(["publish", str(store), "--out", str(out), "--price", "host-m1=2.0",
                 "--price", "host-m2=3.0"]) == 0
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def rows(driver) -> list[list[str]]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#series-table tbody tr'))"
        ".map(r => Array.from(r.cells).map(c => c.textContent));")


def test_the_overview_loads_filters_and_lists_the_regression_first(site, browser):
    from selenium.webdriver.support.ui import Select

    open_page(browser, site, "index.html")
    assert not problems(browser), json.dumps(problems(browser), indent=1)
    everything = rows(browser)
    assert len(everything) == 12
    assert everything[0][1].startswith("cpu-m1") and everything[0][2] == "throughput"
    assert everything[0][5].startswith("-1") and sha(12)[:12] in everything[0][5]
    regressions = browser.execute_script(
        "return Array.from(document.querySelectorAll('#regression-table tbody tr'))"
        ".map(r => r.textContent)")
    assert len(regressions) == 1 and sha(12)[:12] in regressions[0]
    # each row draws a sparkline with one point per commit
    points = browser.execute_script(
        "return document.querySelector('#series-table svg polyline').getAttribute('points')")
    assert len(points.split()) == 24
    screenshot(browser, "overview")

    Select(browser.find_element("name", "machine")).select_by_value("cpu-m2-torch2.14.1-4t")
    shown = rows(browser)
    assert len(shown) == 6 and all(r[1].startswith("cpu-m2") for r in shown)
    assert "No regression step" in browser.find_element("id", "regression-table").text
    Select(browser.find_element("name", "metric")).select_by_value("memory")
    assert [r[2] for r in rows(browser)] == ["memory", "memory"]
    # the filters are in the address: opening it again shows the same
    open_page(browser, site, "index.html#" + browser.current_url.split("#", 1)[1])
    assert len(rows(browser)) == 2
    assert not problems(browser)


def test_a_series_page_shows_the_step_and_its_points_lead_to_their_records(site, browser):
    stepped = data(site, "overview")["series"][0]
    open_page(browser, site, f"series.html#{stepped['id']}")
    assert not problems(browser), json.dumps(problems(browser), indent=1)
    [step] = browser.execute_script(
        "return Array.from(document.querySelectorAll('#steps-table tbody tr'))"
        ".map(r => Array.from(r.cells).map(c => c.textContent));")
    assert step[0] == "regression" and step[3] == sha(12)[:12] and step[2] == sha(11)[:12]
    # the chart: every point, the step's shaded commit range and medians, a range slider
    drawn = browser.execute_script(
        "const gd = document.getElementById('chart');"
        "return [gd.data[0].y.length, gd.layout.shapes.map(s => s.type),"
        " !!document.querySelector('#chart .rangeslider-container'),"
        " document.querySelectorAll('#chart .scatterlayer .point').length];")
    assert drawn[0] == 24 and drawn[1].count("rect") == 1 and drawn[1].count("line") == 2
    assert drawn[2] and drawn[3] >= 24
    screenshot(browser, "series")

    # a click on the 13th point (the first after the step) lists its record
    browser.execute_script(
        "const gd = document.getElementById('chart');"
        "gd.emit('plotly_click', {points: [{pointIndex: 12}]});")
    assert sha(12) in browser.find_element("id", "point-summary").text
    link = browser.find_element("css selector", "#point-records a")
    href = link.get_attribute("href")
    link.click()
    open_page(browser, site, "record.html#" + href.split("#", 1)[1])
    assert not problems(browser), json.dumps(problems(browser), indent=1)
    body = browser.find_element("tag name", "body").text
    assert sha(12) in body and "host-m1" in body and "convnet" in body
    headings = [h.text for h in browser.find_elements("css selector", "#record-sections h2")]
    assert headings[:4] == ["Config", "Outcome", "Code identity", "Provenance"]
    loss = browser.execute_script("return document.getElementById('loss-chart').data[0].x")
    assert loss[:3] == [5, 10, 15] and len(loss) == 40
    screenshot(browser, "record")


def test_the_matrix_follows_the_chosen_reference_and_prices(site, browser):
    from selenium.webdriver.support.ui import Select

    open_page(browser, site, "matrix.html")
    assert not problems(browser)
    head = browser.find_element("css selector", "#matrix-table thead").text
    assert "cpu-m1-torch2.14.1-4t (reference)" in head
    text = browser.find_element("id", "matrix-table").text
    assert "(2.00×)" in text.replace("(1.99×)", "(2.00×)").replace("(2.01×)", "(2.00×)")
    assert "/1M" in text and "× cost" in text
    screenshot(browser, "matrix")
    Select(browser.find_element("name", "reference")).select_by_value("cpu-m2-torch2.14.1-4t")
    assert "cpu-m2-torch2.14.1-4t (reference)" in browser.find_element(
        "css selector", "#matrix-table thead").text
    assert "(0.5" in browser.find_element("id", "matrix-table").text


def test_hostile_strings_are_shown_as_text_on_every_page(tmp_path, browser):
    site = tmp_path / "site"
    assert main(["publish", str(FIXTURES / "hostile_strings.jsonl"), "--out", str(site)]) == 0
    entry = data(site, "overview")["series"][0]
    series = data(site, f"series/{entry['id']}")
    shard, rid = series["records"][-1][0]
    for page in ("index.html", "matrix.html", f"series.html#{entry['id']}",
                 f"record.html#{shard}/{rid}"):
        open_page(browser, site, page)
        assert browser.execute_script("return typeof window.__pwned") == "undefined", page
        assert browser.execute_script(
            "return document.querySelectorAll('img[src=\"x\"], h1 + h1').length") == 0, page
        assert not problems(browser), (page, problems(browser))
    assert "<script>window.__pwned=1</script>" in browser.find_element("tag name", "body").text


def test_a_runner_that_alone_changed_is_listed_and_the_others_on_demand(tmp_path, browser):
    from selenium.webdriver.support.ui import Select

    site = tmp_path / "site"
    assert main(["publish", str(write_runner_store(tmp_path / "store")), "--out", str(site),
                 "--metrics", "throughput"]) == 0
    open_page(browser, site, "index.html")
    shown = {r[1]: r for r in rows(browser)}  # host-a's own series, flat, is not listed
    assert set(shown) == {"cpu-m1-torch2.14.1-4t · runner host-b alone", "cpu-m1-torch2.14.1-4t"}
    assert sha(12)[:12] in shown["cpu-m1-torch2.14.1-4t · runner host-b alone"][5]
    Select(browser.find_element("name", "runners")).select_by_value("all")
    assert len(rows(browser)) == 3
    assert not problems(browser)
