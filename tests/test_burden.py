"""Per-deposit classes and per-region burden rows."""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pytest

from imaging.burden import (BURDEN_COLUMNS, assign_deposits, classify_morphology,
                            density_score, density_weight, region_burden, severity)
from imaging.compare import FilmDeposits, compare_registered
from imaging.config import AnalysisConfig, BurdenConfig
from imaging.deposits import find_deposits
from imaging.evaluation import match_deposits
from imaging.export import Provenance, deposit_rows
from imaging.paired import compared_deposits
from imaging.phantom import PhantomSpec, make_film, reexpose
from imaging.regions import region_map
from imaging.register import register_films


@pytest.fixture(scope="module")
def analysed():
    film = make_film(PhantomSpec("forearm", seed=5, spacing_mm=0.4, n_deposits=8,
                                 cnr_range=(15, 80), size_range_mm=(2, 10)))
    findings = find_deposits(film.radiograph)
    regions = region_map(film.radiograph, findings)
    infos = assign_deposits(regions, findings, film.radiograph)
    return film, findings, regions, infos


def test_region_rows_sum_to_film_totals(analysed):
    film, findings, regions, infos = analysed
    assert len(findings.deposits) >= 3, "the test film needs deposits"
    rows = region_burden(regions, findings, infos, calibrated=True)
    assert [r["region"] for r in rows][-1] == "all"
    assert all(tuple(r) == BURDEN_COLUMNS for r in rows)
    parts, total = rows[:-1], rows[-1]
    for key in ("n_deposits", "area_px", "area_mm2", "density_score_mm2",
                "integrated_density_mm2", "soft_tissue_area_px", "n_stone", "n_net"):
        assert sum(r[key] for r in parts) == pytest.approx(total[key], rel=1e-9), key
    assert total["area_px"] == sum(d.area_px for d in findings.deposits)
    assert total["area_mm2"] == pytest.approx(total["area_px"] * 0.16)
    assert 0 < total["fraction"] < 0.1
    assert total["largest_area_px"] == max(d.area_px for d in findings.deposits)


def test_uncalibrated_rows_have_no_mm2(analysed):
    _, findings, regions, infos = analysed
    total = region_burden(regions, findings, infos, calibrated=False)[-1]
    assert total["area_mm2"] is None and total["density_score_mm2"] is None
    assert total["area_px"] > 0 and total["density_score_px"] > 0
    assert total["severity"] is None                 # never graded on a guessed spacing


def test_severity_cutoffs():
    config = BurdenConfig()
    assert severity(0, None, config) == "none"
    assert severity(1, 9.99, config) == "mild"
    assert severity(3, 10.0, config) == "moderate"
    assert severity(3, 99.9, config) == "moderate"
    assert severity(9, 100.0, config) == "severe"
    assert severity(1, 1.5, BurdenConfig(severity_cutoffs_mm2=(1.0, 2.0))) == "moderate"
    with pytest.raises(ValueError):
        BurdenConfig(severity_cutoffs_mm2=(5.0, 1.0))


def test_density_bands():
    config = BurdenConfig()
    assert [density_weight(v, config) for v in (0.1, 0.25, 0.49, 0.5, 0.99, 1.0, 3.0)] == \
        [1, 2, 2, 3, 3, 4, 4]
    assert density_weight(None, config) is None


def test_density_score_moves_with_density_across_a_band_edge():
    """A deposit a little fainter or denser than a band edge: its band weight jumps from 1 to
    2, its pixel-by-pixel score moves by a fraction of that."""
    config = BurdenConfig()
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 0.03, 2000)
    fainter, denser = density_score(0.24 + noise, config), density_score(0.26 + noise, config)
    assert density_weight(0.24, config) == 1 and density_weight(0.26, config) == 2
    assert 2000 < fainter < denser < 1.35 * fainter
    assert density_score(np.full(10, 1.2), config) == 40.0


def test_deposit_density_scores_add_up_to_the_film_score(analysed):
    film, findings, regions, infos = analysed
    total = region_burden(regions, findings, infos, calibrated=True)[-1]
    assert total["density_score_px"] == pytest.approx(sum(i.density_score_px for i in infos))
    for deposit, info in zip(findings.deposits, infos):
        assert deposit.area_px <= info.density_score_px <= 4 * deposit.area_px


