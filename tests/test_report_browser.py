"""A real browser opens report.html: it renders, every figure loads, injected markup stays text.

Headless Debian ``chromium`` through ``chromium-driver`` and Selenium. Nothing is downloaded:
the driver and browser paths are given, so Selenium Manager never runs.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from tests.browser import HAVE_CHROMIUM, start_chromium  # noqa: E402

pytestmark = pytest.mark.skipif(
    not HAVE_CHROMIUM,
    reason="needs Debian's chromium and chromium-driver at /usr/bin (.ci/run installs them: "
           "apt-get install -y chromium chromium-driver)",
)

from harness.cli import main  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
INJECTED = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "report"
    files = [FIXTURES / n for n in ("machine_a_cpu.jsonl", "machine_b_gpu.jsonl",
                                    "hostile_strings.jsonl")]
    assert main(["report", *map(str, files), "--out", str(out)]) == 0
    assert INJECTED in (FIXTURES / "hostile_strings.jsonl").read_text().replace('\\"', '"')
    return out / "report.html"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    old = os.environ.get("SE_OFFLINE")
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"), 1280, 2400)
    yield driver
    driver.quit()
    if old is None:
        os.environ.pop("SE_OFFLINE", None)
    else:
        os.environ["SE_OFFLINE"] = old


def _distinct_colours(png: bytes) -> tuple[int, float]:
    """Distinct colours and the fraction of pixels that are not the page background."""
    from matplotlib.image import imread

    img = imread(io.BytesIO(png), format="png")[..., :3]  # (H, W, 3) floats in [0, 1]
    flat = (img.reshape(-1, 3) * 255).round().astype("uint8")
    colours = {tuple(p) for p in flat[:: max(1, len(flat) // 200_000)]}
    background = (flat == flat[0]).all(axis=1).mean()
    return len(colours), 1.0 - float(background)


def test_report_renders_in_chromium_with_figures_and_no_injected_script(report_html, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(report_html.as_uri())
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete")

    # every figure decoded (data: URIs, nothing fetched)
    images = WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "const imgs = Array.from(document.images);"
        "return imgs.every(i => i.complete) ? imgs.map(i => [i.alt, i.naturalWidth]) : null;"))
    assert len(images) == 6, images
    assert all(width > 0 for _, width in images), images

    # the injected markup is inert text: no script element, no handler ran, and it is visible
    assert browser.execute_script("return typeof window.__pwned") == "undefined"
    assert browser.execute_script("return document.scripts.length") == 0
    assert browser.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "<script>window.__pwned=1</script>" in body
    assert "</td></tr></table><h1>cpu</h1>" in body  # a CPU name cannot close the table either
    assert "Hardware comparison" in body and "NVIDIA H100 80GB HBM3" in body

    # the page rendered: a screenshot with real content, not a blank or error page
    colours, inked = _distinct_colours(browser.get_screenshot_as_png())
    assert colours > 20 and inked > 0.02, (colours, inked)

    # nothing was blocked or failed to load (a fetch or a CSP violation logs a SEVERE entry)
    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, json.dumps(severe, indent=1)
