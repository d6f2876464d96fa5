"""Every tunable of the analysis, in physical units, defined once.

Sizes are in mm, areas in mm², contrasts as ratios to the film's own noise (CNR) or to its own
soft-tissue/bone references; there are no pixel constants. `AnalysisConfig` is frozen; load a
study's overrides from a TOML file with `load_config`, and record `config_hash` with results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tomllib
from dataclasses import dataclass, field

from .errors import ConfigError
from .evaluation import CHANGE_THRESHOLD, MIN_OVERLAP


@dataclass(frozen=True)
class GridConfig:
    """The analysis grid every stage works on."""

    spacing_mm: float = 0.2
    """Analysis pixel spacing; films are resampled to it so every parameter is in mm."""
    nominal_spacing_mm: float = 0.15
    """Assumed source spacing of uncalibrated films (CR/DX detectors are 0.1-0.2 mm);
    results of such films are flagged and carry no mm² values."""
    nominal_spacing_mammography_mm: float = 0.07
    """Assumed source spacing of uncalibrated mammograms (MG/RG breast films)."""


@dataclass(frozen=True)
class AnatomyConfig:
    """Body, bone and non-anatomical objects."""

    min_body_area_mm2: float = 1500.0
    """Smaller bright islands in air (markers, letters, rulers) are not body."""
    max_body_hole_mm2: float = 1500.0
    """Enclosed darker regions up to this size (gas, thin tissue) belong to the body."""
    body_min_width_mm: float = 8.0
    """Narrower bright strips in air (collimator penumbra, rulers, text) are not body."""
    collimator_margin_mm: float = 3.0
    """Band excluded around unexposed borders (the collimator edge); glare beyond it is
    dropped when it holds no bone."""
    glare_mm: float = 25.0
    """Scatter glare beside an unexposed border or an electronic shutter reaches this far:
    bright pixels there do not make a region part of the patient."""
    border_margin_mm: float = 2.0
    """Band excluded around metal."""
    film_edge_margin_mm: float = 2.0
    """Band excluded along the film's outer edges (processing and plate-edge artefacts)."""
    bone_scale_mm: float = 24.0
    """Widest bone expected across its shaft in a hand/forearm film (opening diameter)."""
    bone_scale_limb_mm: float = 60.0
    """The same for films of large limbs (leg, knee, shoulder, chest...)..."""
    bone_scale_pelvis_mm: float = 100.0
    """...for hip and pelvis films, where the femoral head, the acetabulum and the
    ischium overlap into one dense region far wider than a shaft (at 60 mm the femoral head
    and neck of the real hip film were left out of the bone mask and their trabeculae
    reported as deposits)..."""
    bone_scale_jaw_mm: float = 100.0
    """...and for dental films, whose mandible and teeth form a dense band as wide (at the
    hand scale, pieces of the real panoramic film's mandible were reported as deposits; at
    60 mm the foot of its lead "L" marker joined the bone mask and its stem was reported)."""
    bone_marker_fraction: float = 0.4
    """Sure-bone markers for the watershed are found with an opening this fraction of the
    bone scale (it finds cortex and small bones)."""
    bone_min_width_mm: float = 3.0
    """Bone is at least this wide; narrower bright appendages (deposits) are not bone."""
    bridge_min_elongation: float = 2.0
    """...except a narrower piece at least this elongated that joins two parts of the bone
    end to end: a thin section of a long bone (the fibula), where an appendage hangs on one
    part only."""
    bone_min_area_mm2: float = 60.0
    """Isolated dense islands (joint spaces bridged) smaller than this are deposits, not bone;
    small bones such as sesamoids join their neighbours across the joint."""
    bone_min_island_width_mm: float = 4.0
    """...and so are islands thinner than this (dense plates and sheets)."""
    long_limb_min_island_width_mm: float = 10.0
    """On a film of a long limb segment (`imaging.anatomy.LONG_LIMB_PARTS`: lower leg, thigh)
    the bones are long bones, the patella and the ends of the next segment's bones, all wider
    than this: an isolated island narrower than this and smaller than
    `long_limb_min_island_area_mm2`, clear of the field's edge, is a sheet of calcium."""
    long_limb_min_island_area_mm2: float = 300.0
    """(A narrow island larger than this stays bone: a child's fibula is 6-8 mm wide.)"""
    soft_gap_fraction: float = 0.25
    """Inside the refined bone outline of a hand, wrist or forearm film
    (`imaging.anatomy.HAND_SCALE_PARTS`), pixels less than this fraction of the bone reference
    above the soft tissue at their depth below the skin are soft tissue: a piece of the mask
    that such a gap detaches, narrower than `bone_min_width_mm` and smaller than
    `bone_min_area_mm2`, is a strip of calcium beside the bone, not bone (see
    `imaging.anatomy._without_detached_strips`)."""
    bone_contrast_fraction: float = 0.3
    """A pixel is bone when its excess over soft tissue reaches this fraction of the
    film's typical bone excess (the soft tissue to cortex scale)."""
    bone_max_hole_mm2: float = 150.0
    """Enclosed regions of a bone up to this size (marrow, trabecular gaps) are bone."""
    joint_space_mm: float = 2.0
    """Gaps between bone ends up to this width (joint spaces) count as bone, not soft tissue."""
    metal_contrast: float = 3.5
    """Excess over soft tissue, in units of the bone reference, above which a region is
    metal or lead (markers, letters, wires, screws). Thick calcium stones and clouds reach
    2.5-3.4 times the bone reference on the phantoms: lower values lose them."""
    small_bone_min_area_mm2: float = 2.5
    """Smallest piece of bone (a sesamoid, a phalanx tuft) that the refined bone outline may
    have lost and that is given back when it looks like bone (see below)..."""
    small_bone_max_area_mm2: float = 40.0
    """...and the largest."""
    small_bone_min_contrast: float = 0.2
    """Such a piece stands out from the tissue around it by at least this fraction of the
    film's bone reference..."""
    small_bone_min_texture: float = 1.6
    """...has fine texture (trabeculae) at least this many times that of the tissue around
    it, both measured away from the piece's edge (calcinosis is smooth)..."""
    small_bone_max_contact: float = 0.4
    """...touches the rest of the bone along at most this fraction of its outline (more is a
    fringe along a bone edge)..."""
    dome_ratio: float = 1.1
    """A small island of the bone core whose centre is this many times denser than its edge
    is a domed lump of calcium, not a bone (see `imaging.anatomy._domed_islands`)."""
    small_bone_max_dome_ratio: float = 1.3
    """A piece the bone outline lost is given back as a small bone only when less domed than
    this: a small bone of the real hand film reaches `dome_ratio`, and its texture test
    decides for it."""
    small_bone_max_elongation: float = 1.8
    """...and is round to oval: its long axis at most this many times its short one."""


