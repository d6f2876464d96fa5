"""Shared fixtures: the real films and malformed files in ../shared/data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real films; tests that need it skip when it is absent."""
    if not (SHARED_DATA / "MANIFEST.md").is_file():
        pytest.skip(f"real test films not found at {SHARED_DATA} (the ../shared/data folder "
                    "beside the project); these tests need it")
    return SHARED_DATA


@pytest.fixture(scope="session")
def radiographs(shared_data) -> Path:
    return shared_data / "radiographs"


def _disc_film(shape, spacing_mm, radius_mm, blobs, seed=0) -> np.ndarray:
    """A soft-tissue disc crossed by a dense bone bar, with bright blobs (dy, dx, radius in mm
    from the centre) beside it: a tiny hand-like film for contract tests."""
    rng = np.random.default_rng(seed)
    y, x = np.indices(shape) * spacing_mm
    centre = shape[0] * spacing_mm / 2
    r = np.hypot(y - centre, x - centre)
    film = 300 + 1200 * np.sqrt(np.clip(1 - (r / radius_mm) ** 2, 0, None))
    film += (800 * np.sqrt(np.clip(1 - ((x - centre) / 4) ** 2, 0, None))
             * np.clip((radius_mm - 6 - r) / 2, 0, 1))
    for dy, dx, size in blobs:
        d = np.hypot(y - centre - dy, x - centre - dx)
        film += 400 * np.sqrt(np.clip(1 - (d / size) ** 2, 0, None))
    film += rng.normal(0, 12, shape)
    return np.clip(film, 0, 4095).astype(np.uint16)


@pytest.fixture(scope="session")
def disc_film():
    """Builds tiny synthetic films (see `_disc_film`)."""
    return _disc_film


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium driven through Selenium, for the HTML report; skips without it."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip("needs Chromium and ChromeDriver (Debian: apt-get install chromium "
                    "chromium-driver; .ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=chromedriver),
                              options=options)
    yield driver
    driver.quit()
