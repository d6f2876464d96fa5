"""Registration of a follow-up film onto its baseline (imaging.register)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from imaging.phantom import FilmGrid, PhantomSpec, Pose, build_anatomy, make_film
from imaging.config import AnalysisConfig, RegistrationConfig
from imaging.register import (DifferentAnatomy, RegistrationFailed, check_same_anatomy,
                              register_films)

#: One start scale and coarser rotation steps: a few seconds per pair.
FAST = AnalysisConfig(registration=RegistrationConfig(start_scales=(1.0,),
                                                      start_rotation_step_deg=4.0))


def _film(**overrides):
    spec = dict(anatomy="hand", seed=1, spacing_mm=0.4, n_deposits=2, patient_seed=5,
                cnr_range=(10, 40), size_range_mm=(2, 6), pose=Pose(0, (0, 0)))
    spec.update(overrides)
    return make_film(PhantomSpec(**spec))


@pytest.fixture(scope="module")
def baseline():
    return _film()


def _grid(film):
    return FilmGrid(film.radiograph.shape, film.radiograph.spacing_mm[0], film.pose,
                    mirror=film.spec.laterality == "L")


def test_recovers_known_rotation_and_shift(baseline):
    followup = _film(seed=2, pose=Pose(7.0, (4.0, -5.0), 1.02))
    registration = register_films(baseline.radiograph, followup.radiograph, FAST,
                                  baseline_deposits=baseline.truth_labels,
                                  followup_deposits=followup.truth_labels)
    assert registration.rotation_deg == pytest.approx(7.0, abs=0.3)
    assert registration.scale == pytest.approx(1.02, abs=0.005)
    # joint centres, mapped through both true poses and the found transform
    joints = np.array([j.centre for j in build_anatomy("hand", 5).joints])
    rows_b, cols_b = _grid(baseline).to_film(joints[:, 0], joints[:, 1])
    rows_f, cols_f = _grid(followup).to_film(joints[:, 0], joints[:, 1])
    rows, cols = registration.followup_to_baseline(rows_f, cols_f)
    error_mm = np.hypot(rows - rows_b, cols - cols_b) * 0.4
    assert error_mm.max() < 1.0
    back_rows, back_cols = registration.baseline_to_followup(rows, cols)
    np.testing.assert_allclose(back_rows, rows_f, atol=1e-6)
    np.testing.assert_allclose(back_cols, cols_f, atol=1e-6)
    assert registration.correlation > 0.9 and registration.bone_dice > 0.9
    # the follow-up's labels resampled onto the baseline grid
    warped = registration.warp_followup_labels(followup.truth_labels, baseline.truth_labels.shape)
    assert warped.shape == baseline.truth_labels.shape
    # The baseline's labels go the other way where its pixels map to.
    onto = registration.warp_baseline_labels(baseline.truth_labels, followup.truth_labels.shape)
    rows, cols = np.nonzero(baseline.truth_labels)
    there = np.round(registration.baseline_to_followup(rows, cols)).astype(int)
    assert np.mean(onto[there[0], there[1]] == baseline.truth_labels[rows, cols]) > 0.95
    # The same films give the same transform, to the last bit (one thread everywhere).
    again = register_films(baseline.radiograph, followup.radiograph, FAST,
                           baseline_deposits=baseline.truth_labels,
                           followup_deposits=followup.truth_labels)
    assert again.transform.GetParameters() == registration.transform.GetParameters()


def test_two_films_placed_at_opposite_extremes_register():
    """Each film within ±10° of the usual position, so up to 20° apart: the start search
    covers that (a phantom hand pair 18.2° apart was refused when it stopped at 14°)."""
    base = _film(seed=3, pose=Pose(-9.5, (2.0, -3.0)))
    followup = _film(seed=4, pose=Pose(9.5, (-4.0, 5.0), 0.985))
    registration = register_films(base.radiograph, followup.radiograph, FAST,
                                  baseline_deposits=base.truth_labels,
                                  followup_deposits=followup.truth_labels)
    assert registration.rotation_deg == pytest.approx(19.0, abs=0.3)
    joints = np.array([j.centre for j in build_anatomy("hand", 5).joints])
    rows_b, cols_b = _grid(base).to_film(joints[:, 0], joints[:, 1])
    rows, cols = registration.followup_to_baseline(*_grid(followup).to_film(joints[:, 0],
                                                                           joints[:, 1]))
    assert np.hypot(rows - rows_b, cols - cols_b).max() * 0.4 < 1.0


@pytest.mark.parametrize("field, value", [("patient_key", "someone-else"), ("laterality", "L"),
                                          ("body_part", "FOOT"), ("view_position", "LAT")])
def test_metadata_mismatch_is_refused(baseline, field, value):
    other = dataclasses.replace(baseline.radiograph, metadata=dataclasses.replace(
        baseline.radiograph.metadata, **{field: value}))
    with pytest.raises(DifferentAnatomy, match="not the same anatomy"):
        register_films(baseline.radiograph, other, FAST)


def test_missing_metadata_is_noted_not_refused(baseline):
    other = dataclasses.replace(baseline.radiograph, metadata=dataclasses.replace(
        baseline.radiograph.metadata, view_position=None))
    assert check_same_anatomy(baseline.radiograph, other) == (
        "view not checked (missing from the metadata)",)


@pytest.mark.parametrize("overrides", [dict(laterality="L"), dict(anatomy="forearm")],
                         ids=["mirrored-side", "other-body-part"])
def test_films_that_do_not_align_are_refused(baseline, overrides):
    """Metadata claiming the same anatomy does not make a left hand or a forearm comparable."""
    other = _film(seed=3, **overrides)
    lying = dataclasses.replace(other.radiograph, metadata=baseline.radiograph.metadata)
    with pytest.raises(RegistrationFailed, match="check that both films show the same"):
        register_films(baseline.radiograph, lying, FAST)


def _joint_error_mm(baseline, followup, registration, patient_seed):
    """Largest error (mm) at the phantom patient's joint centres inside both films."""
    joints = np.array([j.centre for j in build_anatomy(baseline.spec.anatomy,
                                                       patient_seed).joints])
    rows_b, cols_b = _grid(baseline).to_film(joints[:, 0], joints[:, 1])
    rows_f, cols_f = _grid(followup).to_film(joints[:, 0], joints[:, 1])
    rows, cols = registration.followup_to_baseline(rows_f, cols_f)
    error = np.hypot(rows - rows_b, cols - cols_b) * baseline.radiograph.spacing_mm[0]
    (hb, wb), (hf, wf) = baseline.radiograph.shape, followup.radiograph.shape
    seen = ((rows_b >= 0) & (rows_b < hb) & (cols_b >= 0) & (cols_b < wb)
            & (rows_f >= 0) & (rows_f < hf) & (cols_f >= 0) & (cols_f < wf))
    assert seen.sum() >= 2, "the test needs joints on both films"
    return float(error[seen].max())