@dataclass(frozen=True)
class DetectionConfig:
    """Finding calcified deposits in soft tissue."""

    scales_mm: tuple[float, ...] = (0.6, 1.2, 2.5, 5.0)
    """Deposit widths the detector smooths for (Gaussian sigma = a quarter of each)."""
    noise_tile_mm: float = 16.0
    """Tiles over which the local spread of each scale's response is measured."""
    seed_cnr: float = 5.0
    """A deposit must stand this many local spreads above its surroundings somewhere
    (Rose criterion: 4-5)."""
    grow_cnr: float = 2.5
    """Hysteresis: deposits extend over connected pixels above this many spreads."""
    min_area_mm2: float = 0.25
    """Smaller candidates are noise."""
    min_outline_area_mm2: float = 0.1
    """A deposit's final outline (in the source grid) smaller than this is a noise spike
    beside a candidate, a few pixels at half its own peak, not a deposit..."""
    min_outline_px: int = 5
    """...and so is one of fewer source pixels than this, whatever their size: one or two hot
    detector elements (the real hip film has such a pair, 0.16 mm² at its 0.2 mm pixels); the
    imaging chain's blur spreads any object over more."""
    max_area_mm2: float = 150.0
    """Larger connected regions are soft-tissue structure, not one deposit."""
    min_width_mm: float = 0.6
    """Opening diameter: thinner streaks (bone-edge rims, noise) are not deposits."""
    min_rim_cnr: float = 3.0
    """A deposit's mean must exceed the soft tissue just around it (0.5-2 mm) by this many
    noise standard deviations."""
    min_rim_fraction: float = 0.6
    """...and by at least this fraction of its own contrast over the background: a sliver
    of bone edge has bone in its rim and stands out from it far less than from the tissue
    background."""
    large_min_area_mm2: float = 4.0
    """A deposit at least this large..."""
    large_min_rim_cnr: float = 2.5
    """...needs only this `min_rim_cnr` (Rose: the contrast a region needs to be seen falls
    as the square root of its area)."""
    clear_of_bone_min_area_mm2: float = 10.0
    """A deposit at least this large that touches no bone skips the `min_rim_fraction` test,
    which finds slivers of bone edge: a region this large and clear of bone is none, and the
    rim of a wide faint sheet holds the sheet's own soft edge."""
    min_relative_density: float = 0.15
    """Deposits fainter than this fraction of the film's bone contrast are soft-tissue
    texture (films without bone skip this test)."""
    faint_min_relative_density: float = 0.10
    """Fainter deposits, down to this fraction of the bone contrast, are kept when they are
    small and either compact or standing out sharply from the tissue right around them (the
    tests below): a faint deposit is, soft-tissue texture of that density is not."""
    faint_compact_min_solidity: float = 0.7
    """A faint deposit this solid needs only the usual rim tests (`min_rim_cnr`,
    `large_min_rim_cnr`, `min_rim_fraction`): of the candidates of the phantom suites of
    seeds 0-4 that those tests kept and the faint ones dropped (0.10-0.15 of bone, up to
    `faint_max_area_mm2`), 18 of the 33 on true deposits had solidities of 0.71-0.98,
    all 55 in soft tissue 0.15-0.69 (soft-tissue texture outlined at half its peak is
    ragged); less solid ones must pass the tests below..."""
    faint_compact_min_area_mm2: float = 1.0
    """...as must those smaller than this: an outline of a few pixels is convex whatever it
    outlines (a 0.5 mm² streak of 12 bright pixels on the real hip film, 0.10 of bone, passed
    the usual rim tests at solidity 0.92; the 18 true deposits were 1.3-6.9 mm²)."""
    faint_min_rim_cnr: float = 4.5
    """`min_rim_cnr` for those faint deposits..."""
    faint_min_rim_fraction: float = 0.8
    """...their `min_rim_fraction`..."""
    faint_max_area_mm2: float = 10.0
    """...and they are compact: larger faint regions are soft-tissue structure..."""
    faint_solid_min_area_mm2: float = 4.0
    """...and from this size on they are solid (`faint_min_solidity`)..."""
    faint_min_solidity: float = 0.45
    """...as a calcification is: a faint region outlined as a ragged lace of several mm² is
    soft tissue (all 7 faint false deposits of the phantom suites of seeds 0-9 and of the
    serial benchmark were such laces at a fingertip, just beyond the distal phalanx: 5-9 mm²,
    solidity 0.33-0.43; 1 of the 9 true faint deposits of 4 mm² or more had less than 0.45,
    0.42, the others 0.51-0.85)."""
    faint_sheet_min_relative_density: float = 0.08
    """A faint region larger than `faint_max_area_mm2`, down to this fraction of the bone
    contrast, is a calcified sheet (calcinosis universalis, a plate along a fascial plane)
    when it is drawn out (`faint_sheet_min_eccentricity`), clear of bone
    (`faint_sheet_max_bone_contact`) and stands out from its rim by the usual `min_rim_cnr`
    and `min_rim_fraction`..."""
    faint_sheet_min_eccentricity: float = 0.95
    """...: soft-tissue texture of that density and rim contrast is rounder (candidates of
    the phantom suites of seeds 0-4 over 10 mm² at 0.08-0.15 of bone that pass those rim
    tests: 54 of the 55 in soft tissue had eccentricities of 0.70-0.92, the 55th, 0.99, a
    147 mm² region touching bone; 12 of the 15 on true deposits 0.95-1.0)..."""
    faint_sheet_max_bone_contact: float = 0.1
    """...and lies clear of bone (`bone_contact`; those 15 had 0-0.01, the 55 up to 0.35)."""
    min_mean_cnr: float = 2.5
    """Mean CNR over the whole candidate (rejects noise clusters grown from one hot pixel)."""
    edge_fraction: float = 0.5
    """Deposit outline in the source grid: this fraction of its peak contrast (FWHM)."""
    plateau_min_area_mm2: float = 9.0
    """A deposit (or speck) whose outline at `edge_fraction` of its highest pixel is at least
    this large is a plateau, whose highest pixel is its noise's maximum: its peak is taken
    as the `plateau_peak_percentile` of that outline instead, and the outline redrawn..."""
    plateau_peak_percentile: float = 95.0
    """...at `edge_fraction` of it (a sheet of calcinosis is otherwise cut too high, ragged
    and short)."""
    seed_reach_mm: float = 1.0
    """An outlined speck belongs to a deposit only within this distance of the candidate's
    seed (where it stands `seed_cnr` above its surroundings): noise specks that the wide
    hysteresis region also holds are not part of it."""
    max_speck_gap_mm: float = 1.5
    """Specks farther apart than this are separate deposits; closer ones (a reticular
    cluster) are one."""
    min_speck_peak_fraction: float = 0.35
    """A candidate's outlined speck whose peak is below this fraction of the candidate's
    highest speck is left out: the faint structure beside a dense deposit (soft tissue along
    a bone, a fingertip's pulp), whose half-maximum cut at its own low peak spreads wide."""
    min_core_noise_ratio: float = 0.3
    """A deposit whose core is flatter than this fraction of the surrounding pixel noise is
    clipped at the detector's ceiling: a saturated metal or lead object (a skin marker bead),
    not calcium."""
    max_bone_contact: float = 0.48
    """A deposit with more than this fraction of its outline within 0.6 mm of the bone mask
    is a strip of bone edge the mask missed (a deposit beside a bone touches it along a
    smaller part of its outline)."""
    sliver_max_area_mm2: float = 4.0
    """A deposit smaller than this..."""
    sliver_max_bone_contact: float = 0.4
    """...lying along the bone mask for more than this fraction of its outline is a sliver of
    bone edge (a larger deposit may touch a bone that much: it is judged by
    `max_bone_contact`)."""
    rod_min_length_mm: float = 15.0
    """A straight rod at least this long (its bounding box's diagonal)..."""
    rod_min_eccentricity: float = 0.98
    """...this elongated (0.98: five times longer than wide)..."""
    rod_min_solidity: float = 0.85
    """...and this solid (uniformly wide) is hardware, a Kirschner wire or a needle, not
    calcium: sheets of calcinosis that long are curved and ragged."""
    lettering_min_outline_mm: float = 8.0
    """A deposit whose outline (and bounding box's perimeter) is at least this long..."""
    lettering_tolerance_mm: float = 0.3
    """...and within this distance of a polygon of straight sides..."""
    lettering_max_corners: int = 12
    """...with no more than this many corners..."""
    lettering_max_corner_error_deg: float = 20.0
    """...every one a right angle give or take this much is a lead marker letter (an "L",
    a "T"), not calcium: lettering is cut square, calcium never is."""
    skin_line_depth_mm: float = 3.0
    """The skin line (skin seen edge-on, brighter than the fat under it) lies this deep at
    most below the body outline (on large limbs, where the fat under it is thick)..."""
    skin_line_depth_hand_mm: float = 2.0
    """...or this deep on hand, wrist and forearm films (`imaging.anatomy.HAND_SCALE_PARTS`),
    where the skin is 1-2 mm thick: a sheet of calcinosis under it lies deeper (2.4-3 mm on
    the phantoms, where the skin lines found lie within 0.6 mm)..."""
    skin_line_max_depth_change: float = 0.1
    """...and a deposit there whose depth below the skin changes by less than this fraction
    of its extent is a strip of skin line the background missed, not calcium (a deposit
    under the skin is about as deep as it is wide)..."""
    skin_line_max_relative_density: float = 0.8
    """...unless it is denser than this fraction of bone: skin is soft tissue, a dense sheet
    along the skin is calcium."""
    subcutaneous_bone_depth_mm: float = 2.0
    """A deposit this close to the skin..."""
    subcutaneous_bone_min_contact: float = 0.05
    """...that touches the bone mask along at least this fraction of its outline..."""
    subcutaneous_bone_min_eccentricity: float = 0.9
    """...and is this elongated is the cortex of a bone lying right under the skin (the
    lateral malleolus, the tibia's anterior border) that the bone mask missed: on the
    phantoms' lower legs, 11 of the 24 false deposits of three suites and no true one."""


