"""Shared fixtures: the real films and malformed files in ../shared/data."""

from __future__ import annotations

from pathlib import Path

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
