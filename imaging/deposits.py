"""Finding calcified deposits in soft tissue: candidates, thresholds, morphology, outlines.

1. Background: the soft-tissue level as a function of depth below the skin (the rounded
   profile of a finger or limb, the skin line, the fat/muscle interface), plus a smooth
   correction, both learnt from soft tissue only; bone, air, metal and, after a first coarse
   pass, the candidates themselves are left out, so a deposit touching a bone is measured
   against the soft tissue beside it, not against the bone.
2. Significance: the excess over that background, smoothed over soft tissue at a few physical
   scales, divided by its own local robust spread (a constant-false-alarm-rate detector).
3. Hysteresis (Rose-style): a deposit has a seed above `seed_cnr` and extends over connected
   soft tissue above `grow_cnr`; thin streaks, tiny, huge or weak candidates are dropped.
4. Outline: each deposit is redrawn in the source pixel grid at a fixed fraction of its own
   peak contrast (full width at half maximum by default, per speck of a cluster; specks far
   fainter than its strongest are left out), so areas do not depend on the analysis grid or
   on the threshold that found it.
5. Selection: a deposit must stand out from the tissue right around it (`min_rim_cnr`) and
   be dense enough relative to the film's bone (`min_relative_density`). The kept deposits
   are then outlined on into the unsearched band beside bone (`to_bone_edge`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np
from skimage.measure import regionprops

from .anatomy import (Anatomy, disk, fill_small_holes, find_anatomy, is_hand_film,
                      largest_component)
from .config import AnalysisConfig
from .measure import DepositMeasures, bounding_boxes, measure_deposits
from .preprocess import (
    AnalysisGrid,
    blur,
    local_spread,
    robust_sd,
    skin_depth_background,
    smooth_background,
    to_analysis_grid,
)
from .radiograph import Radiograph

#: Scale (mm) of the smooth correction to the skin-depth background.
BACKGROUND_SIGMA_MM = 5.0
#: Tiles (in noise tiles, `DetectionConfig.noise_tile_mm`) over which the background's
#: depth profile is learnt...
PROFILE_TILES = 2
#: ...and in the coarse first pass, which only finds what that background must leave out.
COARSE_PROFILE_TILES = 4
#: Soft tissue this close to bone (mm) holds the blur of the cortex edge: not searched.
BONE_EDGE_MARGIN_MM = 0.4
#: Outlines are drawn on the excess smoothed at this scale (mm)...
OUTLINE_SMOOTHING_MM = 0.1
#: ...within this distance (mm) of what found the deposit.
OUTLINE_REACH_MM = 0.5


@dataclass(frozen=True, eq=False)
class DepositSearch:
    """Where, and against what, deposits are sought on one film.

    Attributes
    ----------
    grid : AnalysisGrid
    anatomy : Anatomy
        Body, bone and exclusion masks on the analysis grid.
    region : ndarray of bool
        The soft tissue searched (`search_region`), analysis grid.
    background : ndarray of float32
        The soft-tissue background (film values, analysis grid).
    significance : ndarray of float32
        The excess over `background` in units of its local noise (`contrast_to_noise`).
    """

    grid: AnalysisGrid
    anatomy: Anatomy
    region: np.ndarray
    background: np.ndarray
    significance: np.ndarray

    @cached_property
    def source_background(self) -> np.ndarray:
        """`background` resampled onto the source grid (made once: a pair reads it again)."""
        return self.grid.to_source(self.background, cv2.INTER_LINEAR)

    @cached_property
    def source_region(self) -> np.ndarray:
        """`region` resampled onto the source grid (made once)."""
        return self.grid.mask_to_source(self.region)

    @cached_property
    def source_soft_tissue(self) -> np.ndarray:
        """The anatomy's soft tissue on the source grid (made once)."""
        return self.grid.mask_to_source(self.anatomy.soft_tissue)

    @cached_property
    def source_bone(self) -> np.ndarray:
        """The anatomy's bone mask on the source grid (made once)."""
        return self.grid.mask_to_source(self.anatomy.bone)

    @cached_property
    def source_body(self) -> np.ndarray:
        """The anatomy's body mask on the source grid (made once)."""
        return self.grid.mask_to_source(self.anatomy.body)

    @cached_property
    def source_bone_edge_band(self) -> np.ndarray:
        """The soft tissue beside bone that is not searched, on the source grid
        (`to_bone_edge`; made once)."""
        return self.source_soft_tissue & ~self.source_region


@dataclass(frozen=True, eq=False)
class DepositFindings:
    """What the detector found on one film.

    Attributes
    ----------
    labels : ndarray of int32
        Deposit label image in the source pixel grid (0 = no deposit, k = deposit k).
    deposits : tuple of DepositMeasures
        One entry per label, in label order.
    search : DepositSearch
        Where, and against what, the deposits were sought: the analysis grid (its `nominal`
        flag says whether the spacing was assumed), the anatomy, the soft-tissue background.
    """

    labels: np.ndarray
    deposits: tuple[DepositMeasures, ...]
    search: DepositSearch

    @property
    def grid(self) -> AnalysisGrid:
        return self.search.grid

    @property
    def anatomy(self) -> Anatomy:
        return self.search.anatomy

    @property
    def background(self) -> np.ndarray:
        """The soft-tissue background (film values, analysis grid) that deposit contrast is
        measured against."""
        return self.search.background