@dataclass(frozen=True)
class RegionConfig:
    """Automatic anatomical regions (`imaging.regions`)."""

    finger_max_width_mm: float = 30.0
    """Body parts narrower than this are digits (an opening of this width leaves palm and
    forearm)."""
    finger_min_length_mm: float = 20.0
    """Shorter protrusions are not digits."""
    digit_margin_mm: float = 3.0
    """A digit zone reaches this far beyond the digit's half width from its axis."""
    metacarpal_ratio: float = 0.68
    """Metacarpal length as a fraction of the MCP-to-fingertip length (adult hands:
    0.62-0.76); places the palm/wrist boundary."""
    joint_dip_fraction: float = 0.25
    """A joint space is a dip inside bone, narrower than joint_max_width_mm, deeper than this
    fraction of the film's bone contrast."""
    joint_max_width_mm: float = 4.0
    """Widest joint space."""
    periarticular_mm: float = 3.0
    """A deposit within this distance of a joint space is periarticular."""
    limb_min_elongation: float = 2.0
    """Without a body part, a body this many times longer than wide is a limb."""
    distal_end: str = "auto"
    """Where the distal end of a limb lies on the film: auto (the narrower end), top,
    bottom, left or right."""

    def __post_init__(self):
        if self.distal_end not in ("auto", "top", "bottom", "left", "right"):
            raise ValueError("regions.distal_end must be auto, top, bottom, left or right, "
                             f"got {self.distal_end!r}")


