"""The detector: contract of its output, behaviour on phantoms with exact truth, real films."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imaging import SpacingSource, read_radiograph
from imaging.config import AnalysisConfig
from imaging.deposits import find_deposits
from imaging.phantom import PhantomSpec, make_film
from imaging.radiograph import Radiograph


@pytest.fixture(scope="module")
def dense_stones():
    """A hand with dense, mid-sized stones and nothing else to confuse."""
    film = make_film(PhantomSpec(anatomy="hand", seed=7, n_deposits=4, morphologies=("stone",),
                                 cnr_range=(15.0, 40.0), size_range_mm=(2.0, 6.0)))
    return film, find_deposits(film.radiograph)


def _labels_over(findings, truth_mask) -> set:
    """The labels of the reported deposits that overlap a truth deposit's mask."""
    return set(np.unique(findings.labels[truth_mask])) - {0}


def test_labels_live_in_the_source_grid_and_match_the_measures(dense_stones):
    film, findings = dense_stones
    assert findings.labels.shape == film.radiograph.shape
    counts = np.bincount(findings.labels.ravel())
    assert len(findings.deposits) == int(findings.labels.max())
    for deposit in findings.deposits:
        assert deposit.area_px == counts[deposit.label]
        assert deposit.area_mm2 == pytest.approx(deposit.area_px * film.pixel_area_mm2)
        assert deposit.cnr > 0 and deposit.noise_sigma > 0


def test_dense_stones_are_found_with_their_area(dense_stones):
    film, findings = dense_stones
    for truth in film.deposits:
        inside = film.truth_labels == truth.deposit_id
        hits = _labels_over(findings, inside)
        assert hits, f"stone {truth.deposit_id} ({truth.area_mm2:.1f} mm², CNR {truth.cnr:.0f}) missed"
        found = sum(d.area_mm2 for d in findings.deposits if d.label in hits)
        assert found == pytest.approx(truth.area_mm2, rel=0.35)


def test_bone_is_never_reported():
    for seed in (21, 22):
        film = make_film(PhantomSpec(anatomy="hand", seed=seed))
        findings = find_deposits(film.radiograph)
        for deposit in findings.deposits:
            inside_bone = film.bone_mask[findings.labels == deposit.label].mean()
            assert inside_bone < 0.5, f"deposit {deposit.label} lies in bone"


@pytest.mark.parametrize("anatomy", ["hand", "lower_leg"])
def test_soft_tissue_stays_out_of_the_bone_mask_and_thin_bones_in_it(anatomy):
    """Fingers are narrower than the large bone-finding opening: their soft tissue stands above
    its floor as a whole, yet must stay searchable (acral and periarticular deposits lie there).
    The fibula is a thin tube, fainter than the tibia: it is bone, and the soft tissue between
    the two bones is not."""
    film = make_film(PhantomSpec(anatomy=anatomy, seed=3, n_deposits=0))
    findings = find_deposits(film.radiograph)
    bone = findings.grid.mask_to_source(findings.anatomy.bone)
    overlap = (bone & film.bone_mask).sum()
    assert overlap / bone.sum() >= 0.9, "the bone mask swallows soft tissue"
    assert overlap / film.bone_mask.sum() >= 0.95, "the bone mask misses bone"


def test_a_thin_unexposed_corner_is_a_shutter_region():
    """A tilted collimator leaves a thin unexposed sliver along one edge; left in the body,
    it sets the bone reference (everything else looks like soft tissue beside it)."""
    from imaging.anatomy import _shutter_regions

    rng = np.random.default_rng(1)
    values = (300 + 20 * rng.standard_normal((500, 250))).astype(np.float32)
    values[200:400, 60:200] += 2000                    # the patient
    sliver = np.zeros(values.shape, bool)
    for row in range(6):
        sliver[row, : 160 - 25 * row] = True           # 0.5 % of the film
    values[sliver] = 4095
    bright, dark = _shutter_regions(values)
    assert (bright == sliver).all() and not dark.any()


@pytest.mark.parametrize("seed", [3, 526816352])
def test_a_leg_filling_the_field_keeps_its_body(seed):
    """When a wide leg fills the field and air is a thin strip beside it, a two-class split
    of the film's values falls inside the soft tissue: the air is the lowest of three
    classes (air, soft tissue, bone)."""
    film = make_film(PhantomSpec(anatomy="lower_leg", seed=seed, n_deposits=0))
    findings = find_deposits(film.radiograph)
    body = findings.grid.mask_to_source(findings.anatomy.body)
    assert (body & film.body_mask).sum() >= 0.95 * film.body_mask.sum()
    assert (body & ~film.body_mask).sum() <= 0.05 * body.sum()


@pytest.mark.parametrize("metal, seed", [("screw", 5), ("wire", 7)])
def test_negative_film_with_markers_and_metal_has_no_false_deposits(metal, seed):
    """Hardware is no denser than the densest calcium in projection (a screw's shaft, a
    Kirschner wire leaving the bone): a wire is told by its long straight shape."""
    film = make_film(PhantomSpec(anatomy="forearm", seed=seed, n_deposits=0, marker=True,
                                 metal=metal))
    assert find_deposits(film.radiograph).deposits == ()


def test_a_wire_is_hardware_even_with_noise_specks_grouped_to_it():
    """The shipped sample lower leg (`calcitrack phantom samples`): its Kirschner wire leaves
    the tibia into soft tissue, and two noise specks within `max_speck_gap_mm` of it join its
    deposit, which then is not convex; the wire is judged by its largest piece."""
    film = make_film(PhantomSpec("lower_leg", seed=47, n_deposits=6, metal="wire",
                                 bits_stored=16, cnr_range=(2.0, 60.0)))
    findings = find_deposits(film.radiograph)
    assert not (findings.labels[film.object_mask] > 0).any()
    # The calcium is still reported: both plates of CNR 8 or more.
    found = {d.deposit_id for d in film.deposits if _labels_over(findings, film.truth_labels
                                                                  == d.deposit_id)}
    assert {d.deposit_id for d in film.deposits if d.cnr >= 8} <= found


