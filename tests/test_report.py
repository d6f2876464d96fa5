"""The run report (`pipelines.report`), opened in a real headless browser.

Chromium is driven through Selenium and ChromeDriver (the `browser` fixture of conftest.py;
Debian's chromium and chromium-driver, which `.ci/run` installs); without them the browser
tests skip and say so. The ``track`` report is checked in tests/test_followup.py.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import pytest

from imaging.dicom import write_dicom
from pipelines.cli import main
from pipelines.report import REPORT_NAME, run_report_html

SPACING_MM = 0.2
HOSTILE_NAME = "broken <b>film.dcm"


@pytest.fixture(scope="module")
def run(tmp_path_factory, disc_film) -> Path:
    """Two small films with deposits, a truncated film with an HTML-like name and a note."""
    films = tmp_path_factory.mktemp("films")
    for name, seed in (("visit1.dcm", 0), ("visit2.dcm", 1)):
        stored = disc_film((400, 400), SPACING_MM, 34.0,
                           [(-15, 15, 1.5), (12, -18, 2.0), (18, 14, 1.0)], seed=seed)
        write_dicom(films / name, stored, spacing_mm=(SPACING_MM, SPACING_MM))
    whole = (films / "visit1.dcm").read_bytes()
    (films / HOSTILE_NAME).write_bytes(whole[: len(whole) // 3])
    (films / "notes.txt").write_text("not a film\n")
    out = tmp_path_factory.mktemp("run") / "out"
    assert main(["analyze", str(films), "--out", str(out), "--jobs", "1"]) == 1  # one failed
    return out


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_report_shows_every_film_its_overlay_and_its_deposits(run, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    images = {row["image_id"]: row for row in _rows(run / "images.csv")}
    browser.get((run / REPORT_NAME).as_uri())
    assert browser.title == "calcitrack report"
    films = browser.find_elements(By.CSS_SELECTOR, "#films tr")[1:]
    shown = [row for row in images.values() if row["status"] != "skipped"]
    assert len(films) == len(shown) == 3
    for image_id, row in images.items():
        if row["status"] != "ok":
            continue
        section = browser.find_element(By.ID, image_id)
        overlay = section.find_element(By.CSS_SELECTOR, "img.qc")
        browser.execute_script("arguments[0].scrollIntoView()", overlay)  # loaded lazily
        WebDriverWait(browser, 10).until(
            lambda _: browser.execute_script("return arguments[0].complete", overlay))
        width = browser.execute_script("return arguments[0].naturalWidth", overlay)
        assert width == cv2.imread(str(run / row["qc_path"])).shape[1], "overlay did not load"
        deposits = section.find_elements(By.CSS_SELECTOR, "table.deposits tr")[1:]
        assert len(deposits) == int(row["n_deposits"]) > 0
        last = section.find_elements(By.CSS_SELECTOR, "table.regions tr")[-1]
        cells = last.find_elements(By.TAG_NAME, "td")
        assert cells[0].text == "all"
        assert float(cells[2].text) == pytest.approx(float(row["total_area_mm2"]), abs=0.05)


def test_a_failed_film_shows_its_error_and_a_hostile_name_stays_text(run, browser):
    from selenium.webdriver.common.by import By

    (failed,) = [row for row in _rows(run / "images.csv") if row["status"] == "error"]
    browser.get((run / REPORT_NAME).as_uri())
    (line,) = browser.find_elements(By.CSS_SELECTOR, "#films tr.error")
    assert failed["error"] in line.text and "<b>film" in failed["error"]
    assert browser.find_elements(By.TAG_NAME, "b") == [], "a file name became markup"
    skipped = browser.find_element(By.ID, "skipped")
    assert "notes.txt" in skipped.get_attribute("textContent")


def test_the_report_is_the_same_for_the_same_rows(run):
    images, deposits, regions = (_rows(run / name)
                                 for name in ("images.csv", "deposits.csv", "regions.csv"))
    page = run_report_html(images, deposits, regions)
    assert page == run_report_html(images, deposits, regions)
    assert page == (run / REPORT_NAME).read_text(encoding="utf-8")