@dataclass(frozen=True)
class BurdenConfig:
    """Density bands, morphology rules and severity grades (`imaging.burden`)."""

    density_band_edges: tuple[float, ...] = (0.25, 0.5, 1.0)
    """Relative-density edges (soft tissue 0, cortical bone 1) of the bands of the
    density-weighted score; the weights are 1, 2, 3... from the faintest band."""
    severity_cutoffs_mm2: tuple[float, float] = (10.0, 100.0)
    """Total deposit area from which a film or region is moderate, then severe (any deposit
    below the first: mild)."""
    net_min_pieces: int = 3
    """A deposit of at least this many separate specks is a net..."""
    net_min_speck_fraction: float = 0.1
    """...counting the pieces of its outline of at least this fraction of the largest: the
    crumbs a noisy half-maximum cut leaves beside a stone are 0.1-4 % of it, a net's specks
    6-100 % of its largest (phantom films of 2026-11-29)..."""
    net_max_solidity: float = 0.55
    """...and so is one whose outline fills at most this fraction of its convex hull."""
    plate_min_axis_ratio: float = 3.0
    """A deposit this many times longer than wide is a plate (sheet seen edge-on)."""
    mousse_max_edge_steepness: float = 0.75
    """A deposit whose edge steepness (`imaging.burden`) is below this is mousse (cloudy).
    Chosen between the dome-shaped stones and Gaussian clouds of the phantoms
    (`benchmarks/regions.py`: detector outlines of the regions benchmark's films 0-7; films
    8-15 held out)."""
    mousse_min_area_mm2: float = 0.5
    """Smaller deposits are stones whatever their edge: a speck under 0.8 mm across has the
    edge of the system blur (the phantom nets' single specks, 0.2-0.4 mm², score 0.3-0.5)."""

    def __post_init__(self):
        if list(self.density_band_edges) != sorted(set(self.density_band_edges)):
            raise ValueError("burden.density_band_edges must increase, got "
                             f"{list(self.density_band_edges)}")
        if len(self.severity_cutoffs_mm2) != 2 or not (
                0 < self.severity_cutoffs_mm2[0] < self.severity_cutoffs_mm2[1]):
            raise ValueError("burden.severity_cutoffs_mm2 must be [moderate, severe] with "
                             f"0 < moderate < severe, got {self.severity_cutoffs_mm2}")