def prepare_deposit_search(radiograph: Radiograph, config: AnalysisConfig | None = None, *,
                           timings: dict | None = None) -> DepositSearch:
    """The first stages of `find_deposits`: analysis grid, anatomy, soft-tissue background
    and significance, without looking for deposits (what deposits found again in a pair are
    outlined and measured against, `imaging.paired`)."""
    config = config or AnalysisConfig()
    clock = _StageClock(timings)
    grid = clock("grid", to_analysis_grid, radiograph, config.grid)
    anatomy = clock("anatomy", find_anatomy, grid, config.anatomy,
                    radiograph.metadata.body_part)
    region = clock("significance", search_region, grid, anatomy)
    background, significance = clock("significance", contrast_to_noise, grid, anatomy, config,
                                     region=region)
    return DepositSearch(grid, anatomy, region, background, significance)


def find_deposits(radiograph: Radiograph, config: AnalysisConfig | None = None, *,
                  timings: dict | None = None) -> DepositFindings:
    """Find calcified deposits outside bone on one film.

    Parameters
    ----------
    radiograph : Radiograph
    config : AnalysisConfig, optional
        Parameters; the documented defaults when omitted.
    timings : dict, optional
        When given, receives the seconds spent in each stage (for benchmarks).

    Returns
    -------
    DepositFindings
    """
    config = config or AnalysisConfig()
    search = prepare_deposit_search(radiograph, config, timings=timings)
    candidates = outline_candidates(radiograph, search, config, timings=timings)
    return keep_deposits(radiograph, search, candidates, config, timings=timings)


@dataclass(frozen=True, eq=False)
class Candidates:
    """A film's candidate deposits, outlined and measured, before the selection.

    Attributes
    ----------
    regions : ndarray of int32
        The hysteresis regions that found them (`hysteresis_candidates`), analysis grid.
    labels : ndarray of int32
        Their outlines in the source pixel grid.
    deposits : tuple of DepositMeasures
        One entry per label of `labels`.
    """

    regions: np.ndarray
    labels: np.ndarray
    deposits: tuple[DepositMeasures, ...]


def outline_candidates(radiograph: Radiograph, search: DepositSearch, config: AnalysisConfig,
                       *, timings: dict | None = None) -> Candidates:
    """The middle stages of `find_deposits`: hysteresis candidates on the film's `search`,
    outlined in the source grid and measured."""
    clock = _StageClock(timings)
    regions = clock("candidates", hysteresis_candidates, search.grid, search.anatomy,
                    search.significance, config, region=search.region)
    labels = clock("outlines", outline_in_source_grid, radiograph, search.grid, search.anatomy,
                   search.background, search.significance, regions, config,
                   region=search.region)
    return Candidates(regions, labels, clock("measures", measure_on_film, radiograph, search,
                                             labels))


def keep_deposits(radiograph: Radiograph, search: DepositSearch, candidates: Candidates,
                  config: AnalysisConfig, *, timings: dict | None = None) -> DepositFindings:
    """The last stages of `find_deposits`: the `candidates` that pass `select_deposits`,
    outlined on into the unsearched band beside bone (`to_bone_edge`)."""
    clock = _StageClock(timings)
    grid, anatomy = search.grid, search.anatomy
    labels, deposits = clock("selection", select_deposits, candidates.labels, candidates.deposits,
                             detection_rules(config, radiograph.metadata.body_part),
                             pixel_area_mm2=grid.source_pixel_area_mm2)
    if deposits:
        edge_outlines = clock("outlines", outline_in_source_grid, radiograph, grid, anatomy,
                              search.background, search.significance, candidates.regions,
                              config, region=anatomy.soft_tissue)
        extended = clock("outlines", to_bone_edge, labels, edge_outlines,
                         search.source_bone_edge_band, grid.source_spacing_mm)
        if extended is not labels:
            labels = extended
            deposits = clock("measures", measure_on_film, radiograph, search, labels)
    return DepositFindings(labels, deposits, search)


def measure_on_film(radiograph: Radiograph, search: DepositSearch,
                    labels: np.ndarray) -> tuple[DepositMeasures, ...]:
    """`measure_deposits` of the `labels` outlined on a film, with the masks and soft-tissue
    background of its `search` (source grid)."""
    return measure_deposits(radiograph.pixels, labels, search.source_background,
                            search.grid.source_spacing_mm, calibrated=radiograph.is_calibrated,
                            bone_level=search.anatomy.bone_level,
                            soft_tissue=search.source_soft_tissue, bone=search.source_bone,
                            body=search.source_body)


