"""Phantom films: exact truth, physics orientation, DICOM round trip, series, insertion."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from imaging import SpacingSource, read_radiograph
from imaging.evaluation import change_category
from imaging.phantom import (CHANGES, MORPHOLOGIES, PhantomSpec, Pose, SeriesSpec,
                             estimate_noise_sd, insert_deposits, make_film, make_series,
                             read_truth, write_film, write_series)
from imaging.phantom.film import sample_cnr
from imaging.phantom.placement import EDGE_MARGIN_MM

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
REAL_HAND = SHARED_DATA / "radiographs" / "hand_pa_cr_j2k_lossless.dcm"


@pytest.fixture(scope="module")
def films():
    """One film per anatomy (coarse grids keep the tests fast), all morphologies."""
    return {
        "hand": make_film(PhantomSpec("hand", seed=11, spacing_mm=0.25, n_deposits=12,
                                      metal="wire")),
        "forearm": make_film(PhantomSpec("forearm", seed=12, spacing_mm=0.3, n_deposits=10,
                                         laterality="L", metal="screw", bits_stored=14)),
        "lower_leg": make_film(PhantomSpec("lower_leg", seed=13, spacing_mm=0.35,
                                           n_deposits=10, bits_stored=16)),
    }


@pytest.fixture(scope="module")
def periarticular_films():
    return [make_film(PhantomSpec(kind, seed=21, spacing_mm=0.25, n_deposits=5,
                                  morphologies=("periarticular",)))
            for kind in ("hand", "lower_leg")]


def _same(a, b) -> bool:
    """Deposit tables equal field by field (NaN equal to NaN)."""
    def key(d):
        return tuple("nan" if isinstance(v, float) and math.isnan(v) else v
                     for v in dataclasses.astuple(d))
    return [key(d) for d in a] == [key(d) for d in b]


def _all(films):
    return list(films.values()) if isinstance(films, dict) else list(films)


# --- exact truth ----------------------------------------------------------------------------

def test_truth_table_matches_the_label_image_exactly(films):
    for film in _all(films):
        spacing = film.radiograph.spacing_mm
        ids = [d.deposit_id for d in film.deposits]
        assert ids == list(range(1, len(ids) + 1))
        assert set(np.unique(film.truth_labels).tolist()) == {0, *ids}
        counts = np.bincount(film.truth_labels.ravel(), minlength=len(ids) + 1)
        for d in film.deposits:
            assert d.area_px == counts[d.deposit_id]
            assert d.area_mm2 == d.area_px * spacing[0] * spacing[1]
            assert d.area_mm2 == pytest.approx(d.area_px * film.pixel_area_mm2, rel=1e-12)
            assert d.equivalent_diameter_mm == pytest.approx(2 * math.sqrt(d.area_mm2 / math.pi))
            rows, cols = np.nonzero(film.truth_labels == d.deposit_id)
            assert (d.centroid_row, d.centroid_col) == pytest.approx((rows.mean(), cols.mean()))
        assert film.total_area_mm2 == pytest.approx(np.count_nonzero(film.truth_labels)
                                                    * film.pixel_area_mm2)


def test_deposits_lie_in_soft_tissue_never_in_bone_or_on_metal(films, periarticular_films):
    for film in _all(films) + periarticular_films:
        deposits = film.truth_labels > 0
        assert not (deposits & film.bone_mask).any()
        assert not (deposits & ~film.body_mask).any()
        assert not (deposits & film.object_mask).any()
        clearance = cv2.distanceTransform((~film.object_mask).astype(np.uint8), cv2.DIST_L2, 5)
        assert clearance[deposits].min() * film.radiograph.spacing_mm[0] >= EDGE_MARGIN_MM - 0.5


def test_periarticular_deposits_touch_the_bone_outline(periarticular_films):
    touching = 0
    for film in periarticular_films:
        for d in film.deposits:
            mask = (film.truth_labels == d.deposit_id).astype(np.uint8)
            ring = cv2.dilate(mask, np.ones((3, 3), np.uint8)) > 0
            assert d.morphology == "periarticular" and d.joint
            if d.periarticular:        # the flag is the truth: touching, never inside
                assert (ring & film.bone_mask).any()
                touching += 1
    assert touching >= 6


def test_acral_deposits_sit_in_fingertips():
    film = make_film(PhantomSpec("hand", seed=5, spacing_mm=0.25, n_deposits=5,
                                 morphologies=("acral",)))
    assert len(film.deposits) == 5
    for d in film.deposits:
        assert d.fingertip and d.region.startswith("digit")


def test_regions_are_the_documented_ones(films):
    allowed = {"hand": {"digit1", "digit2", "digit3", "digit4", "digit5", "palm", "wrist"},
               "forearm": {"proximal", "middle", "distal"},
               "lower_leg": {"proximal", "middle", "distal"}}
    for kind, film in films.items():
        assert {d.region for d in film.deposits} <= allowed[kind]
        assert {d.morphology for d in film.deposits} <= set(MORPHOLOGIES)


def test_achieved_cnr_is_close_to_the_requested_one(films):
    checked = 0
    for film in _all(films):
        for d in film.deposits:
            assert d.cnr == pytest.approx(d.mean_contrast / d.noise_sd)
            assert d.cnr == pytest.approx(d.requested_cnr, rel=0.2), d
            checked += 1
    assert checked >= 25


def test_sizes_and_cnrs_span_the_report_bands():
    """A handful of films already fill every size and CNR band of the accuracy report."""
    deposits = [d for seed in (1, 2, 3) for d in make_film(
        PhantomSpec("hand" if seed != 2 else "forearm", seed=seed, spacing_mm=0.3,
                    n_deposits=12)).deposits]
    areas = [d.area_mm2 for d in deposits]
    cnrs = [d.cnr for d in deposits]
    for lo, hi in ((0, 1), (1, 4), (4, 20), (20, math.inf)):
        assert any(lo <= a < hi for a in areas), (lo, hi)
    for lo, hi in ((2, 3), (3, 5), (5, 8), (8, 15), (15, math.inf)):
        assert any(lo <= c < hi for c in cnrs), (lo, hi)


def test_requested_cnrs_are_spread_evenly_over_the_bands():
    rng = np.random.default_rng(0)
    values = np.array([sample_cnr(rng, (2.0, 120.0)) for _ in range(2000)])
    assert values.min() >= 2.0 and values.max() <= 120.0
    counts = np.histogram(values, bins=[2, 3, 5, 8, 15, 121])[0]
    assert counts.min() > 300


def test_negative_film_has_no_deposits():
    film = make_film(PhantomSpec("forearm", seed=4, spacing_mm=0.4, n_deposits=0))
    assert film.is_negative and film.deposits == ()
    assert not film.truth_labels.any()


# --- determinism and physics ---------------------------------------------------------------

def test_same_seed_gives_identical_films_and_another_seed_does_not():
    spec = PhantomSpec("hand", seed=8, spacing_mm=0.4, n_deposits=4, metal="screw")
    a, b = make_film(spec), make_film(spec)
    assert np.array_equal(a.radiograph.pixels, b.radiograph.pixels)
    assert np.array_equal(a.truth_labels, b.truth_labels)
    assert _same(a.deposits, b.deposits)
    c = make_film(PhantomSpec("hand", seed=9, spacing_mm=0.4, n_deposits=4, metal="screw"))
    assert not np.array_equal(a.radiograph.pixels, c.radiograph.pixels)


def test_film_orientation_bone_over_soft_tissue_over_background(films):
    for film in _all(films):
        pixels = film.radiograph.pixels
        top = (1 << film.bits_stored) - 1
        soft = film.body_mask & ~film.bone_mask & (film.truth_labels == 0)
        background = film.field_mask & ~film.body_mask & ~film.object_mask
        assert np.median(pixels[film.bone_mask]) > np.median(pixels[soft]) > np.median(
            pixels[background])
        # unexposed (collimated) borders saturate bright; values fit the stored bits
        assert np.median(pixels[~film.field_mask]) == top
        assert pixels.min() >= 0 and pixels.max() <= top
        assert np.array_equal(pixels, np.round(pixels))


def test_films_have_realistic_physical_size(films):
    height, width = (n * s for n, s in zip(films["hand"].radiograph.shape,
                                           films["hand"].radiograph.spacing_mm))
    assert 230 <= height <= 290 and 180 <= width <= 240


def test_dose_sets_the_noise():
    spec = dict(anatomy="forearm", seed=3, spacing_mm=0.4, n_deposits=3)
    low = make_film(PhantomSpec(dose=0.5, **spec))
    high = make_film(PhantomSpec(dose=4.0, **spec))
    ratio = (np.mean([d.noise_sd for d in low.deposits])
             / np.mean([d.noise_sd for d in high.deposits]))
    assert 2.0 < ratio < 4.0     # ~sqrt(8) for quantum-limited noise


# --- DICOM round trip ----------------------------------------------------------------------

@pytest.mark.parametrize("photometric, attribute, modality, syntax", [
    ("MONOCHROME1", "ImagerPixelSpacing", "CR", RLELossless),
    ("MONOCHROME2", "PixelSpacing", "DX", ExplicitVRLittleEndian),
    ("MONOCHROME2", "ImagerPixelSpacing", "DX", JPEG2000Lossless),
    ("MONOCHROME1", "PixelSpacing", "DX", ExplicitVRLittleEndian),
])
def test_films_round_trip_through_the_reader(films, tmp_path, photometric, attribute, modality,
                                             syntax):
    film = films["forearm"]
    files = write_film(film, tmp_path, "film", photometric=photometric, modality=modality,
                       spacing_attribute=attribute, magnification=1.08, transfer_syntax=syntax)
    read = read_radiograph(files.dicom)
    assert np.array_equal(read.pixels, film.radiograph.pixels)      # orientation and values
    assert read.spacing_mm == pytest.approx(film.radiograph.spacing_mm, rel=1e-9)
    expected = (SpacingSource.PIXEL_SPACING if attribute == "PixelSpacing"
                else SpacingSource.DETECTOR_ERMF)
    assert read.spacing_source is expected
    assert read.photometric.startswith(photometric)
    assert read.metadata.modality == modality
    assert read.metadata.laterality == "L" and read.metadata.body_part == "FOREARM"
    assert read.metadata.study_date == film.spec.study_date
    assert read.metadata.patient_key == film.radiograph.metadata.patient_key
    assert read.display_window == pytest.approx(film.radiograph.display_window, rel=1e-4)
    truth = read_truth(files.dicom)
    assert np.array_equal(truth.labels, film.truth_labels)
    assert _same(truth.deposits, film.deposits)
    assert truth.anatomy.shape == film.truth_labels.shape
    assert set(np.unique(truth.anatomy).tolist()) <= {0, 1, 2, 3, 4}
    assert truth.info["total_area_mm2"] == pytest.approx(film.total_area_mm2)


def test_write_film_refuses_unsafe_names(films, tmp_path):
    with pytest.raises(ValueError):
        write_film(films["hand"], tmp_path, "../escape")


# --- serial films --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def series():
    return make_series(SeriesSpec("hand", seed=5, spacing_mm=0.3, n_deposits=5,
                                  changes=("progression", "improvement", "stable", "resolution",
                                           "new")))


def test_series_changes_match_their_declared_categories(series):
    assert len(series.visits) == 6 and len(series.changes) == 5
    for change in series.changes:
        base = series.visits[change.baseline_visit].total_area_mm2
        follow = series.visits[change.followup_visit].total_area_mm2
        assert change.category == CHANGES[change.declared]
        assert change.category == change_category(base, follow)
        assert (change.baseline_area_mm2, change.followup_area_mm2) == (base, follow)
    assert series.visits[4].is_negative              # complete resolution


def test_series_is_one_patient_repositioned_and_re_exposed(series):
    visits = series.visits
    assert len({v.radiograph.metadata.patient_key for v in visits}) == 1
    dates = [v.radiograph.metadata.study_date for v in visits]
    assert dates == sorted(dates) and len(set(dates)) == len(dates)
    assert len({v.spec.dose for v in visits}) == len(visits)
    # progression keeps every deposit (same track ids), possibly adding new ones
    assert {d.track_id for d in visits[0].deposits} <= {d.track_id for d in visits[1].deposits}
    # repositioned within the limits: the same bones land on other pixels
    for visit in visits[1:]:
        pose = visit.pose
        assert abs(pose.rotation_deg) <= 10 and math.hypot(*pose.shift_mm) <= 10
        assert abs(pose.scale - 1) <= 0.03
    assert (visits[0].bone_mask != visits[1].bone_mask).mean() > 0.01


def test_stable_series_stays_within_the_threshold():
    result = make_series(SeriesSpec("forearm", seed=2, spacing_mm=0.4, n_deposits=2,
                                    changes=("stable", "stable")))
    for change in result.changes:
        assert change.category == "stable" and abs(change.change_pct) <= 25


def test_series_spec_rejects_impossible_changes():
    with pytest.raises(ValueError):
        SeriesSpec(changes=("resolution", "improvement"))
    with pytest.raises(ValueError):
        SeriesSpec(n_deposits=0, changes=("improvement",))
    with pytest.raises(ValueError):
        SeriesSpec(changes=("sideways",))


def test_write_series(series, tmp_path):
    written = write_series(series, tmp_path, "patient")
    assert len(written) == len(series.visits)
    info = json.loads((tmp_path / "patient.series.json").read_text())
    assert [c["category"] for c in info["changes"]] == [c.category for c in series.changes]
    assert _same(read_truth(written[2].truth).deposits, series.visits[2].deposits)


# --- specs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    dict(anatomy="skull"), dict(spacing_mm=0.01), dict(dose=0), dict(n_deposits=-1),
    dict(morphologies=("blob",)), dict(cnr_range=(5, 2)), dict(size_range_mm=(0.1, 30)),
    dict(laterality="X"), dict(metal="plate"), dict(bits_stored=10), dict(study_date="2024-13-01"),
    dict(anatomy="forearm", morphologies=("acral",)),
])
def test_spec_validation(bad):
    with pytest.raises(ValueError):
        PhantomSpec(**bad)


def test_pose_validation():
    with pytest.raises(ValueError):
        Pose(rotation_deg=90)
    with pytest.raises(ValueError):
        Pose(scale=3)


# --- real films ----------------------------------------------------------------------------

def _crude_masks(pixels):
    """Rough soft-tissue and bone masks of the real hand film (thresholds on its values)."""
    bone = cv2.morphologyEx((pixels >= 1300).astype(np.uint8), cv2.MORPH_CLOSE,
                            np.ones((5, 5), np.uint8)) > 0
    soft = (pixels > 600) & (pixels < 1150)
    soft = cv2.morphologyEx(soft.astype(np.uint8), cv2.MORPH_OPEN, np.ones((9, 9), np.uint8)) > 0
    soft &= ~(cv2.dilate(bone.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
    return soft, bone


def test_insertion_into_a_real_hand_film():
    if not REAL_HAND.is_file():
        pytest.skip(f"real hand film not found at {REAL_HAND} (../shared/data is absent)")
    film = read_radiograph(REAL_HAND)
    soft, bone = _crude_masks(film.pixels)
    inserted = insert_deposits(film, soft, n=6, seed=3, bone_mask=bone, cnr_range=(3.0, 20.0))
    assert len(inserted.deposits) >= 4
    labels = inserted.truth_labels
    assert labels.shape == film.shape and not (labels & bone).any()
    assert soft[labels > 0].all()
    changed = inserted.radiograph.pixels != film.pixels
    distance_mm = cv2.distanceTransform((labels == 0).astype(np.uint8), cv2.DIST_L2, 5) * 0.115
    assert changed.any() and distance_mm[changed].max() < 12.0   # only around the deposits
    for d in inserted.deposits:
        assert d.area_px == np.count_nonzero(labels == d.deposit_id)
        assert d.area_mm2 == d.area_px * 0.115 * 0.115
        assert d.cnr == pytest.approx(d.requested_cnr, rel=0.2)
        assert d.region == "unassigned"
    assert inserted.radiograph.spacing_mm == film.spacing_mm
    assert inserted.radiograph.metadata == film.metadata


def test_noise_estimator_agrees_with_the_phantom_truth(films):
    film = films["hand"]
    errors = []
    for d in film.deposits:
        rows, cols = int(d.centroid_row), int(d.centroid_col)
        box = (slice(max(rows - 40, 0), rows + 40), slice(max(cols - 40, 0), cols + 40))
        soft = (film.body_mask & ~film.bone_mask & (film.truth_labels == 0))[box]
        soft = cv2.erode(soft.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        if soft.sum() > 200:
            estimate = estimate_noise_sd(film.radiograph.pixels[box], soft)
            errors.append(estimate / d.noise_sd - 1)
    assert errors and abs(float(np.median(errors))) < 0.3


# --- the shipped samples and the CLI --------------------------------------------------------

def test_shipped_sample_images_are_consistent():
    folder = ROOT / "sample_images"
    films = sorted(folder.glob("*.dcm"))
    if not films:
        pytest.skip("sample_images/ has not been generated")
    assert sum(p.stat().st_size for p in folder.iterdir()) < 15e6
    for path in films:
        radiograph = read_radiograph(path)
        truth = read_truth(path)
        assert truth.labels.shape == radiograph.shape
        assert radiograph.spacing_mm == pytest.approx(truth.info["spacing_mm"], rel=1e-9)
        spacing = truth.info["spacing_mm"]
        for d in truth.deposits:
            assert d.area_px == np.count_nonzero(truth.labels == d.deposit_id)
            assert d.area_mm2 == pytest.approx(d.area_px * spacing[0] * spacing[1], rel=1e-12)
    series = json.loads((folder / "hand_patient1.series.json").read_text())
    assert [c["category"] for c in series["changes"]] == ["progression", "improvement"]


def test_cli_film_action(tmp_path):
    import argparse

    from pipelines.phantoms import main, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["phantom", "film", "--out", str(tmp_path)])
    assert args.handler is not None
    assert main(["film", "--anatomy", "forearm", "--seed", "2", "--spacing-mm", "0.4",
                 "--n-deposits", "2", "--photometric", "MONOCHROME1", "--transfer-syntax",
                 "explicit", "--out", str(tmp_path), "--name", "f"]) == 0
    assert read_radiograph(tmp_path / "f.dcm").photometric.startswith("MONOCHROME1")
    assert len(read_truth(tmp_path / "f.truth.json").deposits) == 2
    assert main(["film", "--spacing-mm", "0.01", "--out", str(tmp_path)]) == 2