@dataclass(frozen=True)
class RegistrationConfig:
    """Registering a follow-up film onto its baseline.

    The quality minimums sit between what was measured on phantoms (`benchmarks/serial.py`,
    `tests/test_register.py`): same-anatomy pairs (repositioned up to ±10°, 10 mm, dose
    0.6-1.6x) scored correlation 0.81-0.99 and bone Dice 0.90-0.99 after alignment; a
    mirrored hand (the other side, labelled as the same) 0.46 and 0.67; a forearm against
    a hand needed an implausible scale (0.68). Phantom hands of *different* patients align
    well (0.89, 0.92): another patient is refused by the patient key, not by the image.
    """

    spacing_mm: float = 0.4
    """Grid of the finest registration level."""
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    """Multi-resolution levels, as multiples of `spacing_mm`."""
    smoothing_mm: tuple[float, ...] = (1.6, 0.8, 0.0)
    """Gaussian smoothing (sigma, mm) at each level."""
    band_mm: tuple[float, float] = (0.5, 6.0)
    """Band-pass of the registration image: difference of Gaussians with these sigmas."""
    bone_margin_mm: float = 3.0
    """The metric looks at bone and this much tissue around it."""
    deposit_margin_mm: float = 1.5
    """Deposits, grown by this much, are left out of the metric on both films."""
    start_rotation_range_deg: float = 24.0
    """Initial rotations tried: up to this much either way (then refined). Two films each
    placed within ±10° of the usual position differ by up to 20° (at 14° a phantom hand
    pair 18.2° apart was refused, correlation 0.49; at 20° or more it aligns, 0.98)."""
    start_rotation_step_deg: float = 2.0
    """...in steps of this size, each with the best shift by phase correlation."""
    start_scales: tuple[float, ...] = (1.0,)
    """Relative magnifications the refinement starts from (the best result is kept)."""
    histogram_bins: int = 32
    """Bins of the Mattes mutual information metric."""
    iterations: int = 200
    """Optimiser iterations per level."""
    learning_rate: float = 0.5
    """First step of the optimiser (about mm of shift); 1.0 let Mattes MI overshoot to a 9 %
    magnification on a forearm."""
    min_step: float = 1e-3
    """The optimiser stops when its step falls below this (about mm of shift)."""
    sampling_fraction: float = 0.5
    """Fraction of the masked pixels the metric samples (a fixed random set)."""
    min_correlation: float = 0.6
    """Refuse below this correlation of the band-passed films over bone after alignment."""
    min_bone_dice: float = 0.75
    """Refuse below this overlap (Dice) of the two bone masks after alignment."""
    max_rotation_deg: float = 30.0
    """Refuse a larger rotation: the films were not taken in comparable positions."""
    max_scale_change: float = 0.2
    """Refuse a larger relative magnification change."""

    def __post_init__(self):
        if self.spacing_mm <= 0 or any(f < 1 for f in self.shrink_factors):
            raise ValueError("registration.spacing_mm must be positive and "
                             "registration.shrink_factors >= 1")
        if len(self.shrink_factors) != len(self.smoothing_mm):
            raise ValueError("give one registration.smoothing_mm per shrink factor")
        if self.histogram_bins < 4 or not self.start_scales:
            raise ValueError("registration.histogram_bins must be >= 4 and "
                             "registration.start_scales not empty")
        if len(self.band_mm) != 2 or self.band_mm[0] >= self.band_mm[1]:
            raise ValueError("registration.band_mm must be [fine, coarse] sigmas, fine first, "
                             f"got {list(self.band_mm)}")