def detection_rules(config: AnalysisConfig, body_part: str | None):
    """The `DetectionConfig` for a film of `body_part`: hand, wrist and forearm films have a
    thinner skin line (`skin_line_depth_hand_mm`)."""
    detection = config.detection
    if is_hand_film(body_part):
        detection = dataclasses.replace(detection,
                                        skin_line_depth_mm=detection.skin_line_depth_hand_mm)
    return detection


def select_deposits(labels: np.ndarray, deposits, detection, *,
                    pixel_area_mm2: float | None = None):
    """Keep deposits that stand out from the tissue right around them and are dense enough.

    Soft-tissue structure mistaken for a deposit (a muscle edge, a thickness ridge) is as
    bright as its own surroundings even when it stands above the modelled background; a
    deposit is brighter than its rim (`min_rim_cnr`), by a good part of its own contrast
    (`min_rim_fraction`: a sliver of bone edge has bone in its rim). Deposits fainter than
    `min_relative_density` of bone are texture unless they are small and stand out from
    their rim all the more clearly (`faint_*`; films without bone skip the density tests;
    without `pixel_area_mm2`, the source pixel area, nominal for uncalibrated films, faint
    deposits are not kept). A flat, noiseless core (`min_core_noise_ratio`) is a saturated
    metal object. A deposit lying along the bone mask for much of its outline
    (`max_bone_contact`, or `sliver_*` for small ones) is a strip of bone edge the mask
    missed; one running along the skin line (`skin_line_*`) is the skin seen edge-on, and
    an elongated one between the skin and the bone mask (`subcutaneous_bone_*`) the cortex
    of a bone right under the skin; a long straight rod (`rod_*`) is hardware, an outline
    of straight sides at right angles (`lettering_*`) a lead marker letter; an outline of a
    few pixels (`min_outline_px`, `min_outline_area_mm2`) is a noise spike. The kept
    deposits are renumbered 1..N.
    """
    kept = [d for d in deposits
            if rejection(d, labels, detection, pixel_area_mm2=pixel_area_mm2) is None]
    if len(kept) == len(deposits):
        return labels, deposits
    relabel = np.zeros(max(d.label for d in deposits) + 1, np.int32)
    for new, deposit in enumerate(kept, start=1):
        relabel[deposit.label] = new
    renumbered = tuple(dataclasses.replace(d, label=new) for new, d in enumerate(kept, start=1))
    # Deposits cover a small part of a film: relabel their pixels only.
    flat = np.flatnonzero(labels)
    result = np.zeros_like(labels)
    result.ravel()[flat] = relabel[labels.ravel()[flat]]
    return result, renumbered


def rejection(deposit, labels: np.ndarray, detection, *,
              pixel_area_mm2: float | None = None) -> str | None:
    """The first test of `select_deposits` that a deposit fails, by name, or None when it
    is kept."""
    if _noise_spike(deposit, detection, pixel_area_mm2):
        return "noise spike"
    if not _stands_out(deposit, detection, pixel_area_mm2):
        return "rim or density"
    if (deposit.core_noise_ratio is not None
            and deposit.core_noise_ratio < detection.min_core_noise_ratio):
        return "flat core"
    if _along_bone_edge(deposit, detection, pixel_area_mm2):
        return "bone contact"
    if _along_skin_line(deposit, detection, pixel_area_mm2):
        return "skin line"
    if _along_subcutaneous_bone(deposit, detection, pixel_area_mm2):
        return "subcutaneous bone"
    if _straight_rod(deposit, labels, detection, pixel_area_mm2):
        return "straight rod"
    if _lead_lettering(deposit, labels, detection, pixel_area_mm2):
        return "lettering"
    return None


def _stands_out(deposit, detection, pixel_area_mm2: float | None) -> bool:
    """The rim and density tests of `select_deposits`: a lower rim CNR for a large deposit
    (`large_*`), no rim fraction for a large one clear of bone (`clear_of_bone_min_area_mm2`);
    below `min_relative_density`, a small deposit (down to `faint_min_relative_density`)
    must be compact (`faint_compact_*`) or stand out more sharply (`faint_*`, and solid from
    `faint_solid_min_area_mm2` on), a larger one be a sheet (`faint_sheet_*`).
    """
    density, area_mm2 = deposit.relative_density, _area_mm2(deposit, pixel_area_mm2)
    rim_cnr, rim_fraction = detection.min_rim_cnr, detection.min_rim_fraction
    if area_mm2 is not None and area_mm2 >= detection.large_min_area_mm2:
        rim_cnr = detection.large_min_rim_cnr
    if density is None or density >= detection.min_relative_density:
        if (area_mm2 is not None and area_mm2 >= detection.clear_of_bone_min_area_mm2
                and deposit.bone_contact == 0):
            rim_fraction = 0.0
    elif area_mm2 is None:
        return False
    elif area_mm2 > detection.faint_max_area_mm2:
        if not (density >= detection.faint_sheet_min_relative_density
                and deposit.eccentricity >= detection.faint_sheet_min_eccentricity
                and (deposit.bone_contact or 0.0) <= detection.faint_sheet_max_bone_contact):
            return False
        rim_cnr = detection.min_rim_cnr
    elif density < detection.faint_min_relative_density:
        return False
    elif (deposit.solidity < detection.faint_compact_min_solidity
          or area_mm2 < detection.faint_compact_min_area_mm2):
        if (area_mm2 >= detection.faint_solid_min_area_mm2
                and deposit.solidity < detection.faint_min_solidity):
            return False
        rim_cnr, rim_fraction = detection.faint_min_rim_cnr, detection.faint_min_rim_fraction
    return (deposit.rim_cnr >= rim_cnr
            and deposit.rim_contrast >= rim_fraction * deposit.mean_contrast)


