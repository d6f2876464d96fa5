"""Per-deposit classes and per-region burden: area, density scores, morphology, severity.

Density reference
-----------------
Every density is on the film's own scale: surrounding soft tissue = 0, typical cortical bone
= 1 (`DepositMeasures.relative_density` = mean contrast over the local soft-tissue background
/ the film's bone contrast). A change of exposure or processing between visits scales
deposit and bone contrast alike, so it does not look like disease change.

Scores (per region and per film)
--------------------------------
- **density-weighted score** (in the spirit of Agatston): area x weight of the density
  band (`BurdenConfig`): < 0.25 → 1, 0.25-0.5 → 2, 0.5-1.0 → 3, >= 1.0 (denser than
  typical bone) → 4, summed pixel by pixel over the deposits, each pixel weighted by the
  band of its own relative density (smoothed over `DENSITY_SMOOTHING_MM` against quantum
  noise). In mm² (and, always, in source pixels). Weighting whole deposits by the band of
  their mean density made a deposit near a band edge jump a full weight between two films
  of the same patient (up to 12 % of a film's score with the true outlines, 3-9 % median
  with the detector's at ±20 % dose, `benchmarks/regions.py`); pixel by pixel the score
  moves with the density. Each deposit also keeps the band of its mean density
  (`density_weight`), for readers.
- **integrated density** ("mass-like"): sum of area x mean relative density, in mm² of
  bone-equivalent (and pixels). Continuous, so it does not jump at band edges.

Morphology (per deposit; rules checked in this order, thresholds in `BurdenConfig`)
-----------------------------------------------------------------------------------
- ``net``: a reticular cluster: at least `net_min_pieces` separate specks in one deposit
  (pieces of its outline of at least `net_min_speck_fraction` of the largest: smaller ones
  are crumbs of a stone's ragged half-maximum outline), or solidity below `net_max_solidity`;
- ``plate``: a sheet seen edge-on or a flat plaque: axis ratio (major / minor) of at least
  `plate_min_axis_ratio`;
- ``mousse``: ill-defined, cloud-like: a soft edge (edge steepness below
  `mousse_max_edge_steepness`) on a deposit of at least `mousse_min_area_mm2` (the edge of a
  smaller speck is the imaging system's blur: a punctate deposit is a stone);
- ``stone``: everything else — a compact, well-defined deposit.

Edge steepness = mean gradient magnitude of the film along the deposit's outline (per mm),
divided by the deposit's peak contrast, times its equivalent radius (mm): the share of its
contrast the deposit loses over one radius at its edge. It does not depend on size: a
sharply bounded dome cut at half its peak scores about 1.5 (0.8-1.2 measured, after the
system blur and noise), a Gaussian cloud ln 2 = 0.69 (0.5-0.8 measured). Density is not
part of the class; it has its own bands above.

Severity (per region and per film, on the total deposit area; `BurdenConfig`)
----------------------------------------------------------------------------
none: no deposit; mild: < 10 mm²; moderate: 10-100 mm²; severe: >= 100 mm². Uncalibrated
films get ``none`` when there is no deposit and an empty grade otherwise (never graded on
a guessed spacing).

A deposit belongs to the region at its centroid (the phantom truth's rule), so region rows
add up to the film's totals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from .deposits import DepositFindings
from .radiograph import Radiograph
from .config import BurdenConfig
from .regions import WHOLE_FILM, RegionMap

MORPHOLOGY_CLASSES = ("stone", "mousse", "plate", "net")
#: Gaussian sigma (mm) of the film's excess before each pixel's density band is read.
DENSITY_SMOOTHING_MM = 0.2
SEVERITY_GRADES = ("none", "mild", "moderate", "severe")


def density_weight(relative_density: float | None, config: BurdenConfig) -> int | None:
    """Weight (1 = faintest band) of a relative density; None when unknown.

    Examples
    --------
    >>> [density_weight(v, BurdenConfig()) for v in (0.1, 0.3, 0.7, 1.2, None)]
    [1, 2, 3, 4, None]
    """
    if relative_density is None or not math.isfinite(relative_density):
        return None
    return int(density_score(relative_density, config))


def density_score(relative_density: np.ndarray | float, config: BurdenConfig) -> float:
    """Density-weighted score (in pixels) of pixels of the given relative densities: the sum
    of their band weights.

    Examples
    --------
    >>> density_score(np.array([0.1, 0.3, 0.3, 1.5]), BurdenConfig())
    9.0
    """
    bands = np.searchsorted(config.density_band_edges, np.ravel(relative_density), side="right")
    return float(np.sum(bands + 1))


def severity(count: int, area_mm2: float | None, config: BurdenConfig) -> str | None:
    """Severity grade of a region or film; None when it cannot be graded (no spacing).

    Examples
    --------
    >>> [severity(n, a, BurdenConfig()) for n, a in ((0, None), (1, 5.0), (2, 50.0), (3, 150.0))]
    ['none', 'mild', 'moderate', 'severe']
    """
    if count == 0:
        return "none"
    if area_mm2 is None:
        return None
    moderate, severe = config.severity_cutoffs_mm2
    return "mild" if area_mm2 < moderate else "moderate" if area_mm2 < severe else "severe"


@dataclass(frozen=True)
class DepositInfo:
    """Where a deposit lies and what kind it is.

    Attributes
    ----------
    label : int
        The deposit's label (= `DepositMeasures.label`).
    region : str
    fingertip : bool
    periarticular : bool
        Within `RegionConfig.periarticular_mm` of a joint space.
    joint_distance_mm : float or None
        Distance from the deposit's nearest pixel to the nearest joint space (None: no joint
        space found on the film).
    morphology : str
        stone, mousse, plate or net.
    density_weight : int or None
        Band weight of its mean relative density (None for films without bone).
    density_score_px : float or None
        Its density-weighted score: band weights summed over its pixels (None for films
        without bone).
    pieces : int
        Separate specks in the deposit's outline (see ``net`` in the module docstring).
    edge_steepness : float
        Dimensionless (see the module docstring).
    """

    label: int
    region: str
    fingertip: bool
    periarticular: bool
    joint_distance_mm: float | None
    morphology: str
    density_weight: int | None
    density_score_px: float | None
    pieces: int
    edge_steepness: float


def assign_deposits(region_map: RegionMap, findings: DepositFindings, radiograph: Radiograph,
                    config: BurdenConfig | None = None, *, periarticular_mm: float = 3.0
                    ) -> tuple[DepositInfo, ...]:
    """Region, fingertip and periarticular flags, morphology and density band per deposit.

    Parameters
    ----------
    region_map : RegionMap
    findings : DepositFindings
    radiograph : Radiograph
        The film the findings come from (its pixels give the edge sharpness).
    config : BurdenConfig, optional
    periarticular_mm : float
        Distance to a joint space within which a deposit is periarticular
        (`RegionConfig.periarticular_mm`).

    Returns
    -------
    tuple of DepositInfo
        In the order of `findings.deposits`.
    """
    config = config or BurdenConfig()
    deposits = findings.deposits
    if not deposits:
        return ()
    labels = findings.labels
    rows = np.array([d.centroid_row for d in deposits])
    cols = np.array([d.centroid_col for d in deposits])
    regions = region_map.at_source(rows, cols)
    tips = region_map.fingertip_at_source(rows, cols)
    index = [d.label for d in deposits]
    joint_mm = [None] * len(deposits)
    if region_map.joint_distance_mm is not None:
        rr, cc = np.nonzero(labels)
        gr, gc = region_map._to_grid(rr, cc)
        distance = region_map.joint_distance_mm[gr, gc]
        joint_mm = ndimage.minimum(distance, labels[rr, cc], index)
        joint_mm = [float(v) for v in np.atleast_1d(joint_mm)]
    spacing = findings.grid.source_spacing_mm
    pixels = radiograph.pixels
    bone_level = findings.anatomy.bone_level
    background = findings.search.source_background if bone_level else None
    infos = []
    for k, deposit in enumerate(deposits):
        pieces, edge = _shape_measures(pixels, labels, deposit, spacing,
                                       config.net_min_speck_fraction)
        weight = density_weight(deposit.relative_density, config)
        score = (None if background is None
                 else scores_of_pixels(pixels, background, labels, deposit.label, deposit.bbox,
                                       bone_level, spacing, config)[0])
        infos.append(DepositInfo(
            label=deposit.label, region=str(regions[k]), fingertip=bool(tips[k]),
            periarticular=joint_mm[k] is not None and joint_mm[k] <= periarticular_mm,
            joint_distance_mm=joint_mm[k],
            morphology=classify_morphology(deposit, pieces, edge, config,
                                           pixel_area_mm2=spacing[0] * spacing[1]),
            density_weight=weight, density_score_px=score, pieces=pieces,
            edge_steepness=edge))
    return tuple(infos)


def _box_around(bbox, margin_px: int, shape) -> tuple[slice, slice]:
    """A bounding box (r0, c0, r1, c1) grown by `margin_px`, within the film."""
    r0, c0, r1, c1 = bbox
    return (slice(max(r0 - margin_px, 0), min(r1 + margin_px, shape[0])),
            slice(max(c0 - margin_px, 0), min(c1 + margin_px, shape[1])))


def scores_of_pixels(pixels: np.ndarray, background: np.ndarray, labels: np.ndarray,
                     label: int, bbox: tuple[int, int, int, int], bone_level: float,
                     spacing_mm: tuple[float, float], config: BurdenConfig
                     ) -> tuple[float, float]:
    """The density-weighted score and the integrated density, in pixels, of the pixels of
    `labels` equal to `label`, from the film's excess over its soft-tissue `background`
    (source grid; only the box `bbox` = (r0, c0, r1, c1) and its surroundings are read).

    The score weighs each pixel by the band of its relative density, smoothed over
    `DENSITY_SMOOTHING_MM`; the integrated density sums the pixels' relative densities (a
    deposit's area times its mean relative density).
    """
    sigma_px = DENSITY_SMOOTHING_MM / math.sqrt(spacing_mm[0] * spacing_mm[1])
    box = _box_around(bbox, int(math.ceil(3 * sigma_px)), labels.shape)
    crop = np.ascontiguousarray(pixels[box] - background[box], dtype=np.float32)
    smooth = cv2.GaussianBlur(crop, (0, 0), sigma_px)
    inside = labels[box] == label
    return (density_score(smooth[inside] / bone_level, config),
            float(crop[inside].sum(dtype=np.float64) / bone_level))


def _shape_measures(pixels, labels, deposit, spacing_mm,
                    min_speck_fraction: float) -> tuple[int, float]:
    """Separate specks (pieces of at least `min_speck_fraction` of the largest) and edge
    steepness of one deposit, from the source pixels."""
    box = _box_around(deposit.bbox, 2, labels.shape)
    mask = (labels[box] == deposit.label).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    pieces = int(np.count_nonzero(areas >= min_speck_fraction * areas.max()))
    crop = np.ascontiguousarray(pixels[box], dtype=np.float32)
    smooth = cv2.GaussianBlur(crop, (0, 0), 1.0)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3) / (8.0 * spacing_mm[0])
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3) / (8.0 * spacing_mm[1])
    outline = mask.astype(bool) & ~(cv2.erode(mask, np.ones((3, 3), np.uint8)) > 0)
    gradient = float(np.hypot(gx, gy)[outline].mean()) if outline.any() else 0.0
    radius_mm = deposit.equivalent_diameter_px / 2 * math.sqrt(spacing_mm[0] * spacing_mm[1])
    return int(pieces), gradient / max(deposit.peak_contrast, 1e-6) * radius_mm


def classify_morphology(deposit, pieces: int, edge_steepness: float,
                        config: BurdenConfig | None = None, *, pixel_area_mm2: float) -> str:
    """stone, mousse, plate or net by the documented rules (see the module docstring).

    `pixel_area_mm2` is the film's pixel area, nominal on an uncalibrated film: the size
    below which a deposit is punctate is a property of the image, not a reported area.
    """
    config = config or BurdenConfig()
    if pieces >= config.net_min_pieces or deposit.solidity < config.net_max_solidity:
        return "net"
    ratio = 1.0 / math.sqrt(max(1.0 - deposit.eccentricity ** 2, 1e-12))
    if ratio >= config.plate_min_axis_ratio:
        return "plate"
    if (edge_steepness < config.mousse_max_edge_steepness
            and deposit.area_px * pixel_area_mm2 >= config.mousse_min_area_mm2):
        return "mousse"
    return "stone"


BURDEN_COLUMNS = (
    "region", "n_deposits", "area_px", "area_mm2", "soft_tissue_area_px", "soft_tissue_area_mm2",
    "fraction", "largest_area_px", "largest_area_mm2", "mean_relative_density",
    "density_score_px", "density_score_mm2", "integrated_density_px", "integrated_density_mm2",
    "n_fingertip", "n_periarticular", "n_stone", "n_mousse", "n_plate", "n_net", "severity",
)
"""Columns of the per-region rows (``regions.csv``); mm² columns are None when uncalibrated."""


def region_burden(region_map: RegionMap, findings: DepositFindings,
                  infos: tuple[DepositInfo, ...], *, calibrated: bool,
                  config: BurdenConfig | None = None) -> list[dict]:
    """Burden per region and for the whole film.

    Parameters
    ----------
    region_map : RegionMap
    findings : DepositFindings
    infos : tuple of DepositInfo
        From `assign_deposits`, in the order of `findings.deposits`.
    calibrated : bool
        `Radiograph.is_calibrated`: mm² columns are filled only when True.
    config : BurdenConfig, optional

    Returns
    -------
    list of dict
        One row per region (in `region_map.names` order, ``unassigned`` added when a deposit
        lies outside every region), then ``all``; keys are `BURDEN_COLUMNS`. The region rows'
        counts, areas and scores add up to the ``all`` row.
    """
    config = config or BurdenConfig()
    if len(infos) != len(findings.deposits):
        raise ValueError("infos must hold one DepositInfo per deposit of the findings "
                         f"({len(infos)} given for {len(findings.deposits)})")
    grid = findings.grid
    soft = findings.anatomy.soft_tissue
    # Source pixels per analysis pixel, and mm² per analysis pixel.
    source_px = grid.scale[0] * grid.scale[1]
    pixel_mm2 = grid.source_pixel_area_mm2
    soft_counts = np.bincount(region_map.labels[soft].ravel(), minlength=len(region_map.names) + 1)
    names = [name for name in region_map.names if name != WHOLE_FILM]  # 'all' comes last
    if any(info.region not in region_map.names for info in infos):
        names.append("unassigned")
    rows = []
    for name in names + [WHOLE_FILM]:
        if name == WHOLE_FILM:
            soft_px = float(soft.sum()) * source_px
            members = list(range(len(infos)))
        else:
            index = region_map.names.index(name) + 1 if name in region_map.names else 0
            soft_px = float(soft_counts[index]) * source_px if index else 0.0
            members = [k for k, info in enumerate(infos) if info.region == name]
        rows.append(_row(name, members, findings.deposits, infos, soft_px, pixel_mm2,
                         calibrated, config))
    # Whole source pixels, rounded so that the regions still add up to the film.
    parts = _apportioned([row["soft_tissue_area_px"] for row in rows[:-1]])
    for row, whole in zip(rows, [*parts, round(rows[-1]["soft_tissue_area_px"])]):
        row["soft_tissue_area_px"] = whole
    return rows


def _apportioned(values: list[float]) -> list[int]:
    """Round non-negative values to integers that keep their rounded sum (largest remainder).

    Examples
    --------
    >>> _apportioned([1.5, 1.5, 1.0])
    [2, 1, 1]
    """
    floors = [math.floor(value) for value in values]
    missing = round(sum(values)) - sum(floors)
    by_remainder = sorted(range(len(values)), key=lambda i: floors[i] - values[i])
    for index in by_remainder[:missing]:
        floors[index] += 1
    return floors


def _row(name, members, deposits, infos, soft_px, pixel_mm2, calibrated, config) -> dict:
    areas = np.array([deposits[k].area_px for k in members], float)
    densities = [deposits[k].relative_density for k in members]
    known = all(d is not None for d in densities)
    area_px = float(areas.sum())
    density_px = float(sum(infos[k].density_score_px for k in members)) if known else None
    integrated_px = float(sum(a * d for a, d in zip(areas, densities))) if known else None

    def mm2(value):
        return None if value is None or not calibrated else value * pixel_mm2

    counts = {m: sum(infos[k].morphology == m for k in members) for m in MORPHOLOGY_CLASSES}
    return {
        "region": name,
        "n_deposits": len(members),
        "area_px": int(area_px),
        "area_mm2": mm2(area_px),
        "soft_tissue_area_px": soft_px,
        "soft_tissue_area_mm2": mm2(soft_px),
        "fraction": area_px / soft_px if soft_px > 0 else None,
        "largest_area_px": int(areas.max()) if members else 0,
        "largest_area_mm2": mm2(float(areas.max())) if members else (0.0 if calibrated else None),
        "mean_relative_density": (integrated_px / area_px if known and area_px > 0 else None),
        "density_score_px": density_px,
        "density_score_mm2": mm2(density_px),
        "integrated_density_px": integrated_px,
        "integrated_density_mm2": mm2(integrated_px),
        "n_fingertip": sum(infos[k].fingertip for k in members),
        "n_periarticular": sum(infos[k].periarticular for k in members),
        **{f"n_{m}": counts[m] for m in MORPHOLOGY_CLASSES},
        "severity": severity(len(members), mm2(area_px), config),
    }