@dataclass(frozen=True)
class MatchConfig:
    """Matching deposits between two registered films."""

    tolerance_mm: float = 1.0
    """Deposits are grown by this much before overlapping (registration error, outline
    jitter); the serial benchmark measures registration errors well below it."""
    min_overlap: float = MIN_OVERLAP
    """Linked when the overlap is at least this fraction of the other deposit's area."""
    change_pct: float = 100 * CHANGE_THRESHOLD
    """A matched group grew or shrank when its area changed by more than this (%)..."""
    min_change_mm2: float = 0.5
    """...and by more than this (mm², calibrated films only)."""


@dataclass(frozen=True)
class RepeatabilityConfig:
    """The pipeline's smallest detectable difference (SDD) of a film's deposit area.

    Provenance: ``python benchmarks/serial.py`` analyses phantom films (hand, forearm, lower
    leg) re-acquired with a new position (up to ±10°, 10 mm), dose (0.6-1.6x) and noise,
    deposits unchanged but for the ±2 % drift the truth records, compares them as a follow-up
    is compared (registered, deposits found again in the pair: `imaging.paired`) and takes the
    Bland-Altman repeatability coefficient SDD = 1.96 x SD of the pair error. Measured
    2026-11-30 on the 12 pairs of seed 0 and 24 more (``--seed 1 --n-repeats 24
    --n-series 0``), 34 pairs with deposits found, deposits the other film cannot show left
    out (`CompareConfig.max_unseen_fraction`) and the films' extents shared
    (`CompareConfig.shared_min_fraction`): 33 of 34 within ±10 % (the other at +10.1 %),
    SDD 0.064 relative and 2.85 mm², robust (1.4826 x MAD) 0.050 and 1.4 mm² (0.91 and
    6.68 mm², robust 0.14 and 3.4, before the extents were shared, when what one film's
    first look outlined in part was compared with the other's whole). The films' own totals,
    without deposits found again, gave 19 of 34, 1.04 and 10.7 mm² (robust 0.29 and
    6.7 mm²). The values below are the plain ones, rounded up. These are the current
    detector's and comparison's figures on phantoms, not a property of the method: measure
    again whenever either changes (earlier figures are in the git history).
    """

    relative_sdd: float = 0.07
    """SDD as a fraction of the mean of the two areas."""
    absolute_sdd_mm2: float = 2.9
    """Floor of the SDD in mm² (small burdens)."""

    def sdd(self, baseline: float, followup: float, *, calibrated: bool = True) -> float:
        """Smallest detectable difference for these two areas (mm², or px if uncalibrated,
        then without the mm² floor)."""
        relative = self.relative_sdd * 0.5 * (baseline + followup)
        return max(relative, self.absolute_sdd_mm2) if calibrated else relative