def _noise_spike(deposit, detection, pixel_area_mm2: float | None) -> bool:
    """A final outline of fewer than `min_outline_px` source pixels, or smaller than
    `min_outline_area_mm2` (known only with the source pixel area)."""
    if deposit.area_px < detection.min_outline_px:
        return True
    area_mm2 = _area_mm2(deposit, pixel_area_mm2)
    return area_mm2 is not None and area_mm2 < detection.min_outline_area_mm2


def _area_mm2(deposit, pixel_area_mm2: float | None) -> float | None:
    """A deposit's area from the source pixel area (nominal on uncalibrated films), if known."""
    return None if pixel_area_mm2 is None else deposit.area_px * pixel_area_mm2


def _skin_depth_mm(deposit, pixel_area_mm2: float) -> float:
    """A deposit's depth below the skin from the source pixel size (nominal if uncalibrated)."""
    return deposit.skin_depth_px * float(np.sqrt(pixel_area_mm2))


def _along_bone_edge(deposit, detection, pixel_area_mm2: float | None) -> bool:
    """The bone-contact test of `select_deposits`: the stricter `sliver_max_bone_contact`
    for deposits smaller than `sliver_max_area_mm2` (known only with the source pixel area)."""
    if deposit.bone_contact is None:
        return False
    area_mm2 = _area_mm2(deposit, pixel_area_mm2)
    small = area_mm2 is not None and area_mm2 < detection.sliver_max_area_mm2
    limit = detection.sliver_max_bone_contact if small else detection.max_bone_contact
    return deposit.bone_contact > limit


def _along_skin_line(deposit, detection, pixel_area_mm2: float | None) -> bool:
    """The skin-line test of `select_deposits` (needs the source pixel area)."""
    if deposit.skin_depth_px is None or pixel_area_mm2 is None:
        return False
    depth_mm = _skin_depth_mm(deposit, pixel_area_mm2)
    dense = (deposit.relative_density is not None
             and deposit.relative_density > detection.skin_line_max_relative_density)
    return (depth_mm <= detection.skin_line_depth_mm and not dense
            and deposit.skin_depth_change < detection.skin_line_max_depth_change)


def _along_subcutaneous_bone(deposit, detection, pixel_area_mm2: float | None) -> bool:
    """The subcutaneous-bone test of `select_deposits` (needs the source pixel area)."""
    if deposit.skin_depth_px is None or not deposit.bone_contact or pixel_area_mm2 is None:
        return False
    return (_skin_depth_mm(deposit, pixel_area_mm2) <= detection.subcutaneous_bone_depth_mm
            and deposit.bone_contact >= detection.subcutaneous_bone_min_contact
            and deposit.eccentricity >= detection.subcutaneous_bone_min_eccentricity)


def _straight_rod(deposit, labels: np.ndarray, detection, pixel_area_mm2: float | None) -> bool:
    """The hardware test of `select_deposits` (needs the source pixel area).

    A deposit is judged by its largest piece: noise specks within `max_speck_gap_mm` of a
    wire join its deposit and, off its axis, halve the solidity of the whole (the sample
    lower leg's wire: 0.54, its largest piece 0.89).
    """
    if pixel_area_mm2 is None:
        return False
    px_mm = float(np.sqrt(pixel_area_mm2))
    r0, c0, r1, c1 = deposit.bbox
    if float(np.hypot(r1 - r0, c1 - c0)) * px_mm < detection.rod_min_length_mm:
        return False
    piece = regionprops(_largest_piece(deposit, labels).view(np.uint8))[0]
    pr0, pc0, pr1, pc1 = piece.bbox
    return (float(np.hypot(pr1 - pr0, pc1 - pc0)) * px_mm >= detection.rod_min_length_mm
            and piece.eccentricity >= detection.rod_min_eccentricity
            and piece.solidity >= detection.rod_min_solidity)


