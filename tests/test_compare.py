"""Deposit matching, per-region change, categories and response (imaging.compare)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from imaging.compare import (FilmDeposits, MatchStatus, Response, compare_burden, match_deposits,
                             response_category)
from imaging.config import CompareConfig, RepeatabilityConfig


def _film(boxes, pixel_area_mm2=0.01, shape=(200, 200), regions=None):
    """Square deposits: boxes = {id: (r0, c0, size)}; region per id (default None)."""
    labels = np.zeros(shape, np.int32)
    for k, (r, c, size) in boxes.items():
        labels[r:r + size, c:c + size] = k
    rows = tuple({"deposit_id": k, "area_px": int((labels == k).sum()),
                  "region": (regions or {}).get(k), "relative_density": 0.5}
                 for k in sorted(boxes))
    return FilmDeposits(labels, rows, pixel_area_mm2)


def _statuses(matches):
    return {(m.baseline_deposit_id, m.followup_deposit_id): m.status for m in matches}


def test_match_categories_on_constructed_labels():
    # 1 persistent, 2 grown, 3 shrunk, 4 resolved; follow-up 5 is new. Spacing 0.1 mm.
    baseline = _film({1: (10, 10, 30), 2: (10, 100, 20), 3: (100, 10, 40), 4: (100, 100, 20)})
    followup = _film({1: (11, 11, 30), 2: (8, 98, 26), 3: (105, 15, 28), 5: (160, 160, 20)})
    matches = match_deposits(baseline, followup, followup.labels, baseline_spacing_mm=0.1)
    assert _statuses(matches) == {
        (1, 1): MatchStatus.PERSISTENT, (2, 2): MatchStatus.GROWN,
        (3, 3): MatchStatus.SHRUNK, (4, None): MatchStatus.RESOLVED,
        (None, 5): MatchStatus.NEW}
    grown = next(m for m in matches if m.baseline_deposit_id == 2)
    assert grown.group_change_pct == pytest.approx(100 * (26 ** 2 - 400) / 400)
    assert grown.baseline_area_mm2 == pytest.approx(4.0)


def test_small_shift_within_tolerance_still_matches():
    """A 3x3 px deposit displaced by 0.5 mm (no pixel overlap) is the same deposit."""
    baseline = _film({1: (50, 50, 3)})
    followup = _film({1: (50, 56, 3)})
    matches = match_deposits(baseline, followup, followup.labels, baseline_spacing_mm=0.1)
    assert _statuses(matches) == {(1, 1): MatchStatus.PERSISTENT}
    far = _film({1: (50, 80, 3)})
    matches = match_deposits(baseline, far, far.labels, baseline_spacing_mm=0.1)
    assert _statuses(matches) == {(1, None): MatchStatus.RESOLVED, (None, 1): MatchStatus.NEW}


def test_split_deposit_is_one_group():
    baseline = _film({1: (10, 10, 40)})
    followup = _film({1: (10, 10, 18), 2: (32, 32, 18)})
    matches = match_deposits(baseline, followup, followup.labels, baseline_spacing_mm=0.1)
    assert {m.group for m in matches} == {1}
    assert all(m.status is MatchStatus.SHRUNK for m in matches)   # 648 px of 1600
    changes = compare_burden(baseline, followup, matches)
    assert (changes[0].n_shrunk, changes[0].n_new, changes[0].n_resolved) == (1, 0, 0)


def test_small_absolute_change_is_persistent():
    """+56 % of a 0.09 mm² deposit is below the 0.5 mm² floor: persistent, not grown."""
    baseline = _film({1: (50, 50, 3)})
    followup = _film({1: (50, 50, 4)})   # 9 -> 16 px
    matches = match_deposits(baseline, followup, followup.labels, baseline_spacing_mm=0.1)
    assert matches[0].status is MatchStatus.PERSISTENT


def test_region_and_whole_film_change():
    baseline = _film({1: (10, 10, 20), 2: (100, 100, 20)}, regions={1: "digit2", 2: "palm"})
    followup = _film({1: (10, 10, 30), 2: (100, 100, 20)}, regions={1: "digit2", 2: "palm"})
    matches = match_deposits(baseline, followup, followup.labels, baseline_spacing_mm=0.1)
    changes = {c.region: c for c in compare_burden(baseline, followup, matches)}
    assert list(changes) == ["all", "digit2", "palm"]
    assert changes["digit2"].change_pct == pytest.approx(125.0)
    assert changes["digit2"].category == "progression" and changes["digit2"].n_grown == 1
    assert changes["palm"].category == "stable" and changes["palm"].n_persistent == 1
    assert changes["all"].change_pct == pytest.approx(62.5)
    assert changes["all"].baseline_area_mm2 == pytest.approx(8.0)
    assert changes["all"].units == "mm2"
    assert changes["all"].baseline_density == pytest.approx(0.5)


def test_density_scores_of_both_films():
    """The density-weighted score sums the deposits' ``density_score_px``; the integrated
    density their area times mean density, or their ``integrated_density_px`` where a
    deposit was found again in part; both in mm² (calibrated) or baseline pixels."""
    baseline = _film({1: (10, 10, 20), 2: (100, 100, 10)}, regions={1: "digit2", 2: "palm"})
    followup = _film({1: (10, 10, 20), 2: (100, 100, 10)}, regions={1: "digit2", 2: "palm"})
    baseline = dataclasses.replace(baseline, rows=tuple(
        {**r, "density_score_px": 2.0 * r["area_px"]} for r in baseline.rows))
    followup = dataclasses.replace(followup, rows=tuple(
        {**r, "density_score_px": 3.0 * r["area_px"],
         "integrated_density_px": 0.75 * r["area_px"] if r["deposit_id"] == 1 else None}
        for r in followup.rows))
    matches = match_deposits(baseline, followup, followup.labels, baseline_spacing_mm=0.1)
    changes = {c.region: c for c in compare_burden(baseline, followup, matches)}
    assert changes["all"].baseline_density_score == pytest.approx(2.0 * 500 * 0.01)
    assert changes["all"].followup_density_score == pytest.approx(3.0 * 500 * 0.01)
    assert changes["all"].baseline_integrated_density == pytest.approx(0.5 * 500 * 0.01)
    assert changes["digit2"].followup_integrated_density == pytest.approx(0.75 * 400 * 0.01)
    assert changes["palm"].followup_integrated_density == pytest.approx(0.5 * 100 * 0.01)
    assert changes["all"].followup_density == pytest.approx((0.75 * 400 + 0.5 * 100) / 500)
    uncalibrated = compare_burden(dataclasses.replace(baseline, pixel_area_mm2=None),
                                  dataclasses.replace(followup, pixel_area_mm2=None), matches,
                                  followup_area_factor=1.5)[0]
    assert uncalibrated.followup_density_score == pytest.approx(3.0 * 500 * 1.5)
    unknown = dataclasses.replace(baseline, rows=baseline.rows[:1] + (
        {**baseline.rows[1], "density_score_px": None, "relative_density": None},))
    change = compare_burden(unknown, followup, matches)[0]
    assert change.baseline_density_score is None and change.baseline_integrated_density is None


def test_none_region_counts_in_the_whole_film_only():
    baseline = _film({1: (10, 10, 20)})
    followup = _film({1: (10, 10, 20)})
    matches = match_deposits(baseline, followup, followup.labels, baseline_spacing_mm=0.1)
    changes = compare_burden(baseline, followup, matches)
    assert [c.region for c in changes] == ["all"]


def test_uncalibrated_films_compare_in_baseline_pixels():
    baseline = _film({1: (10, 10, 20)}, pixel_area_mm2=None)
    followup = _film({1: (10, 10, 20)}, pixel_area_mm2=None)
    matches = match_deposits(baseline, followup, followup.labels, baseline_spacing_mm=0.15,
                             followup_area_factor=1.5)
    change = compare_burden(baseline, followup, matches, followup_area_factor=1.5)[0]
    assert change.units == "px" and change.baseline_area_mm2 is None
    assert change.change_pct == pytest.approx(50.0)
    assert change.category == "progression"
    assert matches[0].status is MatchStatus.GROWN


def test_within_repeatability():
    baseline = _film({1: (10, 10, 50)})       # 25 mm²
    followup = _film({1: (10, 10, 52)})       # 27.04 mm²: +8 %
    config = CompareConfig(repeatability=RepeatabilityConfig(relative_sdd=0.1,
                                                             absolute_sdd_mm2=1.0))
    matches = match_deposits(baseline, followup, followup.labels, baseline_spacing_mm=0.1)
    assert compare_burden(baseline, followup, matches, config=config)[0].within_repeatability
    tight = CompareConfig(repeatability=RepeatabilityConfig(relative_sdd=0.05,
                                                            absolute_sdd_mm2=1.0))
    assert not compare_burden(baseline, followup, matches, config=tight)[0].within_repeatability


@pytest.mark.parametrize("baseline, latest, n_latest, expected", [
    (10.0, 0.0, 0, Response.COMPLETE), (10.0, 7.4, 2, Response.PARTIAL),
    (10.0, 7.6, 2, Response.NONE), (10.0, 12.5, 3, Response.NONE),
    (10.0, 12.6, 3, Response.PROGRESSION), (0.0, 0.0, 0, Response.NONE),
    (0.0, 1.0, 1, Response.PROGRESSION)])
def test_response_rules(baseline, latest, n_latest, expected):
    assert response_category(baseline, latest, n_latest) is expected


def test_mismatched_grids_are_rejected():
    baseline = _film({1: (10, 10, 20)})
    with pytest.raises(ValueError, match="not on the baseline grid"):
        match_deposits(baseline, baseline, np.zeros((10, 10), int), baseline_spacing_mm=0.1)