@dataclass(frozen=True)
class CompareConfig:
    """Everything the serial comparison needs besides the registration."""

    match: MatchConfig = field(default_factory=MatchConfig)
    repeatability: RepeatabilityConfig = field(default_factory=RepeatabilityConfig)
    change_threshold: float = CHANGE_THRESHOLD
    """Relative change of total area beyond which a follow-up is progression or improvement."""
    found_again_min_rim_cnr: float = 2.0
    """The rim test's contrast-to-noise ratio for a deposit found again
    (`imaging.paired.find_again`), in place of the detector's `DetectionConfig.min_rim_cnr`
    (and of `large_min_rim_cnr` when lower): there the other film shows a deposit at a known
    place, so the question is one test rather than a search over the whole film, and 2 noise
    SDs is a one-sided false-alarm rate of about 2 %. The density, faint and shape tests,
    which tell deposits from soft-tissue texture rather than from noise, stay the detector's.
    On ``benchmarks/serial.py`` (2026-11-30) this puts 22 of 24 pairs in the right category
    instead of 21 (a forearm whose 26 mm² faint sheet, kept on the follow-up, stands 2.7
    noise SDs above its rim on the baseline); the accuracy suites' 80 serial pairs (74 right)
    and the re-acquisitions (11 of 11 and, on ``--seed 1``, 14 of 23 within ±10 %) are as
    they were, and one re-acquired forearm moves from -29 % to -13 %. Easing the faint tests
    too (rim CNR 2, rim fraction 0.6, no solidity test) found a 3 mm² lace of soft tissue
    (solidity 0.11) where a hand's deposits had all resolved."""
    change_sigma_mm: float = 0.5
    """Temporal subtraction (`imaging.subtraction`): both films of a pair are smoothed at this
    scale (mm) and the registered baseline is taken from the follow-up..."""
    change_background_mm: float = 5.0
    """...the difference's slow trend at this scale (mm) is taken out..."""
    change_margin_mm: float = 0.6
    """...and it is read over the soft tissue both films search, this far (mm) clear of its
    edges..."""
    change_registration_mm: float = 0.25
    """...and not where a registration error of this much (mm; the serial benchmark's largest
    at bone landmarks, 0.25) on either film's slope could reach `change_low_z`..."""
    change_seed_z: float = 6.5
    """...in units of its robust spread: regions reaching this level..."""
    change_low_z: float = 3.0
    """...grown down to this one..."""
    change_min_area_mm2: float = 1.0
    """...and at least this large are where one film shows more calcium than the other, and
    it is looked at there as where the other film has a deposit
    (`imaging.paired.find_again_in_pair`). On the serial benchmark's 36 re-acquired pairs,
    where nothing changed, the difference reached 3.5-6.2 of its spreads more than 1 mm from
    every deposit (the larger values on lower legs, whose films hold the most pixels), and
    above 6.5 only on the rim of deposits both films show, on two pairs (6.7 and 8.1); on its
    hand 3, visits 1 -> 2, a new 11 mm² deposit of CNR 4.2 that the follow-up's detector
    misses reaches about 9."""
    shared_min_fraction: float = 0.5
    """A piece of one film's deposits that the other film of a pair lacks counts on the other
    film too (`imaging.paired.share_extent`) where that film shows at least this fraction of
    the first film's mean excess over the piece (the detector's half-maximum rule), in units
    of bone: read through the registered difference where it is read (the first film's
    excess plus the difference; a film's own background can take in a deposit its detector
    did not leave out of it), from the film's own excess over its background elsewhere..."""
    shared_min_own_fraction: float = 0.25
    """...where its own excess over its soft-tissue background is at least this fraction of
    the first film's: where only one film's background model makes tissue stand out, the
    films do not differ either, and that is no deposit to share (serial lower leg 8's
    baseline outlines 152 mm² of tissue at 0.10 of bone where the follow-up's own excess is
    0.08 of that and the difference is nil; shared, that pair read stable, truth -62 %)..."""
    shared_max_difference_z: float = 2.0
    """...and where the difference over the piece (`imaging.subtraction`: its mean
    significance times the square root of its independent samples) stays below this many SDs
    in the first film's favour: one test at a known place, as `found_again_min_rim_cnr`. In
    a scratch probe the pieces of 0.5 mm² or more shared on the seed-1 re-acquisitions of
    ``benchmarks/serial.py`` (2026-11-30) showed 0.50-1.24 of the other film's excess
    through the difference, 0.26-1.9 by their own excess, and differences of -1.6 to +0.6
    SDs; in the accuracy suites a hand's growing cloud (seed 9, set s00) shows 0.62 over its
    new rim, but a difference of -6.2 SDs, and another's (seed 2, set s00) -2.7.
    Sharing puts 22 instead of 14 of the 23 seed-1 re-acquisitions within ±10 %, 24 instead
    of 23 of the benchmark's serial pairs and 77 instead of 76 of the suites' 80 in the right
    category (with the film's own excess alone deciding the first test, 18 of 23, 23 and 79;
    the difference reads the faint deposits one film's background takes in, and also lets
    two faint changes of a few mm² in pairs whose burden the detector mostly misses pass as
    alike)."""
    max_unseen_fraction: float = 0.5
    """A deposit more than this fraction of which, brought onto the other film of a pair, lies
    where that film is not searched (its bone mask and the band beside it, beyond its field)
    is left out of the comparison (`imaging.paired.leave_out_unseen`): the other film cannot
    show whether it is there. On ``benchmarks/serial.py`` (2026-11-29) this puts 21 of 24
    pairs in the right category instead of 19 (and 73 of the accuracy suites' 80 serial pairs,
    seeds 0-9, instead of 68); the re-acquired films stay within ±10 % but for one of 3 mm²
    (10 of 11, 12 of 22 on ``--seed 1`` as before). Half is the a-priori "mostly"; 0.3 gave
    21 of 24 and 75 of 80, 0.7 gave 20 of 24 and 73 of 80 (10 of 11 re-acquisitions both)."""