def _lead_lettering(deposit, labels: np.ndarray, detection,
                    pixel_area_mm2: float | None) -> bool:
    """The lettering test of `select_deposits` (needs the source pixel area): the outline of
    the deposit's largest piece is a polygon of a few straight sides meeting at right
    angles. Deposits whose bounding box has a shorter perimeter than
    `lettering_min_outline_mm` are passed over unmeasured."""
    if pixel_area_mm2 is None:
        return False
    px_mm = float(np.sqrt(pixel_area_mm2))
    r0, c0, r1, c1 = deposit.bbox
    if 2 * ((r1 - r0) + (c1 - c0)) * px_mm < detection.lettering_min_outline_mm:
        return False
    piece = np.pad(_largest_piece(deposit, labels), 1)
    contours, _ = cv2.findContours(piece.view(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=len)
    if cv2.arcLength(outline, True) * px_mm < detection.lettering_min_outline_mm:
        return False
    corners = cv2.approxPolyDP(outline, detection.lettering_tolerance_mm / px_mm, True)[:, 0]
    if not 4 <= len(corners) <= detection.lettering_max_corners:
        return False
    sides = np.diff(np.vstack([corners, corners[:1]]), axis=0).astype(float)
    following = np.roll(sides, -1, axis=0)
    cosine = (np.einsum("ij,ij->i", sides, following)
              / (np.linalg.norm(sides, axis=1) * np.linalg.norm(following, axis=1)))
    return bool(np.all(np.abs(cosine) <= np.sin(np.radians(
        detection.lettering_max_corner_error_deg))))


def _largest_piece(deposit, labels: np.ndarray) -> np.ndarray:
    """The largest connected piece of a deposit, within its bounding box (bool)."""
    r0, c0, r1, c1 = deposit.bbox
    return largest_component(labels[r0:r1, c0:c1] == deposit.label)


class _StageClock:
    """Runs a stage and, when asked to, records how long it took."""

    def __init__(self, timings: dict | None):
        self.timings = timings

    def __call__(self, name, stage, *args, **kwargs):
        if self.timings is None:
            return stage(*args, **kwargs)
        start = time.perf_counter()
        result = stage(*args, **kwargs)
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start
        return result


def contrast_to_noise(grid: AnalysisGrid, anatomy: Anatomy, config: AnalysisConfig, *,
                      region: np.ndarray | None = None):
    """Soft-tissue background and the significance map of the excess over it.

    The background follows the depth below the skin (see `skin_depth_background`), which
    captures the rounded profile of a limb or finger, the skin line and the fat/muscle
    interface, and is interpolated under bone. The excess over it, smoothed over soft tissue
    only at each scale, is divided by its own local robust spread (quantum noise and any
    remaining texture alike: a constant-false-alarm-rate detector). A first pass, on a grid
    twice as coarse, finds the candidates to leave out of the final background; it learns
    the depth profile over wider tiles (`COARSE_PROFILE_TILES`), where a sheet of calcinosis
    running along the skin fills less of its depth bins and so stands out whole. `region`
    (here and in the later stages) is `search_region(grid, anatomy)` when already computed.
    """
    weights = search_region(grid, anatomy) if region is None else region
    depth_mm = (cv2.distanceTransform(anatomy.body.astype(np.uint8), cv2.DIST_L2, 5)
                * grid.spacing_mm)
    rows, cols = weights.shape
    size = (max(1, cols // 2), max(1, rows // 2))
    coarse = dataclasses.replace(
        grid, values=cv2.resize(grid.values, size, interpolation=cv2.INTER_AREA),
        spacing_mm=grid.spacing_mm * cols / size[0])
    coarse_weights = cv2.resize(weights.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    _, first = _background_and_significance(
        coarse, coarse_weights, cv2.resize(depth_mm, size, interpolation=cv2.INTER_LINEAR),
        np.zeros_like(coarse_weights), config, profile_tiles=COARSE_PROFILE_TILES)
    leave_out = _candidates_to_leave_out(first, coarse_weights, coarse, config)
    leave_out = cv2.resize(leave_out.astype(np.uint8), (cols, rows),
                           interpolation=cv2.INTER_NEAREST) > 0
    return _background_and_significance(grid, weights, depth_mm, leave_out, config)


def _background_and_significance(grid: AnalysisGrid, weights: np.ndarray, depth_mm: np.ndarray,
                                 leave_out: np.ndarray, config: AnalysisConfig, *,
                                 profile_tiles: int = PROFILE_TILES):
    tissue = weights & ~leave_out
    tile = max(8, int(grid.mm_to_px(config.detection.noise_tile_mm)))
    values = grid.values
    profile = skin_depth_background(values, tissue, depth_mm, tile * profile_tiles)
    # What the depth profile misses (thickness changes between bones, along the limb).
    background = profile + smooth_background(values - profile, tissue,
                                              grid.mm_to_px(BACKGROUND_SIGMA_MM))
    significance = _significance(values - background, weights, grid,
                                 config.detection.scales_mm, tile)
    return background, significance


def _candidates_to_leave_out(significance: np.ndarray, weights: np.ndarray, grid: AnalysisGrid,
                             config: AnalysisConfig) -> np.ndarray:
    """Candidate regions (holes filled, 1 mm margin) that the background must not absorb."""
    detection = config.detection
    candidates = _fill_holes(significance >= detection.grow_cnr) & weights
    # Regions larger than any deposit are soft-tissue structure the background must keep.
    candidates = _drop_large(candidates, detection.max_area_mm2 / grid.spacing_mm ** 2)
    return cv2.dilate(candidates.astype(np.uint8), disk(2 * grid.mm_to_px(1.0) + 1)) > 0


def _drop_large(mask: np.ndarray, max_area_px: float) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8),
                                                               connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] <= max_area_px
    keep[0] = False
    return keep[labels]


def _significance(excess: np.ndarray, weights: np.ndarray, grid: AnalysisGrid, scales_mm,
                  tile_px: int) -> np.ndarray:
    """Largest, over the scales, of the soft-tissue-only smoothed excess divided by its local
    robust spread."""
    w = weights.astype(np.float32)
    ew = np.where(weights, excess, 0).astype(np.float32)
    best = np.zeros(excess.shape, np.float32)
    for scale_mm in scales_mm:
        smoothed = smoothed_excess(ew, w, grid, scale_mm)
        significance = np.divide(smoothed, local_spread(smoothed, weights, tile_px), out=smoothed)
        np.maximum(best, significance, out=best)
    best[~weights] = 0
    return best


def smoothed_excess(excess: np.ndarray, weights: np.ndarray, grid: AnalysisGrid,
                    scale_mm: float) -> np.ndarray:
    """The excess smoothed over soft tissue only, for deposits `scale_mm` wide (Gaussian
    sigma = a quarter of it): a normalised convolution.

    Parameters
    ----------
    excess : ndarray of float32
        Excess over the background, 0 outside the soft tissue.
    weights : ndarray of float32
        1 on the soft tissue, 0 elsewhere.
    """
    sigma = max(grid.mm_to_px(scale_mm) / 4.0, 0.5)
    weight = np.maximum(blur(weights, sigma), 1e-3)
    return np.divide(blur(excess, sigma), weight, out=weight)


def hysteresis_candidates(grid: AnalysisGrid, anatomy: Anatomy, cnr: np.ndarray,
                          config: AnalysisConfig, *, region: np.ndarray | None = None
                          ) -> np.ndarray:
    """Label image (analysis grid) of soft-tissue regions with a seed above `seed_cnr`,
    grown over connected pixels above `grow_cnr`, large and strong enough."""
    detection = config.detection
    allowed = search_region(grid, anatomy) if region is None else region
    grow = (cnr >= detection.grow_cnr) & allowed
    # Thinner than the narrowest deposit that matters: bone-edge rims and noise streaks.
    grow = cv2.morphologyEx(grow.astype(np.uint8), cv2.MORPH_OPEN,
                            disk(grid.mm_to_px(detection.min_width_mm))) > 0
    count, labels = cv2.connectedComponents(grow.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(cnr.shape, np.int32)
    # Statistics over the grown pixels only (a small part of the film).
    inside = np.flatnonzero(labels)
    members, values = labels.ravel()[inside], cnr.ravel()[inside]
    seeded = np.zeros(count, bool)
    seeded[np.unique(members[values >= detection.seed_cnr])] = True
    pixels = np.bincount(members, minlength=count)
    area = pixels * grid.spacing_mm ** 2
    # A bright deposit's halo at the coarse scales spreads far above `grow_cnr`: judge the
    # size of a candidate by its part above half its own peak.
    peak = np.zeros(count, np.float32)
    np.maximum.at(peak, members, values)
    core = values >= 0.5 * peak[members]
    core_area = np.bincount(members[core], minlength=count) * grid.spacing_mm ** 2
    mean_cnr = np.bincount(members, weights=values, minlength=count) / np.maximum(pixels, 1)
    # Candidates reaching an exclusion band (collimator edge, metal, film edge) are artefacts.
    near_excluded = cv2.dilate(anatomy.excluded.astype(np.uint8),
                               disk(2 * grid.mm_to_px(0.2) + 1)) > 0
    touching = np.zeros(count, bool)
    touching[np.unique(labels[near_excluded])] = True
    keep = (seeded & ~touching & (area >= detection.min_area_mm2)
            & (core_area <= detection.max_area_mm2) & (mean_cnr >= detection.min_mean_cnr))
    keep[0] = False
    relabel = np.zeros(count, np.int32)
    relabel[keep] = np.arange(1, int(keep.sum()) + 1)
    result = np.zeros_like(labels)
    result.ravel()[inside] = relabel[members]
    return result


def to_bone_edge(labels: np.ndarray, edge_outlines: np.ndarray, margin: np.ndarray,
                 spacing_mm: tuple[float, float]) -> np.ndarray:
    """Deposits outlined up to the bone edge.

    The soft tissue right beside bone (`BONE_EDGE_MARGIN_MM`) is not searched: the blur of
    the cortex there would seed false deposits. A deposit found beside it still reaches into
    it, as its truth does (a periarticular lump lies against the bone): the pixels of
    `margin` that the same outline rule drawn over all soft tissue (`edge_outlines`)
    includes, within `OUTLINE_REACH_MM` of a deposit, take that deposit's label (the
    highest label within reach where two are).

    Parameters
    ----------
    labels : ndarray of int32
        The deposits (source grid).
    edge_outlines : ndarray of int
        `outline_in_source_grid` of the same candidates over all soft tissue.
    margin : ndarray of bool
        Soft tissue beside bone that is not searched (source grid).
    spacing_mm : (float, float)
        Source pixel spacing.

    Returns
    -------
    ndarray of int32
        `labels` itself when nothing is added, else a new label image.
    """
    reach = disk(2 * OUTLINE_REACH_MM / min(spacing_mm) + 1)
    candidates = (edge_outlines > 0) & margin & (labels == 0)
    if not candidates.any():
        return labels
    owner = cv2.dilate(labels.astype(np.float32), reach).astype(np.int32)
    added = candidates & (owner > 0)
    if not added.any():
        return labels
    extended = labels.copy()
    extended[added] = owner[added]
    return extended


def search_region(grid: AnalysisGrid, anatomy: Anatomy) -> np.ndarray:
    """Soft tissue where deposits are sought: not bone nor within the blur of its edge."""
    edge = cv2.dilate(anatomy.bone.astype(np.uint8),
                      disk(2 * grid.mm_to_px(BONE_EDGE_MARGIN_MM) + 1)) > 0
    return anatomy.soft_tissue & ~edge


def outline_in_source_grid(radiograph: Radiograph, grid: AnalysisGrid, anatomy: Anatomy,
                           background: np.ndarray, significance: np.ndarray,
                           candidates: np.ndarray, config: AnalysisConfig, *,
                           region: np.ndarray | None = None) -> np.ndarray:
    """Redraw each candidate in the source grid at `edge_fraction` of its own peak contrast.

    A candidate may hold several specks (a reticular cluster) of different densities: its
    excess is split into basins around its local maxima, and each basin is cut at the
    fraction of its own peak, so every speck keeps its full width at half maximum (a
    plateau's peak is a high percentile of it, `plateau_min_area_mm2`). A faint
    deposit's candidate, grown at the coarse scales, also holds noise specks around it: only
    specks within `seed_reach_mm` of where its significance reaches `seed_cnr` are kept, less
    those fainter than `min_speck_peak_fraction` of its strongest (`strong_specks`), and
    specks more than `max_speck_gap_mm` apart become separate deposits. Outlines lie in
    `region` (analysis grid): the searched soft tissue, `search_region`, by default.
    """
    rows, cols = radiograph.shape
    labels = np.zeros((rows, cols), np.int32)
    count = int(candidates.max())
    if count == 0:
        return labels
    scale_r, scale_c = grid.scale
    source_px_mm = min(grid.source_spacing_mm)
    pad = int(np.ceil(1.5 / source_px_mm))
    # Converted once: the warps below read float32 (labels are exact integers in float32).
    soft = (search_region(grid, anatomy) if region is None else region).astype(np.float32)
    candidate_labels = candidates.astype(np.float32)
    seed_map = (significance >= config.detection.seed_cnr).astype(np.float32)
    seed_reach = disk(2 * config.detection.seed_reach_mm / source_px_mm + 1)
    group_reach = disk(config.detection.max_speck_gap_mm / source_px_mm + 1)
    reach_px = 2 * OUTLINE_REACH_MM / source_px_mm + 1
    next_label = 1
    for label, found in enumerate(bounding_boxes(candidates), start=1):
        if found is None:
            continue
        (r0, r1), (c0, c1) = (found[0].start, found[0].stop), (found[1].start, found[1].stop)
        sr0, sr1 = max(int(r0 * scale_r) - pad, 0), min(int(np.ceil(r1 * scale_r)) + pad, rows)
        sc0, sc1 = max(int(c0 * scale_c) - pad, 0), min(int(np.ceil(c1 * scale_c)) + pad, cols)
        size = (sc1 - sc0, sr1 - sr0)
        window = (sr0 / scale_r, sr1 / scale_r, sc0 / scale_c, sc1 / scale_c)
        core = _crop_to_source(candidate_labels, *window, size) == label
        if not core.any():
            continue
        allowed = _crop_to_source(soft, *window, size) > 0
        local_bg = _crop_to_source(background, *window, size, cv2.INTER_LINEAR)
        region = (cv2.dilate(core.astype(np.uint8), disk(reach_px)) > 0) & allowed
        seeds = (_crop_to_source(seed_map, *window, size) > 0) & core
        seeded = cv2.dilate(seeds.astype(np.uint8), seed_reach) > 0
        mask, specks = speck_outline(radiograph.pixels[sr0:sr1, sc0:sc1], local_bg, region,
                                     allowed, seeded, config.detection, grid.source_spacing_mm)
        target = labels[sr0:sr1, sc0:sc1]
        mask &= target == 0
        deposits = [mask]
        if specks > 1:
            count, groups = cv2.connectedComponents(cv2.dilate(mask.astype(np.uint8), group_reach),
                                                    connectivity=8)
            deposits = [mask & (groups == group) for group in range(1, count)]
        for members in deposits:
            if members.any():
                target[members] = next_label
                next_label += 1
    return labels


def strong_specks(mask: np.ndarray, reaching: np.ndarray, smooth: np.ndarray, detection,
                  spacing_mm: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The specks of an outline `mask` that make one deposit: those that meet `reaching`,
    less any whose peak on `smooth` is below `min_speck_peak_fraction` of the highest speck
    of a candidate's size (`min_area_mm2`; a hot pixel or two sets no reference). Returns
    the specks' label image and the labels kept."""
    count, parts = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    touching = np.unique(parts[reaching & mask])
    touching = touching[touching > 0]
    if len(touching) > 1:
        peaks = np.full(count, -np.inf)
        np.maximum.at(peaks, parts[mask], smooth[mask])
        sizable = np.bincount(parts[mask], minlength=count) * float(np.prod(spacing_mm)) \
            >= detection.min_area_mm2
        reference = peaks[touching[sizable[touching]]]
        if reference.size:
            touching = touching[peaks[touching]
                                >= detection.min_speck_peak_fraction * reference.max()]
    return parts, touching


def speck_outline(pixels: np.ndarray, background: np.ndarray, region: np.ndarray,
                  allowed: np.ndarray, reaching: np.ndarray, detection,
                  spacing_mm: tuple[float, float]) -> tuple[np.ndarray, int]:
    """The outline rule of `outline_in_source_grid` on a crop of the source grid.

    The pixels of `region` at `edge_fraction` of the peak of the basin they drain to, on the
    excess over `background` smoothed by `OUTLINE_SMOOTHING_MM` (the noise is measured on
    `allowed` pixels outside `region`), in the specks that `strong_specks` keeps of those
    meeting `reaching`, holes filled. Returns that mask and how many specks it holds.
    """
    sigma = max(OUTLINE_SMOOTHING_MM / min(spacing_mm), 0.7)
    smooth = cv2.GaussianBlur(pixels - background, (0, 0), sigma)
    plateau_px = detection.plateau_min_area_mm2 / float(np.prod(spacing_mm))
    mask = _half_maximum_basins(smooth, region, allowed & ~region, detection.edge_fraction,
                                plateau_px, detection.plateau_peak_percentile)
    parts, kept = strong_specks(mask, reaching, smooth, detection, spacing_mm)
    return _fill_holes(np.isin(parts, kept)), len(kept)


def _half_maximum_basins(smooth: np.ndarray, region: np.ndarray, outside: np.ndarray,
                         fraction: float, plateau_px: float,
                         plateau_percentile: float) -> np.ndarray:
    """Pixels of `region` at or above `fraction` of the peak of the basin they drain to.

    Basins grow from the region's significant maxima only (h-maxima, h = 3 noise standard
    deviations): noise ripples on a large deposit do not make basins of their own, whose lower
    peaks would let its outline spread. A basin whose cut holds at least `plateau_px` pixels
    is a plateau: its peak is the `plateau_percentile` of the cut, not its noisy maximum.
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    if not region.any():
        return region
    reference = smooth[outside] if outside.sum() >= 30 else smooth[region]
    floor = max(3.0 * robust_sd(reference), 1e-6)
    # Only the region's bounding box (and a one-pixel frame at the region's minimum, as
    # everywhere outside it) matters: work there.
    result = np.zeros_like(region)
    rows, cols = np.nonzero(region.any(axis=1))[0], np.nonzero(region.any(axis=0))[0]
    box = (slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))
    smooth, region = smooth[box], region[box]
    inside = np.where(region, smooth, float(smooth[region].min())).astype(np.float64)
    tops = h_maxima(inside, floor).astype(bool) & region & (smooth >= floor)
    count, markers = cv2.connectedComponents(tops.astype(np.uint8), connectivity=8)
    if count <= 1:
        return result
    basins = watershed(-smooth, markers, mask=region)
    peak_values = np.full(count, -np.inf)
    np.maximum.at(peak_values, markers[tops], smooth[tops])
    peak_values[0] = np.inf
    # (Basin 0, outside the region, has an infinite peak: nothing there makes the cut.)
    cut = smooth >= fraction * peak_values[basins]
    plateaus = np.flatnonzero(np.bincount(basins[cut], minlength=count) >= plateau_px)
    for plateau in plateaus:
        level = float(np.percentile(smooth[cut & (basins == plateau)], plateau_percentile))
        peak_values[plateau] = min(peak_values[plateau], level)
    if plateaus.size:
        cut = smooth >= fraction * peak_values[basins]
    result[box] = cut
    return result


def _crop_to_source(image, r0, r1, c0, c1, size, interpolation=cv2.INTER_NEAREST):
    """Resample the analysis-grid window [r0:r1, c0:c1] (fractional) onto `size` source pixels."""
    cols, rows = size
    sx = (c1 - c0) / cols
    sy = (r1 - r0) / rows
    # Maps source pixel centres to analysis-grid coordinates.
    matrix = np.array([[sx, 0, c0 + 0.5 * sx - 0.5], [0, sy, r0 + 0.5 * sy - 0.5]], np.float32)
    source = image.astype(np.float32) if image.dtype != np.float32 else image
    return cv2.warpAffine(source, matrix, (cols, rows), flags=interpolation | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    return fill_small_holes(mask, np.inf)