def test_periarticular_flag(analysed):
    _, findings, regions, _ = analysed
    deposit = findings.deposits[0]
    row, col = int(deposit.centroid_row), int(deposit.centroid_col)
    # A joint space right at the deposit's centroid, then one 20 mm away.
    r, c = regions._to_grid([row], [col])
    yy, xx = np.indices(regions.labels.shape)
    for offset_mm, expected in ((0.0, True), (20.0, False)):
        joint_col = c[0] + offset_mm / regions.spacing_mm
        distance = (np.abs(xx - joint_col) * regions.spacing_mm).astype(np.float32)
        moved = dataclasses.replace(regions, joint_distance_mm=distance)
        info = assign_deposits(moved, findings, _film_of(analysed))[0]
        assert info.periarticular is expected
        if not expected:
            assert info.joint_distance_mm > 3.0


def _film_of(analysed):
    return analysed[0].radiograph


def test_morphology_rules(analysed):
    _, findings, _, _ = analysed
    base = dataclasses.replace(findings.deposits[0], solidity=0.95, eccentricity=0.5,
                               relative_density=0.8, area_px=400)

    def classify(deposit, pieces, steepness):
        return classify_morphology(deposit, pieces, steepness, pixel_area_mm2=0.01)

    assert classify(base, 1, 1.2) == "stone"
    assert classify(base, 4, 1.2) == "net"
    assert classify(dataclasses.replace(base, solidity=0.4), 1, 1.2) == "net"
    assert classify(dataclasses.replace(base, eccentricity=0.97), 1, 1.2) == "plate"
    # The class follows the edge, not the density (which has its own bands)...
    assert classify(base, 1, 0.5) == "mousse"
    assert classify(dataclasses.replace(base, relative_density=0.2), 1, 1.2) == "stone"
    # ...except on a speck, whose edge is the system blur: 0.2 mm² is punctate.
    assert classify(dataclasses.replace(base, area_px=20), 1, 0.5) == "stone"


def test_crumbs_of_a_stones_outline_are_not_specks():
    """A noisy half-maximum cut leaves crumbs of a few pixels beside a stone: they do not
    make it a net; three specks of a net's size do."""
    import types

    from imaging.burden import _shape_measures

    labels = np.zeros((80, 80), np.int32)
    rows, cols = np.ogrid[:80, :80]
    labels[(rows - 40) ** 2 + (cols - 40) ** 2 <= 15 ** 2] = 1     # a stone of 700 px
    labels[40, 57:59] = 1                                          # two crumbs beside it
    labels[22:24, 40] = 1
    pixels = np.where(labels > 0, 200.0, 100.0).astype(np.float32)
    stone = types.SimpleNamespace(label=1, bbox=(22, 24, 57, 59), peak_contrast=100.0,
                                  equivalent_diameter_px=30.0)
    min_fraction = BurdenConfig().net_min_speck_fraction
    assert _shape_measures(pixels, labels, stone, (0.15, 0.15), min_fraction)[0] == 1
    assert _shape_measures(pixels, labels, stone, (0.15, 0.15), 0.0)[0] == 3

    net = np.zeros((80, 80), np.int32)
    for r, c, radius in ((20, 20, 3), (40, 45, 2), (60, 25, 2)):   # 29, 13 and 13 px
        net[(rows - r) ** 2 + (cols - c) ** 2 <= radius ** 2] = 1
    specks = types.SimpleNamespace(label=1, bbox=(17, 17, 63, 48), peak_contrast=100.0,
                                   equivalent_diameter_px=8.0)
    assert _shape_measures(pixels, net, specks, (0.15, 0.15), min_fraction)[0] == 3