@dataclass(frozen=True)
class AnalysisConfig:
    """All parameters of one analysis run, with documented defaults."""

    grid: GridConfig = field(default_factory=GridConfig)
    anatomy: AnatomyConfig = field(default_factory=AnatomyConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    regions: RegionConfig = field(default_factory=RegionConfig)
    burden: BurdenConfig = field(default_factory=BurdenConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    max_megapixels: float = 400.0
    """Films declaring more pixels are refused before decoding."""

    def to_dict(self) -> dict:
        """Plain nested dict of every parameter (for TOML, JSON and hashing)."""
        return dataclasses.asdict(self)

    @property
    def config_hash(self) -> str:
        """12 hex digits identifying these parameter values (recorded in every output row)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def config_from_dict(values: dict, *, source: str | None = None) -> AnalysisConfig:
    """Build a validated `AnalysisConfig` from a nested dict of overrides.

    Unknown sections or keys, wrong types and out-of-range values raise `ConfigError`
    naming the key.
    """
    return _build(AnalysisConfig, values or {}, source, "")


def load_config(path: str | os.PathLike | None) -> AnalysisConfig:
    """Read a TOML file of overrides (None gives the defaults)."""
    if path is None:
        return AnalysisConfig()
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(path, f"cannot read the configuration ({exc.strerror or exc})",
                          "check the path given to --config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"is not valid TOML ({exc})", "fix the syntax") from None
    return config_from_dict(values, source=path)


def _build(cls, values, source, prefix):
    if not isinstance(values, dict):
        raise ConfigError(source, f"[{prefix.rstrip('.')}] must be a table", "see `calcitrack "
                          "config --show` for the layout")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(source, f"unknown setting {prefix}{unknown[0]}",
                          f"known settings here: {', '.join(sorted(fields))}")
    default = cls()
    kwargs = {}
    for name, value in values.items():
        current = getattr(default, name)
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(current):
            kwargs[name] = _build(type(current), value, source, key + ".")
        else:
            kwargs[name] = _checked_value(key, value, current, source)
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(source, str(exc), "see `calcitrack config --show`") from None


def _checked_value(key, value, default, source):
    def bad(why):
        return ConfigError(source, f"{key} = {value!r} {why}",
                           f"give a value like the default ({default!r})")

    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or not value:
            raise bad("must be a non-empty list of numbers")
        # Order matters (resolution levels). Items are checked like the default's smallest,
        # which is 0 where 0 is allowed (no smoothing at the finest level).
        return tuple(_checked_value(key, v, min(default), source) for v in value)
    if isinstance(default, bool) or isinstance(value, bool):
        raise bad("has the wrong type")
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad("must be a string")
        return value
    if isinstance(default, int):
        if not (isinstance(value, int) and value > 0):
            raise bad("must be a positive whole number")
        return value
    if isinstance(default, float):
        if not isinstance(value, (int, float)):
            raise bad("must be a number")
        value = float(value)
        if default == 0:    # a setting whose default is 0 may be 0 (no smoothing)
            if not (math.isfinite(value) and value >= 0):
                raise bad("must be a finite number, 0 or more")
        elif not (math.isfinite(value) and value > 0):
            raise bad("must be a positive finite number")
        if (key.endswith("fraction") or key.endswith("overlap")) and value > 1:
            raise bad("must be between 0 and 1")
        return value
    raise bad("has an unsupported type")