@pytest.fixture(scope="module")
def forearm_pair():
    """A forearm (few bone ends in the field: the shafts alone barely fix scale and shift)
    re-filmed rotated, shifted, 2.5 % larger and at another dose."""
    base = _film(anatomy="forearm", seed=11, patient_seed=8, pose=Pose(-2.0, (1.0, -2.0)))
    follow = _film(anatomy="forearm", seed=12, patient_seed=8, dose=0.7,
                   pose=Pose(8.0, (6.0, -5.0), 1.025))
    return base, follow


def test_forearm_pair_registers_within_1mm_at_its_joints(forearm_pair):
    base, follow = forearm_pair
    registration = register_films(base.radiograph, follow.radiograph, FAST,
                                  baseline_deposits=base.truth_labels,
                                  followup_deposits=follow.truth_labels)
    assert registration.rotation_deg == pytest.approx(10.0, abs=0.3)
    assert registration.scale == pytest.approx(1.025, abs=0.005)
    assert _joint_error_mm(base, follow, registration, 8) <= 1.0


def test_film_without_detected_body_registers_on_its_own_bone_mask(forearm_pair, monkeypatch):
    """A limb filling the exposed field leaves the detector no air, so no body and no bone
    (forearm series seed 7): registration falls back on its own bone-emphasis mask."""
    import imaging.register as register

    base, _ = forearm_pair
    # the follow-up on a coarser detector, so that the patched detector can tell the films apart
    follow = _film(anatomy="forearm", seed=12, patient_seed=8, dose=0.7, spacing_mm=0.5,
                   pose=Pose(8.0, (6.0, -5.0), 1.025))
    found = register.find_anatomy

    def detector_finds_nothing_on_the_followup(grid, config, *args):
        anatomy = found(grid, config, *args)
        if tuple(grid.source_spacing_mm) == tuple(follow.radiograph.spacing_mm):
            empty = np.zeros_like(anatomy.body)
            return dataclasses.replace(anatomy, body=empty, bone=empty)
        return anatomy

    monkeypatch.setattr(register, "find_anatomy", detector_finds_nothing_on_the_followup)
    registration = register_films(base.radiograph, follow.radiograph, FAST)
    assert _joint_error_mm(base, follow, registration, 8) <= 1.0


def test_a_forearm_series_pair_registers_within_1mm_with_its_deposits_left_out():
    """Serial benchmark forearm series 10, visits 2 -> 3, with the detector's deposits left
    out of the metric: along the shafts the metric is so flat that the similarity stage
    stopped 1.1 mm short of its minimum; run a second time from there it reaches it."""
    from imaging.deposits import find_deposits
    from imaging.phantom import SeriesSpec, make_series

    series = make_series(SeriesSpec("forearm", seed=10, changes=("progression", "stable")))
    base, follow = series.visits[1], series.visits[2]
    registration = register_films(base.radiograph, follow.radiograph, AnalysisConfig(),
                                  baseline_deposits=find_deposits(base.radiograph).labels,
                                  followup_deposits=find_deposits(follow.radiograph).labels)
    assert _joint_error_mm(base, follow, registration, series.spec.patient_seed) <= 1.0