def test_stones_and_clouds_told_apart_on_detected_outlines():
    """Phantom stones (domes) and mousse (Gaussian clouds) of the same density range, found by
    the detector: each class right for at least 70 % of the matched deposits (the density-
    and-sharpness rule this replaced called 2 of these 15 clouds mousse)."""
    counts = collections.Counter()
    for anatomy, seed in (("forearm", 20), ("forearm", 21), ("hand", 20), ("hand", 21)):
        film = make_film(PhantomSpec(anatomy, seed=seed, n_deposits=8,
                                     morphologies=("stone", "mousse"), cnr_range=(8, 30),
                                     size_range_mm=(2, 8)))
        findings = find_deposits(film.radiograph)
        infos = {i.label: i for i in assign_deposits(region_map(film.radiograph, findings),
                                                     findings, film.radiograph)}
        truth = {d.deposit_id: d.morphology for d in film.deposits}
        pairs, _, _ = match_deposits(film.truth_labels, findings.labels)
        matched = {}
        for truth_label, predicted, *_ in pairs:
            matched.setdefault(truth_label, predicted)
        for truth_label, predicted in matched.items():
            counts[truth[truth_label], infos[predicted].morphology] += 1
    for morphology in ("stone", "mousse"):
        n = sum(v for (t, _), v in counts.items() if t == morphology)
        assert n >= 8, f"too few matched {morphology} deposits to judge: {counts}"
        assert counts[morphology, morphology] >= 0.7 * n, counts


# --- exposure changes between visits ---------------------------------------------------------

Exposed = collections.namedtuple("Exposed", "film findings infos score integrated")


def _film_scores(film) -> Exposed:
    findings = find_deposits(film.radiograph)
    regions = region_map(film.radiograph, findings)
    infos = assign_deposits(regions, findings, film.radiograph)
    total = region_burden(regions, findings, infos, calibrated=True)[-1]
    return Exposed(film, findings, infos, total["density_score_mm2"],
                   total["integrated_density_mm2"])


@pytest.fixture(scope="module")
def reexposed():
    """A hand phantom at dose 1 and the same patient and deposits at 0.8x and 1.2x."""
    film = make_film(PhantomSpec(anatomy="hand", seed=4))
    return [_film_scores(f) for f in (film, reexpose(film, 0.8), reexpose(film, 1.2))]


def test_the_density_reference_does_not_move_with_exposure(reexposed):
    base = reexposed[0].findings.anatomy.bone_level
    for exposed in reexposed[1:]:
        assert abs(exposed.findings.anatomy.bone_level / base - 1) < 0.05


@pytest.mark.xfail(strict=True, reason="issue #5 is open: on this film the detector finds a "
                   "faint 5.8 mm² mousse deposit (CNR 3.6) at 1.2x dose only (outlined at "
                   "10.8 mm²), so the score moves +64 % (+1.4 % at 0.8x); the benchmark's "
                   "medians over 48 films are all under 5 % (python benchmarks/regions.py), "
                   "and compared as a follow-up the film moves under 5 % (next test)")
def test_density_scores_change_less_than_5_percent_with_exposure_only(reexposed):
    first = reexposed[0]
    for other in reexposed[1:]:
        assert abs(other.score / first.score - 1) < 0.05
        assert abs(other.integrated / first.integrated - 1) < 0.05


def _as_compared(exposed: Exposed) -> FilmDeposits:
    rows = deposit_rows("film", exposed.film.radiograph, exposed.findings,
                        Provenance.of(AnalysisConfig()), exposed.infos)
    return FilmDeposits(exposed.findings.labels, tuple(rows), exposed.film.pixel_area_mm2)


def test_density_scores_compared_as_a_follow_up_change_less_than_5_percent(reexposed):
    """The same film re-exposed, compared as ``calcitrack track`` compares two films of a
    patient (registered; deposits found again and extent shared, `imaging.paired`): the
    faint deposit the detector keeps at 1.2x only, which found again at 1.0x fails the
    rim-fraction test, is shared onto the 1.0x film, and the scores of ``changes.csv`` move
    less than 5 % (without the shared extent, +61 % and +46 %)."""
    first = reexposed[0]
    config = AnalysisConfig()
    for other in reexposed[1:]:
        baseline, followup = _as_compared(first), _as_compared(other)
        registration = register_films(first.film.radiograph, other.film.radiograph, config,
                                      baseline_deposits=baseline.labels,
                                      followup_deposits=followup.labels)
        baseline, followup = compared_deposits(
            first.film.radiograph, first.findings.search, baseline, other.film.radiograph,
            other.findings.search, followup, registration, config)
        whole = compare_registered(baseline, followup, registration, config.compare)[1][0]
        assert abs(whole.followup_density_score / whole.baseline_density_score - 1) < 0.05
        assert abs(whole.followup_integrated_density / whole.baseline_integrated_density
                   - 1) < 0.05