def test_a_lead_letter_cut_square_is_lettering_and_a_bent_plate_is_not(dense_stones):
    """An "L" or a "T" outline is straight sides meeting at right angles; a plate bent the
    same way, its corners rounded and its sides ragged as calcium's are, is kept."""
    import dataclasses

    import cv2

    from imaging.deposits import select_deposits

    film, findings = dense_stones
    detection = AnalysisConfig().detection
    px_mm = float(np.sqrt(film.pixel_area_mm2))
    mm = lambda value: int(round(value / px_mm))                                  # noqa: E731
    stone = findings.deposits[0]

    def kept(mask):
        labels = np.zeros((mm(20), mm(20)), np.int32)
        labels[mm(5):mm(5) + mask.shape[0], mm(5):mm(5) + mask.shape[1]] = mask
        rows, cols = np.nonzero(labels)
        deposit = dataclasses.replace(stone, label=1, area_px=int(labels.sum()),
                                      bbox=(rows.min(), cols.min(), rows.max() + 1,
                                            cols.max() + 1))
        return len(select_deposits(labels, (deposit,), detection,
                                   pixel_area_mm2=film.pixel_area_mm2)[1]) == 1

    letter_l = np.zeros((mm(7), mm(5)), np.int32)
    letter_l[:, :mm(1.2)] = 1
    letter_l[-mm(1.2):, :] = 1
    letter_t = np.zeros((mm(7), mm(6)), np.int32)
    letter_t[:mm(1.2), :] = 1
    letter_t[:, mm(2.4):mm(3.6)] = 1
    bent = np.zeros((mm(7), mm(5)), np.uint8)
    cv2.polylines(bent, [np.array([[mm(0.6), mm(0.6)], [mm(0.8), mm(6.3)],
                                   [mm(4.4), mm(6.2)]], np.int32)], False, 1, mm(1.2))
    rng = np.random.default_rng(0)
    ragged = bent.astype(bool) & (rng.random(bent.shape) > 0.05)
    ragged |= cv2.dilate(ragged.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & (
        rng.random(bent.shape) > 0.7)

    assert not kept(letter_l) and not kept(letter_t)
    assert kept(bent.astype(np.int32)) and kept(ragged.astype(np.int32))
    small_l = letter_l[::4, ::4]                      # an outline under 8 mm: too small to tell
    assert 2 * sum(small_l.shape) * px_mm < detection.lettering_min_outline_mm
    assert kept(small_l)


def test_uncalibrated_film_reports_pixels_only(dense_stones):
    film, _ = dense_stones
    source = film.radiograph
    bare = Radiograph(source.pixels, None, SpacingSource.NONE, "bare.png",
                      source.metadata, source.photometric)
    findings = find_deposits(bare)
    assert findings.grid.nominal
    assert findings.deposits and all(d.area_mm2 is None and d.area_px > 0
                                     for d in findings.deposits)


def test_stage_timings_are_recorded(dense_stones):
    film, _ = dense_stones
    timings = {}
    find_deposits(film.radiograph, AnalysisConfig(), timings=timings)
    assert {"grid", "anatomy", "significance", "candidates", "outlines", "measures"} <= set(timings)


def _deposits_in(findings, box):
    r0, c0, r1, c1 = box
    window = findings.labels[r0:r1, c0:c1]
    return set(np.unique(window)) - {0}


def test_mammogram_vessels_found_and_letters_bar_and_bead_left_alone(shared_data):
    stem = shared_data / "calcified" / "breast_mlo_vascular_calcification_j2k"
    notes = json.loads(stem.with_suffix(".annotations.json").read_text())
    findings = find_deposits(read_radiograph(stem.with_suffix(".dcm")))
    for vessel in (c for c in notes["calcifications"] if c["kind"] == "vascular"):
        assert _deposits_in(findings, vessel["bbox_rc"]), vessel["what"]
    for artefact in notes["not_calcification"]:
        # The metal bead is clipped flat at the detector's ceiling: not calcium.
        if artefact["kind"] in ("burned_in_text", "redaction_bar", "metal_marker"):
            assert not _deposits_in(findings, artefact["bbox_rc"]), artefact["what"]
    assert all(d.core_noise_ratio is None or d.core_noise_ratio >= 0.3 for d in findings.deposits)


def test_flat_clipped_core_is_measured_as_noiseless():
    from imaging.measure import measure_deposits

    rng = np.random.default_rng(3)
    pixels = (100 + 10 * rng.standard_normal((80, 80))).astype(np.float32)
    labels = np.zeros((80, 80), np.int32)
    labels[10:30, 10:30] = 1                              # calcium: noisy like its surroundings
    pixels[10:30, 10:30] += 200
    labels[50:70, 50:70] = 2                              # a bead clipped at the ceiling
    pixels[50:70, 50:70] = 400.0
    calcium, bead = measure_deposits(pixels, labels, np.full_like(pixels, 100.0), (0.1, 0.1),
                                     calibrated=True, bone_level=None,
                                     soft_tissue=np.ones((80, 80), bool))
    assert calcium.core_noise_ratio > 0.7
    assert bead.core_noise_ratio < AnalysisConfig().detection.min_core_noise_ratio


def test_chest_film_stays_clean(radiographs):
    film = read_radiograph(radiographs / "chest_dx_mono1_inverse_plut_j2k.dcm")
    assert find_deposits(film).deposits == ()


def test_normal_tibia_has_no_deposits(radiographs):
    """The lead "R", its housing and the collimator glare around them are not deposits."""
    for name in ("tibia_cr_mono1_jpeg_lossless.dcm", "tibia_cr_mono1_jpegls_lossless.dcm"):
        assert find_deposits(read_radiograph(radiographs / name)).deposits == ()


def test_hip_film_reports_no_bone_as_deposits(radiographs):
    """At the pelvis bone scale the femoral head and neck are bone: their trabeculae, and the
    ischium's edge, were reported as deposits at the large-limb scale."""
    film = read_radiograph(radiographs / "hip_cr_rle.dcm")
    findings = find_deposits(film)
    assert findings.deposits == ()
    bone = findings.grid.mask_to_source(findings.anatomy.bone)
    for row, col in ((814, 876), (840, 972), (1219, 623)):      # what the large-limb scale found
        assert bone[row, col]


def test_dental_film_has_no_deposits_and_its_lead_letter_is_never_one(radiographs):
    """Read as a jaw (its descriptions say "TEETH"), the panoramic film's mandible is bone at
    the jaw's bone scale. Even taken for an unnamed film (hand scale, where pieces of the
    mandible are left out of the bone mask), its bare lead "L" over the neck's soft tissue is
    told by its square outline."""
    import dataclasses

    film = read_radiograph(radiographs / "dental_cr_modality_lut_sequence.dcm")
    assert find_deposits(film).deposits == ()
    unnamed = dataclasses.replace(film, metadata=dataclasses.replace(film.metadata,
                                                                      body_part=None))
    assert not find_deposits(unnamed).labels[1447:1489, 1818:1841].any()


def test_normal_hand_has_no_deposits(radiographs):
    """Its thumb sesamoids and the faint tuft of the little finger are bone, not deposits."""
    assert find_deposits(read_radiograph(radiographs / "hand_pa_cr_j2k_lossless.dcm")).deposits == ()


@pytest.mark.xfail(strict=True, reason="issue #4 is open: turned or rotated, the normal hand "
                   "gives false deposits (1.5 mm² mirrored, 29 mm² at 1 degree); only its "
                   "own orientation has been checked until now")
def test_normal_hand_has_no_deposits_whichever_way_it_lies(radiographs):
    """The same film mirrored (as a left hand would lie) and turned by 1 degree (resampled
    linearly, as a repositioned film's pixels are not): still no deposits."""
    import dataclasses

    import cv2

    film = read_radiograph(radiographs / "hand_pa_cr_j2k_lossless.dcm")
    rows, cols = film.shape
    turn = cv2.getRotationMatrix2D((cols / 2, rows / 2), 1.0, 1.0)
    for pixels in (film.pixels[:, ::-1],
                   cv2.warpAffine(film.pixels.astype(np.float32), turn, (cols, rows),
                                  flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)):
        moved = dataclasses.replace(film, pixels=np.ascontiguousarray(pixels, np.float32))
        assert find_deposits(moved).deposits == ()


def test_fast_tile_statistics_equal_the_plain_numpy_ones():
    """The sorted-row medians and pixel-only bounding boxes (speed, issue #4) give exactly
    what `np.nanmedian` and `scipy.ndimage.find_objects` give."""
    import cv2
    from scipy import ndimage

    from imaging.measure import bounding_boxes
    from imaging.preprocess import (_tile_location_and_spread, local_location_and_spread,
                                    local_spread)

    rng = np.random.default_rng(11)
    values = (50 * rng.standard_normal((170, 130))).astype(np.float32)
    mask = rng.random(values.shape) < 0.6
    mask[:, :40] = False                                  # tiles without enough pixels
    center, spread = _tile_location_and_spread(values, mask, 20)
    blocks = np.where(mask, values, np.nan)[::2, ::2][:80, :60].reshape(8, 10, 6, 10)
    blocks = blocks.transpose(0, 2, 1, 3).reshape(8, 6, 100)
    enough = np.isfinite(blocks).sum(axis=2) >= 25
    expected_center = np.nanmedian(blocks[enough], axis=1)
    deviation = np.abs(blocks[enough] - expected_center[:, None])
    expected_spread = 1.4826 * np.nanmedian(deviation, axis=1)
    assert (~enough).any() and np.array_equal(center[enough], expected_center)
    assert np.array_equal(spread[enough], expected_spread)
    assert np.all(spread[~enough] == np.median(expected_spread))
    full_center, full_spread = local_location_and_spread(values, mask, 20)
    assert np.array_equal(full_spread, cv2.resize(spread, (130, 170),
                                                  interpolation=cv2.INTER_LINEAR))
    assert np.array_equal(local_spread(values, mask, 20), full_spread)

    labels = np.zeros((60, 50), np.int32)
    labels[5:9, 7:20] = 2
    labels[30:41, 3:5] = 4
    labels[30, 45] = 4
    assert bounding_boxes(labels) == ndimage.find_objects(labels)


def test_coarse_grid_background_matches_the_full_grid_normalised_convolution():
    """`smooth_background` with a wide kernel (divided on a grid 8x coarser, for speed) gives
    the full-resolution normalised convolution of a tilted, noisy level with masked holes
    to a small fraction of the noise, and fills the holes from around them."""
    import cv2

    from imaging.preprocess import smooth_background

    rng = np.random.default_rng(5)
    rows, cols = np.mgrid[0:400, 0:320].astype(np.float32)
    level = 1000 + 0.5 * rows - 0.3 * cols
    values = level + 20 * rng.standard_normal(level.shape).astype(np.float32)
    weights = np.ones(level.shape, bool)
    weights[100:160, 80:200] = False                      # a bone
    values[100:160, 80:200] += 5000
    weights[:, 290:] = False                              # air at the film's edge
    sigma = 25.0
    w = weights.astype(np.float32)
    num = cv2.GaussianBlur(values * w, (0, 0), sigma)
    full = num / np.maximum(cv2.GaussianBlur(w, (0, 0), sigma), 1e-6)
    coarse = smooth_background(values, weights, sigma)
    inside = np.zeros(level.shape, bool)
    inside[40:-40, 40:-40] = True                          # border rows: kernels differ there
    assert np.max(np.abs(coarse - full)[inside]) < 1.0    # the noise is 20
    # The bone (5000 above) is left out; a tilt leaves the same ~10 bias at full resolution.
    assert np.max(np.abs(coarse - level)[100:160, 80:200]) < 15.0


def test_depth_profile_does_not_absorb_a_sheet_running_along_the_skin():
    """A sheet at a constant depth below the skin fills a good part of its depth bins: the
    profile's clip, measured on the side below the level, leaves it out (a standard
    deviation that the sheet itself widens let 12 of its 60 into the profile)."""
    import cv2

    from imaging.preprocess import skin_depth_background

    rng = np.random.default_rng(3)
    body = np.zeros((400, 400), bool)
    body[:, 50:350] = True                                # a limb 60 mm wide at 0.2 mm
    depth_mm = cv2.distanceTransform(body.astype(np.uint8), cv2.DIST_L2, 5) * 0.2
    level = 1000 + 40 * np.minimum(depth_mm, 10)          # thicker inwards
    values = (level + 10 * rng.standard_normal(level.shape)).astype(np.float32)
    rows, cols = np.mgrid[0:400, 0:400]
    sheet = (depth_mm >= 2.5) & (depth_mm < 4.0) & (rows < 160) & (cols < 200)
    values[sheet] += 60                                   # 6 noise sd along 40 % of one side
    background = skin_depth_background(values, body, depth_mm, tile_px=400)
    assert abs(float((background - level)[sheet].mean())) < 3.0


def test_bone_contact_tells_a_strip_along_bone_from_a_deposit_beside_it():
    from imaging.measure import measure_deposits

    rng = np.random.default_rng(5)
    pixels = (100 + 5 * rng.standard_normal((120, 120))).astype(np.float32)
    bone = np.zeros((120, 120), bool)
    bone[:, 60:] = True                                   # a bone edge at column 60
    labels = np.zeros((120, 120), np.int32)
    labels[10:50, 55:58] = 1                              # a strip along the edge, 0.3 mm off
    yy, xx = np.mgrid[:120, :120]
    labels[(yy - 90) ** 2 + (xx - 50) ** 2 <= 36] = 2     # a round deposit touching the edge
    pixels[labels > 0] += 60
    strip, beside = measure_deposits(pixels, labels, np.full_like(pixels, 100.0), (0.1, 0.1),
                                     calibrated=True, bone_level=100.0,
                                     soft_tissue=~bone, bone=bone)
    limit = AnalysisConfig().detection.max_bone_contact
    assert strip.bone_contact > limit > beside.bone_contact > 0


def test_a_strip_along_the_skin_line_is_dropped_and_a_deposit_under_the_skin_kept():
    """The skin seen edge-on is brighter than the fat under it; where the background misses
    it, a strip runs along the skin at a constant depth. A deposit under the skin is about
    as deep as it is wide."""
    import dataclasses

    from imaging.deposits import rejection, select_deposits
    from imaging.measure import measure_deposits

    rng = np.random.default_rng(5)
    pixels = (100 + 5 * rng.standard_normal((200, 120))).astype(np.float32)
    body = np.zeros((200, 120), bool)
    body[:, 20:] = True                                   # the skin at column 20
    labels = np.zeros((200, 120), np.int32)
    labels[20:120, 28:32] = 1                             # 10 mm along the skin, 0.8-1.2 mm deep
    yy, xx = np.mgrid[:200, :120]
    labels[(yy - 160) ** 2 + (xx - 32) ** 2 <= 64] = 2    # 1.6 mm across, 1.2 mm under the skin
    labels[(yy - 160) ** 2 + (xx - 90) ** 2 <= 64] = 3    # deep in the tissue
    pixels[labels > 0] += 60
    strip, lump, deep = measure_deposits(pixels, labels, np.full_like(pixels, 100.0), (0.1, 0.1),
                                         calibrated=True, bone_level=100.0, soft_tissue=body,
                                         body=body)
    assert 0.8 <= strip.skin_depth_mm <= 1.2 and 1.1 <= lump.skin_depth_mm <= 1.3
    assert deep.skin_depth_mm is None and deep.skin_depth_change is None
    assert strip.skin_depth_change < 0.05 and lump.skin_depth_change > 0.3
    detection = AnalysisConfig().detection
    _, kept = select_deposits(labels, (strip, lump, deep), detection, pixel_area_mm2=0.01)
    assert [d.area_px for d in kept] == [lump.area_px, deep.area_px]
    # The misses benchmark names the test that drops a candidate.
    assert [rejection(d, labels, detection, pixel_area_mm2=0.01) for d in (strip, lump, deep)] \
        == ["skin line", None, None]
    sheet = dataclasses.replace(strip, relative_density=1.2)     # denser than skin can be
    assert len(select_deposits(labels, (sheet,), detection, pixel_area_mm2=0.01)[1]) == 1


def test_a_calcium_lump_is_domed_and_a_small_bone_is_not():
    """In projection a solid lump is thickest at its centre; a small bone's cortex shell
    makes it as dense at its edge as inside."""
    from imaging.anatomy import _domed

    r = np.hypot(*(np.mgrid[:41, :41] - 20.0)) / 15.0          # radius 15 px
    inside = r <= 1
    lump = np.where(inside, np.sqrt(np.clip(1 - r ** 2, 0, 1)), 0.0)
    shell = np.where(inside, lump - 0.85 * np.sqrt(np.clip(1 - (r / 0.85) ** 2, 0, 1)), 0.0)
    bone = shell + 0.3 * lump                                    # cortex and trabeculae
    anatomy = AnalysisConfig().anatomy
    for ratio in (anatomy.dome_ratio, anatomy.small_bone_max_dome_ratio):
        assert _domed(inside, lump, ratio)
        assert not _domed(inside, bone, ratio)
    # A piece cut to its bounding box, as `_domed_islands` passes it, even one filling it.
    assert _domed(inside[5:36, 5:36], lump[5:36, 5:36], anatomy.dome_ratio)
    square = np.ones((9, 9), bool)
    assert not _domed(square, np.ones((9, 9)), anatomy.dome_ratio)


def test_a_small_textured_bone_is_given_back_to_the_bone_mask_and_a_smooth_lump_is_not():
    """A sesamoid beside a joint is fainter than the cortex that sets the refined bone outline;
    the coarse bone holds it. Trabecular texture tells it from a smooth calcium lump there."""
    import cv2

    from imaging.anatomy import _small_bones_and_bone_ends

    spacing = 0.2
    rng = np.random.default_rng(5)
    rows, cols = np.mgrid[:120, :120]
    island = (rows - 60) ** 2 + (cols - 62) ** 2 <= 11 ** 2       # 4.4 mm across
    bone = cols < 40                                              # the metacarpal, 1.8 mm away
    coarse_bone = bone | ((rows - 60) ** 2 + (cols - 62) ** 2 <= 14 ** 2)
    config = AnalysisConfig().anatomy
    found = {}
    for name, texture_sd in (("sesamoid", 6.0), ("lump", 0.0)):
        # Edges blurred like a film's; trabeculae of 0.2-0.4 mm.
        trabeculae = cv2.GaussianBlur(rng.standard_normal((120, 120)), (0, 0), 0.7)
        texture = np.where(island, texture_sd * trabeculae / trabeculae.std(), 0.0)
        values = (100 + 2 * rng.standard_normal((120, 120)) + texture
                  + cv2.GaussianBlur(np.where(island, 40.0, 0.0), (0, 0), 1.0))
        values[bone] += 100
        found[name] = _small_bones_and_bone_ends(values.astype(np.float32),
                                                 np.full((120, 120), 100, np.float32),
                                                 coarse_bone, bone, 100.0, spacing, config)
    assert (found["sesamoid"] & island).sum() >= 0.8 * island.sum()
    assert not (found["sesamoid"] & ~coarse_bone).any()
    assert not found["lump"].any()


def test_a_small_deposit_along_a_bone_is_a_sliver_and_a_larger_one_is_not(dense_stones):
    """Slivers of bone edge are small; a deposit beside a bone may touch it as much when it
    is larger."""
    import dataclasses

    from imaging.deposits import select_deposits

    film, findings = dense_stones
    detection = AnalysisConfig().detection
    labels = (findings.labels == findings.deposits[0].label).astype(np.int32)
    stone = dataclasses.replace(findings.deposits[0], label=1, bone_contact=0.45)
    assert detection.sliver_max_bone_contact < 0.45 < detection.max_bone_contact
    area = film.pixel_area_mm2

    def kept(area_mm2):
        deposit = dataclasses.replace(stone, area_px=int(area_mm2 / area))
        return len(select_deposits(labels, (deposit,), detection, pixel_area_mm2=area)[1]) == 1

    assert not kept(2.0) and kept(6.0)


def test_a_faint_deposit_is_kept_only_when_small_and_compact_or_sharply_bounded(dense_stones):
    """Below `min_relative_density` of bone, a small deposit must be compact (a stone is) or
    stand out from its rim more clearly; from `faint_solid_min_area_mm2` on it must be
    solid (a faint lace at a fingertip is no deposit); larger ones are texture (unless
    sheets, below)."""
    import dataclasses

    from imaging.deposits import select_deposits

    film, findings = dense_stones
    detection = AnalysisConfig().detection
    stone = dataclasses.replace(findings.deposits[0], label=1)
    labels = (findings.labels == findings.deposits[0].label).astype(np.int32)
    pixel_area = film.pixel_area_mm2
    small = int(5.0 / pixel_area)
    assert stone.solidity >= detection.faint_compact_min_solidity
    compact = dataclasses.replace(stone, relative_density=0.12, area_px=small, rim_cnr=3.5,
                                  rim_contrast=0.7 * stone.mean_contrast)

    def kept(deposit, area=pixel_area):
        return len(select_deposits(labels, (deposit,), detection, pixel_area_mm2=area)[1]) == 1

    assert kept(compact)                        # the usual rim tests: 2.5 and 0.6 from 4 mm²
    assert not kept(compact, area=None)
    assert not kept(dataclasses.replace(compact, area_px=int(20.0 / pixel_area)))
    assert not kept(dataclasses.replace(compact, relative_density=0.08))
    assert not kept(dataclasses.replace(compact, rim_cnr=2.0))
    assert not kept(dataclasses.replace(compact, rim_contrast=0.5 * stone.mean_contrast))
    assert not kept(dataclasses.replace(compact, area_px=int(0.5 / pixel_area)))  # too few px

    less_compact = dataclasses.replace(compact, solidity=0.6)
    assert not kept(less_compact)               # ...needs 4.5 and 0.8
    sharp = dataclasses.replace(less_compact, rim_cnr=6.0, rim_contrast=stone.mean_contrast)
    assert kept(sharp)
    lace = dataclasses.replace(sharp, solidity=0.4)
    assert not kept(lace)
    assert kept(dataclasses.replace(lace, area_px=int(3.0 / pixel_area)))
    assert kept(dataclasses.replace(lace, relative_density=0.2))
    assert kept(dataclasses.replace(less_compact, relative_density=0.2))


def test_a_large_sheet_clear_of_bone_needs_no_rim_fraction(dense_stones):
    """The rim of a wide faint sheet holds its own soft edge; the rim-fraction test, which
    finds slivers of bone edge, applies to small deposits and to those touching bone."""
    import dataclasses

    from imaging.deposits import select_deposits

    film, findings = dense_stones
    detection = AnalysisConfig().detection
    labels = (findings.labels == findings.deposits[0].label).astype(np.int32)
    stone = findings.deposits[0]
    pixel_area = film.pixel_area_mm2
    sheet = dataclasses.replace(stone, label=1, relative_density=0.3, rim_cnr=4.0,
                                rim_contrast=0.45 * stone.mean_contrast, bone_contact=0.0,
                                area_px=int(30.0 / pixel_area))

    def kept(deposit):
        return len(select_deposits(labels, (deposit,), detection,
                                   pixel_area_mm2=pixel_area)[1]) == 1

    assert kept(sheet)
    assert not kept(dataclasses.replace(sheet, bone_contact=0.1))
    assert not kept(dataclasses.replace(sheet, area_px=int(6.0 / pixel_area)))
    assert not kept(dataclasses.replace(sheet, bone_contact=None))     # no bone mask: no say


def test_a_large_faint_sheet_is_kept_when_drawn_out_and_clear_of_bone(dense_stones):
    """Above `faint_max_area_mm2`, a region fainter than `min_relative_density` is a
    calcified sheet when it is drawn out, clear of bone and stands out from its rim as any
    deposit must; rounder, touching bone or fainter still, it is soft-tissue texture."""
    import dataclasses

    from imaging.deposits import rejection

    film, findings = dense_stones
    detection = AnalysisConfig().detection
    stone = findings.deposits[0]
    labels = (findings.labels == stone.label).astype(np.int32)
    sheet = dataclasses.replace(stone, label=1, relative_density=0.12, eccentricity=0.98,
                                bone_contact=0.0, rim_cnr=3.5,
                                rim_contrast=0.8 * stone.mean_contrast,
                                area_px=int(30.0 / film.pixel_area_mm2))

    def verdict(deposit, area=film.pixel_area_mm2):
        return rejection(deposit, labels, detection, pixel_area_mm2=area)

    assert verdict(sheet) is None
    for texture in (dataclasses.replace(sheet, eccentricity=0.9),
                    dataclasses.replace(sheet, bone_contact=0.2),
                    dataclasses.replace(sheet, relative_density=0.07),
                    dataclasses.replace(sheet, rim_cnr=2.8),
                    dataclasses.replace(sheet, rim_contrast=0.5 * stone.mean_contrast)):
        assert verdict(texture) == "rim or density"
    assert verdict(sheet, area=None) == "rim or density"


def test_a_faint_calcified_sheet_on_a_lower_leg_is_found():
    """A sheet of calcinosis universalis of CNR 3.6 and 55 mm² (0.1 of the bone contrast) on a
    lower leg: found, and kept by the faint-sheet rule alone; nothing else is reported."""
    import dataclasses

    from imaging.deposits import rejection

    film = make_film(PhantomSpec("lower_leg", seed=46, n_deposits=2,
                                 morphologies=("universalis",), cnr_range=(2.5, 4.5),
                                 size_range_mm=(10, 20)))
    sheet = max(film.deposits, key=lambda d: d.cnr)
    assert 3 < sheet.cnr < 5 and sheet.area_mm2 > 40
    findings = find_deposits(film.radiograph)
    assert len(findings.deposits) == 1
    assert (findings.labels[film.truth_labels == sheet.deposit_id] > 0).mean() > 0.8
    found = findings.deposits[0]
    detection = AnalysisConfig().detection
    assert found.relative_density < detection.min_relative_density
    rounder_only = dataclasses.replace(detection, faint_sheet_min_eccentricity=1.01)
    assert rejection(found, findings.labels, rounder_only,
                     pixel_area_mm2=film.pixel_area_mm2) == "rim or density"


def test_bones_cut_by_the_field_edge_stay_bone():
    """Carpal bones the collimated top edge of a forearm film cuts to narrow pieces are
    bone, not deposits (they were reported as two dense deposits of 34 and 18 mm²)."""
    from imaging.phantom import SeriesSpec, make_series

    film = make_series(SeriesSpec("forearm", seed=504, changes=("stable",))).visits[0]
    findings = find_deposits(film.radiograph)
    found = findings.labels > 0
    assert not (found & film.bone_mask).any()
    truth = film.truth_labels > 0
    assert all((truth[findings.labels == d.label]).any() for d in findings.deposits)


def test_outline_keeps_specks_near_the_seed_and_splits_distant_ones():
    """A faint deposit's candidate, grown at coarse scales, also holds noise specks: only the
    specks near where it reaches the seed level are outlined, and specks farther apart than
    `max_speck_gap_mm` are separate deposits, closer ones (a cluster) one."""
    from imaging.anatomy import Anatomy
    from imaging.deposits import outline_in_source_grid
    from imaging.preprocess import AnalysisGrid

    shape, spacing = (160, 160), 0.1                      # 16 x 16 mm, one grid for both
    yy, xx = np.mgrid[:shape[0], :shape[1]]

    def speck(row, col, radius=4):
        return 60.0 * np.exp(-((yy - row) ** 2 + (xx - col) ** 2) / (2 * (radius / 2) ** 2))

    pixels = (100 + speck(40, 40) + speck(40, 50) + speck(40, 100) + speck(120, 120)
              ).astype(np.float32)
    radiograph = Radiograph(pixels, (spacing, spacing), SpacingSource.PIXEL_SPACING, "synthetic")
    grid = AnalysisGrid(pixels, spacing, shape, (spacing, spacing), False)
    everywhere = np.ones(shape, bool)
    anatomy = Anatomy(everywhere, ~everywhere, ~everywhere, 100.0, None)
    candidates = np.zeros(shape, np.int32)
    candidates[20:140, 20:140] = 1                        # one wide candidate holds them all
    significance = np.zeros(shape, np.float32)
    significance[35:46, 35:56] = 10.0                     # seeded: the pair 1 mm apart...
    significance[35:46, 95:106] = 10.0                    # ...and a speck 5 mm beside it
    labels = outline_in_source_grid(radiograph, grid, anatomy, np.full(shape, 100.0, np.float32),
                                    significance, candidates, AnalysisConfig())
    assert labels.max() == 2
    assert labels[40, 40] == labels[40, 50] != labels[40, 100]
    assert labels[40, 100] > 0 and labels[120, 120] == 0  # the unseeded speck is not outlined


def test_a_deposit_is_outlined_into_the_unsearched_band_beside_bone_within_reach():
    """`to_bone_edge`: the band beside bone is not searched, but a kept deposit's outline
    drawn over all soft tissue reaches into it; pixels of that outline farther than
    `OUTLINE_REACH_MM` from the deposit, or outside the band, are not added."""
    from imaging.deposits import OUTLINE_REACH_MM, to_bone_edge

    spacing = (0.1, 0.1)
    labels = np.zeros((40, 60), np.int32)
    labels[10:20, 10:20] = 1
    margin = np.zeros(labels.shape, bool)
    margin[20:30, :] = True                               # the band beside a bone below
    edge_outlines = np.zeros(labels.shape, np.int32)
    edge_outlines[10:30, 10:20] = 1                       # the deposit down to the bone
    edge_outlines[20:30, 40:50] = 2                       # far along the band
    edge_outlines[5:10, 10:20] = 1                        # beyond the deposit, not the band
    extended = to_bone_edge(labels, edge_outlines, margin, spacing)
    added = (extended > 0) & (labels == 0)
    reach_px = round(OUTLINE_REACH_MM / spacing[0])
    assert added[20:20 + reach_px, 10:20].all() and (extended[added] == 1).all()
    assert not added[20 + reach_px + 1:].any()
    assert not added[:, 30:].any() and not added[:20].any()
    assert np.array_equal(extended[labels > 0], labels[labels > 0])
    nothing = np.where(margin, 0, edge_outlines)
    assert to_bone_edge(labels, nothing, margin, spacing) is labels


def test_a_periarticular_lump_is_outlined_to_the_bone_edge():
    """A forearm with periarticular lumps (CNR 5-15): the two found lie against the bone,
    their truth running into the unsearched band beside it. Their outlines reach into it,
    on their truth, and their areas come within 20 % of it."""
    film = make_film(PhantomSpec("forearm", seed=1, n_deposits=4,
                                 morphologies=("periarticular",), cnr_range=(5.0, 15.0),
                                 size_range_mm=(1.5, 6.0)))
    findings = find_deposits(film.radiograph)
    band = findings.search.source_bone_edge_band
    outlined = 0
    for truth in film.deposits:
        inside = film.truth_labels == truth.deposit_id
        found = _labels_over(findings, inside)
        if not found:
            continue
        outlined += 1
        reached = np.isin(findings.labels, list(found)) & band
        assert reached.sum() >= 0.5 * (inside & band).sum() > 0
        assert (film.truth_labels[reached] == truth.deposit_id).mean() > 0.8
        area = sum(d.area_mm2 for d in findings.deposits if d.label in found)
        assert area == pytest.approx(truth.area_mm2, rel=0.2)
    assert outlined == 2


def test_a_gap_in_a_thin_long_bone_stays_bone_and_a_lump_on_a_bone_does_not():
    """The appendage cut opens a gap where a thin long bone narrows; that piece joins two
    stretches of the kept bone end to end, while a lump the cut took off hangs on one."""
    from imaging.anatomy import _bone_bridges

    kept = np.zeros((120, 60), bool)
    kept[5:50, 20:30] = kept[70:115, 20:30] = True       # the bone above and below the gap
    lost = np.zeros_like(kept)
    lost[50:70, 23:27] = True                            # the narrow stretch between them
    lost[20:30, 30:36] = True                            # a lump on the side of the upper part
    bridges = _bone_bridges(lost, kept, AnalysisConfig().anatomy.bridge_min_elongation)
    assert bridges[50:70, 23:27].all()
    assert not bridges[20:30, 30:36].any()


def test_a_lower_leg_film_has_no_false_deposits_on_the_fibula():
    """Where the fibula narrows below the appendage cut's width, the stretch cut out of the
    bone mask was reported as a deposit on this film (the accuracy suite's f003)."""
    film = make_film(PhantomSpec("lower_leg", seed=1655788644, spacing_mm=0.2, dose=0.668))
    findings = find_deposits(film.radiograph)
    false = [d.label for d in findings.deposits
             if not (film.truth_labels[findings.labels == d.label] > 0).any()]
    assert findings.deposits and false == []


def test_an_outline_of_a_few_pixels_is_a_noise_spike(dense_stones):
    """A final outline smaller than `min_outline_area_mm2` is dropped whatever its contrast."""
    import dataclasses

    from imaging.deposits import select_deposits

    film, findings = dense_stones
    detection = AnalysisConfig().detection
    labels = (findings.labels == findings.deposits[0].label).astype(np.int32)
    stone = dataclasses.replace(findings.deposits[0], label=1)
    area = film.pixel_area_mm2

    def kept(area_mm2):
        deposit = dataclasses.replace(stone, area_px=max(1, int(area_mm2 / area)))
        return len(select_deposits(labels, (deposit,), detection, pixel_area_mm2=area)[1]) == 1

    assert kept(2.0) and not kept(0.5 * detection.min_outline_area_mm2)


def test_a_plate_beside_a_finger_bone_is_found_and_is_not_bone():
    """The accuracy suite's f000: a 25 mm² plate 2 mm wide runs along a phalanx 2.4 mm from
    it. The coarse watershed took plate, gap and bone as one bone; the soft-tissue gap now
    detaches it."""
    film = make_film(PhantomSpec("hand", seed=63103603, spacing_mm=0.175, dose=0.7395))
    findings = find_deposits(film.radiograph)
    plate = film.truth_labels == 1
    bone = findings.grid.mask_to_source(findings.anatomy.bone)
    assert bone[plate].mean() < 0.05
    found = _labels_over(findings, plate)
    assert found, "the plate beside the bone was missed"
    area = sum(d.area_mm2 for d in findings.deposits if d.label in found)
    assert area == pytest.approx(film.deposits[0].area_mm2, rel=0.2)


def test_a_detached_strip_leaves_the_bone_mask_and_the_marrow_stays():
    """Synthetic: a bone 8 mm wide whose marrow is darker than its cortex but far above soft
    tissue, and a 2 mm strip 2 mm beside it joined to it at both ends (as the coarse mask
    joins them). The strip and the gap go; the bone, marrow included, stays."""
    from imaging.anatomy import _without_detached_strips

    spacing = 0.2
    rng = np.random.default_rng(0)
    values = np.full((300, 200), 1000.0, np.float32)                  # soft tissue
    values[:, 60:100] = 3000.0                                        # bone, 8 mm
    values[:, 60:66] = values[:, 94:100] = 4000.0                     # its cortices
    values[100:200, 50:60] = 1000.0                                   # the gap, 2 mm
    values[100:200, 40:50] = 3500.0                                   # the strip, 2 mm
    values += rng.normal(0, 30, values.shape).astype(np.float32)
    body = np.zeros(values.shape, bool)
    body[:, 10:190] = True
    mask = np.zeros(values.shape, bool)
    mask[:, 60:100] = True
    mask[95:205, 40:60] = True                                        # strip and gap in it
    kept = _without_detached_strips(values, mask, body, bone_level=2500.0, spacing_mm=spacing,
                                    config=AnalysisConfig().anatomy)
    assert not kept[100:200, 40:50].any() and not kept[110:190, 50:58].any()
    assert kept[:, 60:100].all()


def test_a_sheet_under_a_fingers_skin_is_not_the_skin_line():
    """The accuracy suite's f004: a 48 mm² sheet of calcinosis universalis runs along a
    finger 2.6 mm under its skin. Hand films' skin lines lie within `skin_line_depth_hand_mm`
    (2 mm); the large limbs' 3 mm had it dropped as skin seen edge-on."""
    film = make_film(PhantomSpec("hand", seed=630112362, spacing_mm=0.2, dose=1.9417,
                                 laterality="L"))
    findings = find_deposits(film.radiograph)
    sheet = film.truth_labels == 2
    assert film.deposits[1].morphology == "universalis"
    found = _labels_over(findings, sheet)
    assert found, "the sheet under the skin was dropped"
    assert sum(d.area_mm2 for d in findings.deposits if d.label in found) > 30.0


def test_a_sheet_along_the_skin_is_outlined_whole():
    """The accuracy suite's s00-v2 (seed 0): a 63 mm² sheet of calcinosis universalis runs
    along the ulnar side of the wrist at a nearly constant depth below the skin. With the
    coarse pass's depth profile learnt on the final pass's tiles, the sheet filled its depth
    bins, the profile took in part of it, and only its brightest third (22 mm²) was left out
    of the background and outlined."""
    from imaging.phantom import SeriesSpec, make_series

    film = make_series(SeriesSpec("hand", seed=1425034562, changes=("progression", "improvement"),
                                  spacing_mm=0.2, laterality="L", metal="screw",
                                  bits_stored=16)).visits[1]
    sheet = film.truth_labels == 3
    assert film.deposits[2].morphology == "universalis"
    findings = find_deposits(film.radiograph)
    found = _labels_over(findings, sheet)
    assert found, "the sheet was missed"
    area = sum(d.area_mm2 for d in findings.deposits if d.label in found)
    assert area == pytest.approx(film.deposits[2].area_mm2, rel=0.15)


def test_a_sheet_in_a_lower_legs_soft_tissue_is_not_a_bone():
    """The accuracy suite's f011 (seed 1): a 102 mm² sheet of calcinosis universalis, 4-5 mm
    wide, clear of the tibia and fibula, passed as an isolated bone (large and 4 mm wide);
    on a lower leg an island must be `long_limb_min_island_width_mm` wide to be one."""
    film = make_film(PhantomSpec("lower_leg", seed=1115388619, spacing_mm=0.2, dose=1.0775,
                                 laterality="L", bits_stored=14))
    findings = find_deposits(film.radiograph)
    sheet = film.truth_labels == 1
    assert film.deposits[0].morphology == "universalis"
    assert findings.grid.mask_to_source(findings.anatomy.bone)[sheet].mean() < 0.05
    found = _labels_over(findings, sheet)
    assert found, "the sheet was taken for a bone"
    area = sum(d.area_mm2 for d in findings.deposits if d.label in found)
    assert area == pytest.approx(film.deposits[0].area_mm2, rel=0.15)


def test_narrow_islands_are_bone_only_off_long_limbs_or_at_the_fields_edge():
    """Synthetic coarse bone masks (0.8 mm grid): a 30 mm long island 6 mm wide is a bone on
    a hand film, a sheet of calcium on a lower leg, and a bone again where the field's edge
    cuts it; a 20 mm wide island is a bone everywhere."""
    from imaging.anatomy import _drop_small_dense_islands

    config, spacing = AnalysisConfig().anatomy, 0.8
    bone = np.zeros((120, 120), bool)
    bone[40:78, 20:28] = True                                          # 30 x 6 mm
    bone[40:78, 70:95] = True                                          # 30 x 20 mm
    field_edge = np.zeros_like(bone)

    def kept(**kwargs):
        out = _drop_small_dense_islands(bone, config, spacing, **kwargs)
        return bool(out[40:78, 20:28].all()), bool(out[40:78, 70:95].all())

    assert kept() == (True, True)
    assert kept(long_limb=True, field_edge=field_edge) == (False, True)
    field_edge[78:, 15:30] = True
    assert kept(long_limb=True, field_edge=field_edge) == (True, True)


def test_only_enclosed_holes_up_to_the_size_limit_are_filled():
    """A ring's 3 x 3 hole is filled, a 5 x 5 one only with a larger limit; a notch open to
    the outside (at the mask's bounding box, inside the image) and a hole at the image's
    edge are not enclosed."""
    from imaging.anatomy import fill_small_holes

    mask = np.zeros((40, 60), bool)
    mask[5:12, 5:12] = True
    mask[7:10, 7:10] = False                     # enclosed, 9 px
    mask[5:14, 20:29] = True
    mask[7:12, 22:27] = False                    # enclosed, 25 px
    mask[20:30, 5:15] = True
    mask[22:30, 8:11] = False                    # a notch open at the bottom
    mask[0:6, 40:50] = True
    mask[0:3, 43:46] = False                     # open at the image's top edge
    filled = fill_small_holes(mask, 10)
    assert filled[7:10, 7:10].all() and not filled[7:12, 22:27].any()
    assert fill_small_holes(mask, 25)[7:12, 22:27].all()
    assert not filled[22:30, 8:11].any() and not filled[0:3, 43:46].any()
    assert (filled | ~mask).all() and not fill_small_holes(np.zeros((4, 4), bool), 5).any()


def test_the_cortex_of_a_bone_under_the_skin_is_not_a_deposit():
    """The accuracy suite's n006 (seed 0), a lower leg without deposits: where the lateral
    malleolus lies right under the skin the bone mask missed a strip of its cortex, which
    was reported between the mask and the skin."""
    film = make_film(PhantomSpec("lower_leg", seed=1411427768, spacing_mm=0.2, dose=1.1142,
                                 n_deposits=0, laterality="L", bits_stored=16))
    assert find_deposits(film.radiograph).deposits == ()


def test_only_an_elongated_deposit_between_skin_and_bone_is_taken_for_cortex():
    """Synthetic measures: elongated, 1.6 mm under the skin and touching the bone mask is
    cortex; rounder, deeper or clear of bone is not."""
    import dataclasses

    from imaging.deposits import _along_subcutaneous_bone
    from imaging.measure import DepositMeasures

    detection = AnalysisConfig().detection
    cortex = DepositMeasures(
        label=1, area_px=200, area_mm2=8.0, centroid_row=0.0, centroid_col=0.0,
        bbox=(0, 0, 40, 5), equivalent_diameter_mm=3.2, equivalent_diameter_px=16.0,
        major_axis_mm=8.0, minor_axis_mm=1.2, eccentricity=0.98, solidity=0.8,
        mean_contrast=50.0, peak_contrast=60.0, noise_sigma=5.0, cnr=10.0, rim_contrast=40.0,
        rim_cnr=8.0, relative_density=0.45, peak_relative_density=0.5, core_noise_ratio=1.0,
        bone_contact=0.12, skin_depth_px=8.0, skin_depth_mm=1.6, skin_depth_change=0.15)
    area = 0.04                                                     # 0.2 mm pixels
    assert _along_subcutaneous_bone(cortex, detection, area)
    for other in (dict(eccentricity=0.7), dict(skin_depth_px=15.0), dict(bone_contact=0.0),
                  dict(skin_depth_px=None)):
        assert not _along_subcutaneous_bone(dataclasses.replace(cortex, **other), detection, area)


def test_a_sheet_joined_to_a_bone_by_a_narrow_neck_is_not_bone():
    """Seed 2's s00-v1 (first visit of a hand series): a 55 mm² sheet of calcinosis
    universalis beside a metacarpal, joined to it by a neck narrower than the appendage
    opening, stayed in the bone mask as part of the bone's core; once the opening cuts the
    neck it is an island too small to be a bone."""
    from imaging.phantom import SeriesSpec, make_series

    film = make_series(SeriesSpec("hand", seed=870647822, changes=("progression", "improvement"),
                                  spacing_mm=0.2, laterality="L")).visits[0]
    sheet = film.truth_labels == 5
    assert film.deposits[4].morphology == "universalis"
    findings = find_deposits(film.radiograph)
    assert findings.grid.mask_to_source(findings.anatomy.bone)[sheet].mean() < 0.05
    found = _labels_over(findings, sheet)
    assert found, "the sheet stayed in the bone mask"
    area = sum(d.area_mm2 for d in findings.deposits if d.label in found)
    assert area == pytest.approx(film.deposits[4].area_mm2, rel=0.15)


def test_a_plateau_is_cut_at_half_its_level_not_half_its_noise_maximum():
    """A flat sheet's highest smoothed pixel is its noise's maximum, well above its level: cut
    at half of that, a sheet at a contrast-to-noise of 2 per pixel lost 8 % of its area. Its
    outline is redrawn at half a high percentile of itself; a small domed speck (below the
    plateau size) keeps the cut at half its own maximum."""
    import cv2

    from imaging.deposits import _half_maximum_basins

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:160, :160]
    sheet = (yy - 60) ** 2 / 30 ** 2 + (xx - 70) ** 2 / 14 ** 2 <= 1
    speck = np.exp(-((yy - 130) ** 2 + (xx - 130) ** 2) / (2 * 3.0 ** 2))
    image = sheet + speck + rng.normal(0, 0.5, sheet.shape)
    smooth = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 1.0)
    region = cv2.dilate((sheet | (speck > 0.1)).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0

    def outline(plateau_px):
        return _half_maximum_basins(smooth, region, ~region, 0.5, plateau_px, 95.0)

    at_maximum, at_plateau = outline(np.inf), outline(400)
    assert at_maximum[:100].sum() < 0.94 * sheet.sum()
    assert at_plateau[:100].sum() == pytest.approx(sheet.sum(), rel=0.05)
    assert at_plateau[100:].sum() == at_maximum[100:].sum() > 0


def test_faint_specks_beside_a_dense_deposit_are_left_out_of_its_outline():
    """A dense deposit's outline keeps a speck of half its peak and leaves out a faint piece
    beside it (under 0.35 of its peak); two hot pixels are too few to set that reference."""
    from imaging.deposits import strong_specks

    detection = AnalysisConfig().detection
    smooth = np.zeros((60, 60), np.float32)
    smooth[10:20, 10:20] = 100.0                  # the deposit: 10 x 10 px, peak 100
    smooth[10:20, 25:29] = 50.0                   # a speck half as dense
    smooth[30:55, 5:55] = 20.0                    # a wide faint structure beside them
    mask = smooth > 0
    parts, kept = strong_specks(mask, mask, smooth, detection, (0.1, 0.1))
    assert set(np.unique(smooth[np.isin(parts, kept)])) == {50.0, 100.0}

    hot = np.zeros((60, 60), np.float32)
    hot[5, 5:7] = 300.0                           # two hot pixels: 0.02 mm²
    hot[30:55, 5:55] = 20.0
    parts, kept = strong_specks(hot > 0, hot > 0, hot, detection, (0.1, 0.1))
    assert len(kept) == 2                         # no sizable speck outshines the structure


def test_an_outline_of_a_few_source_pixels_is_a_noise_spike_whatever_their_size():
    """Two hot detector elements of a 0.2 mm film make a 4-pixel, 0.16 mm² outline: above
    the area limit, below the pixel count."""
    import types

    from imaging.deposits import rejection

    detection = AnalysisConfig().detection
    spike = types.SimpleNamespace(area_px=4)
    assert rejection(spike, np.zeros((4, 4), np.int32), detection,
                     pixel_area_mm2=0.04) == "noise spike"
