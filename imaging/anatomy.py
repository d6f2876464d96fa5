"""Anatomy on the analysis grid: body (soft tissue), bone, and what is not anatomy.

Not anatomy: air (including the scatter glow beside an electronic shutter), unexposed or
collimated borders and their edges, lead letters and markers, rulers and burned-in text
(bright islands in air), redaction bars (dark, outside the body), and metal (far denser than
bone).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.filters import threshold_multiotsu, threshold_otsu

from .config import AnatomyConfig
from .preprocess import AnalysisGrid, robust_sd, skin_depth_background, smooth_background

#: Body parts (DICOM Body Part Examined) filmed at the hand/forearm bone scale...
HAND_SCALE_PARTS = frozenset({"HAND", "FINGER", "WRIST", "FOREARM", "ARM", "ELBOW"})
#: ...those with the widest bone regions (`AnatomyConfig.bone_scale_pelvis_mm`)...
PELVIS_PARTS = frozenset({"HIP", "PELVIS"})
#: ...those of dental films, where the mandible and the teeth form a dense band as wide
#: (`AnatomyConfig.bone_scale_jaw_mm`)...
JAW_PARTS = frozenset({"JAW", "MANDIBLE", "MAXILLA", "TMJ", "TOOTH", "MOUTH"})
#: ...those of a long limb segment, whose bones are all wide (see
#: `AnatomyConfig.long_limb_min_island_width_mm`)...
LONG_LIMB_PARTS = frozenset({"LEG", "THIGH", "FEMUR", "TIBIA", "FIBULA"})
#: ...and those without bone, where no bone mask is sought (mammograms).
BONELESS_PARTS = frozenset({"BREAST"})
#: Anatomy masks are found on this coarser grid (mm), then brought to the analysis grid.
COARSE_SPACING_MM = 0.8
#: Cortex corners that an opening rounds off are given back up to this distance (mm).
BONE_CORNER_MM = 0.6
#: Smoothing scale (mm) of the air level, which the anode heel effect tilts across the film...
AIR_SURFACE_MM = 40.0
#: ...and, refitted to sure air only, the scale that follows the air between fingers (darker
#: than the open air beyond them, where scatter and the heel effect raise the level).
AIR_SURFACE_FINE_MM = 10.0
#: The skin tapers to nothing over about this width (mm), still above air.
SKIN_RIM_MM = 1.5
#: Soft tissue under the skin: this deep at most (mm)...
SKIN_LAYER_MM = 4.0
#: ...and at least this far (mm) from anything bright on the small (bone-marker) scale.
SKIN_LAYER_CLEARANCE_MM = 1.5
#: Dark strips narrower than this (mm) along the film's edges are plate borders, not a shutter.
SHUTTER_MIN_WIDTH_MM = 10.0
#: The blur of a shutter's edge (mm), where the glow level is not measured.
SHUTTER_EDGE_BLUR_MM = 1.6
#: Openings (mm) that leave the compact pieces of bone the refined outline lost, widest first.
SMALL_BONE_OPENINGS_MM = (1.5, 1.0)
#: The bone outline is refined within this many coarse pixels of its coarse outline (the
#: watershed on the coarse grid can put it more than one coarse pixel off the cortex).
BONE_REFINE_BAND = 2.5
#: Tiles (mm) of the soft-tissue level by depth below the skin that finds gaps inside the
#: bone mask (as the deposit background's, `imaging.deposits.contrast_to_noise`).
SOFT_TISSUE_TILE_MM = 32.0


@dataclass(frozen=True, eq=False)
class Anatomy:
    """Masks and intensity references of one film, on the analysis grid.

    Attributes
    ----------
    body : ndarray of bool
        The patient: soft tissue and bone (excluded regions may overlap it), without
        unexposed borders or objects in air.
    bone : ndarray of bool
        Whole bones including cortex, small bones and sesamoids.
    excluded : ndarray of bool
        Not anatomy, with a safety margin: unexposed borders, collimator edges, metal.
    soft_tissue_level : float
        Typical soft-tissue value, in film units.
    bone_level : float or None
        Typical bone excess over its surrounding soft tissue, in film units: the reference
        that makes contrasts comparable between films (None for films without bone).
    """

    body: np.ndarray
    bone: np.ndarray
    excluded: np.ndarray
    soft_tissue_level: float
    bone_level: float | None

    @property
    def soft_tissue(self) -> np.ndarray:
        """Where deposits may lie: body, not bone, not excluded."""
        return self.body & ~self.bone & ~self.excluded


def disk(diameter_px: float) -> np.ndarray:
    """Elliptical structuring element of the given diameter in pixels (at least 1)."""
    size = max(1, int(round(diameter_px)))
    size += 1 - size % 2
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def _part(body_part: str | None) -> str:
    """A Body Part Examined as the sets above spell it ("" when the film names none)."""
    return (body_part or "").upper()


def _padded_box(mask: np.ndarray, pad: int = 0) -> tuple[slice, slice] | None:
    """The bounding box of a mask's pixels, `pad` pixels wider on every side (clipped to the
    image), or None for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return (slice(max(rows[0] - pad, 0), rows[-1] + 1 + pad),
            slice(max(cols[0] - pad, 0), cols[-1] + 1 + pad))


def is_hand_film(body_part: str | None) -> bool:
    """Whether a film's Body Part Examined names a hand, wrist or forearm (`HAND_SCALE_PARTS`);
    films that name none are not."""
    return _part(body_part) in HAND_SCALE_PARTS


def bone_scale_mm(config: AnatomyConfig, body_part: str | None) -> float:
    """Widest bone expected across its shaft on a film of this body part (mm).

    Hand and forearm films, mammograms and films that do not name their body part use
    `bone_scale_mm`; hip and pelvis films `bone_scale_pelvis_mm`; dental films
    `bone_scale_jaw_mm`; large limbs, chest and the rest `bone_scale_limb_mm`.
    """
    part = _part(body_part)
    if not part or part in HAND_SCALE_PARTS | BONELESS_PARTS:
        return config.bone_scale_mm
    if part in PELVIS_PARTS:
        return config.bone_scale_pelvis_mm
    return config.bone_scale_jaw_mm if part in JAW_PARTS else config.bone_scale_limb_mm


def find_anatomy(grid: AnalysisGrid, config: AnatomyConfig,
                 body_part: str | None = None) -> Anatomy:
    """Segment body, bone and non-anatomical objects of a film on its analysis grid.

    Parameters
    ----------
    grid : AnalysisGrid
    config : AnatomyConfig
    body_part : str, optional
        The film's DICOM Body Part Examined: sets the bone scale (`bone_scale_mm`); no bone
        mask is sought on films of `BONELESS_PARTS`.
    """
    has_bone = _part(body_part) not in BONELESS_PARTS
    values = grid.values
    factor = max(1, int(round(COARSE_SPACING_MM / grid.spacing_mm)))
    coarse_mm = grid.spacing_mm * factor
    rows, cols = values.shape
    coarse = cv2.resize(values, (max(1, cols // factor), max(1, rows // factor)),
                        interpolation=cv2.INTER_AREA)

    bright, dark = _shutter_regions(coarse)
    unexposed = cv2.dilate(bright.astype(np.uint8),
                           disk(2 * config.collimator_margin_mm / coarse_mm + 1)).astype(bool)
    tissue = _tissue_mask(_without_shutter_glow(coarse, dark, ~unexposed & ~dark, coarse_mm),
                          ~unexposed,
                          (AIR_SURFACE_MM / coarse_mm, AIR_SURFACE_FINE_MM / coarse_mm),
                          SKIN_RIM_MM / coarse_mm, classes=3 if has_bone else 2) & ~dark
    body = _body_mask(tissue, config.body_min_width_mm / coarse_mm,
                      config.min_body_area_mm2 / coarse_mm ** 2,
                      config.max_body_hole_mm2 / coarse_mm ** 2)

    edge = max(1, int(round(config.film_edge_margin_mm / coarse_mm)))
    film_edge = np.ones_like(body)
    film_edge[edge:-edge, edge:-edge] = False
    bone = metal = np.zeros_like(body)
    bone_level = None
    soft = body
    if has_bone:
        scale_mm = bone_scale_mm(config, body_part)
        excess = _excess_over_soft_tissue(coarse, body, scale_mm / coarse_mm)
        bone_level = _bone_level(excess[body])
        soft = body & (excess < 0.25 * bone_level)
        metal = body & (excess > config.metal_contrast * bone_level)
        bone = _bone_by_watershed(coarse, body & ~metal, excess, bone_level, config, scale_mm,
                                  coarse_mm, air=~(body | unexposed | dark))
        bone = _drop_small_dense_islands(bone, config, coarse_mm,
                                         long_limb=_part(body_part) in LONG_LIMB_PARTS,
                                         field_edge=unexposed | dark | film_edge)
        glare = cv2.dilate((bright | dark).astype(np.uint8),
                           disk(2 * config.glare_mm / coarse_mm + 1)) > 0
        body = _drop_boneless_regions(body, bone, config.bone_min_area_mm2 / coarse_mm ** 2, glare)
    soft_level = float(np.median(coarse[soft])) if soft.any() else 0.0

    margin = disk(2 * config.border_margin_mm / coarse_mm + 1)
    excluded = (unexposed | film_edge
                | cv2.dilate(metal.astype(np.uint8), margin).astype(bool))
    if bright.any():
        # Objects as opaque as the collimator blades are lead (letters, markers) or metal.
        opaque = values >= float(np.percentile(coarse[bright], 5))
        opaque = cv2.dilate(opaque.astype(np.uint8),
                            disk(2 * grid.mm_to_px(config.border_margin_mm) + 1))
        excluded |= cv2.resize(opaque, (coarse.shape[1], coarse.shape[0]),
                               interpolation=cv2.INTER_AREA) > 0

    def up(mask):
        return cv2.resize(mask.astype(np.uint8), (cols, rows), interpolation=cv2.INTER_NEAREST) > 0

    band = coarse_mm / grid.spacing_mm
    # The skin line at a low iso-level, found the same way all along: the depth below the
    # skin, which the soft-tissue background follows, must not wobble with the coarse grid.
    body = _refine_edges(values, up(body), ~up(bright | dark), band, 0.2, grid.mm_to_px(0.5))
    excluded_fine = up(excluded)
    coarse_bone = bone
    bone = up(bone)
    if has_bone and bone.any():
        bone = _refine_edges(values, bone, body, BONE_REFINE_BAND * band, 0.5, grid.mm_to_px(0.2))
        if is_hand_film(body_part):
            # (Not on large limbs, where a stretch of the fibula is as thin and the
            # interosseous space detaches it from the tibia, nor on films of unknown anatomy.)
            bone = _without_detached_strips(values, bone, body, bone_level, grid.spacing_mm,
                                            config)
        # Joint spaces (1-2 mm gaps between bone ends) are not soft tissue; marrow and
        # cancellous bone enclosed by cortex are bone.
        bone = cv2.morphologyEx(bone.astype(np.uint8), cv2.MORPH_CLOSE,
                                disk(grid.mm_to_px(config.joint_space_mm))) > 0
        bone = fill_small_holes(bone, config.bone_max_hole_mm2 / grid.spacing_mm ** 2) & body
        # Dense deposits touching a bone (periarticular, sheets) join it in the watershed;
        # an opening at the narrowest bone width cuts such appendages off again.
        core = cv2.morphologyEx(bone.astype(np.uint8), cv2.MORPH_OPEN,
                                disk(grid.mm_to_px(config.bone_min_width_mm)))
        floor = cv2.resize(coarse - excess, (cols, rows), interpolation=cv2.INTER_LINEAR)
        core &= ~_domed_islands(core, values - floor, grid.spacing_mm, config)
        # A sheet the coarse mask joined to a bone by a neck narrower than the opening is an
        # island of the core now: too small or too thin to be a bone, it is given back.
        core = _drop_small_dense_islands(core > 0, config, grid.spacing_mm).astype(np.uint8)
        kept = (cv2.dilate(core, disk(grid.mm_to_px(2 * BONE_CORNER_MM) + 1)) > 0) & bone
        # A bone the field's edge cuts is as narrow as the cut leaves it: pieces within the
        # collimator margin of an excluded border stay bone.
        near_border = cv2.dilate(excluded.astype(np.uint8),
                                 disk(2 * config.collimator_margin_mm / coarse_mm + 1))
        lost = bone & ~kept
        cut = lost & up(near_border)
        bone = (kept | _pieces_holding(lost, cut)) if cut.any() else kept
        # A thin stretch of a long bone that the cut opened stays bone too.
        bone |= _bone_bridges(lost, kept, config.bridge_min_elongation)
        bone |= _small_bones_and_bone_ends(values, floor, up(coarse_bone) & body & ~excluded_fine,
                                           bone, bone_level, grid.spacing_mm, config)
    return Anatomy(body, bone, excluded_fine, soft_level, bone_level)


def _without_detached_strips(values: np.ndarray, bone: np.ndarray, body: np.ndarray,
                             bone_level: float, spacing_mm: float,
                             config: AnatomyConfig) -> np.ndarray:
    """The refined bone mask without the strips of calcium that soft tissue detaches from it.

    The coarse watershed cannot resolve the 1-2.5 mm of soft tissue between a bone and a
    strip-shaped deposit along it (a plate, a sheet), and the refinement keeps the inside of
    the coarse outline, gap and all. Gap pixels lie less than `soft_gap_fraction` of the bone
    reference above the soft tissue at their depth below the skin (learnt from the body
    outside the mask); a piece of the mask that they detach, narrower than the appendage
    cut (`bone_min_width_mm`) and smaller than a bone (`bone_min_area_mm2`), goes, with the
    gap within 3 mm of it.
    """
    # The work after the soft-tissue level is done on the mask's bounding box, with room for
    # the 3 mm reaches below (the refinement can leave nothing of a faint coarse bone).
    box = _padded_box(bone, int(np.ceil(3.0 / spacing_mm)) + 2)
    if box is None:
        return bone
    # The soft-tissue level is smooth: it is learnt (from the body more than 2 mm from the
    # mask, beyond the refinement band) and evaluated on a grid twice as coarse.
    rows, cols = values.shape
    half = (max(1, cols // 2), max(1, rows // 2))
    half_mm = spacing_mm * cols / half[0]
    half_body = cv2.resize(body.view(np.uint8), half, interpolation=cv2.INTER_NEAREST)
    half_bone = cv2.resize(bone.view(np.uint8), half, interpolation=cv2.INTER_NEAREST)
    near_bone = cv2.dilate(half_bone, disk(2 * 2.0 / half_mm + 1)) > 0
    depth_mm = cv2.distanceTransform(half_body, cv2.DIST_L2, 5) * half_mm
    soft_level = skin_depth_background(cv2.resize(values, half, interpolation=cv2.INTER_AREA),
                                       (half_body > 0) & ~near_bone, depth_mm,
                                       int(SOFT_TISSUE_TILE_MM / half_mm))
    soft_level = cv2.resize(soft_level, (cols, rows), interpolation=cv2.INTER_LINEAR)
    within = bone[box]
    smooth = cv2.GaussianBlur(values[box], (0, 0), max(0.2 / spacing_mm, 0.5))
    gaps = within & (smooth < soft_level[box] + config.soft_gap_fraction * bone_level)
    if not gaps.any():
        return bone
    rest = (within & ~gaps).astype(np.uint8)
    core = cv2.morphologyEx(rest, cv2.MORPH_OPEN, disk(config.bone_min_width_mm / spacing_mm))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(rest, connectivity=8)
    wide = np.zeros(count, bool)
    wide[labels[core > 0]] = True
    detached = np.zeros(count, bool)
    detached[labels[(cv2.dilate(gaps.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
                    & (rest > 0)]] = True
    strip = (detached & ~wide
             & (stats[:, cv2.CC_STAT_AREA] <= config.bone_min_area_mm2 / spacing_mm ** 2))
    strip[0] = False
    strips = strip[labels]
    if not strips.any():
        return bone
    around = cv2.distanceTransform((~strips).view(np.uint8), cv2.DIST_L2, 3) * spacing_mm <= 3.0
    result = bone.copy()
    result[box] = within & ~strips & ~(gaps & around)
    return result


def _bone_bridges(lost: np.ndarray, kept: np.ndarray, min_elongation: float) -> np.ndarray:
    """The pieces of `lost` that join two separate stretches of `kept` end to end.

    Where a thin long bone (the fibula) narrows below the appendage cut's width, the cut
    leaves a gap in it; that piece touches the kept bone at both ends and is elongated, while
    a deposit the cut took off a bone hangs on it along one stretch of its outline.
    """
    result = np.zeros_like(lost)
    touch = np.ones((3, 3), np.uint8)
    for box, piece in _outlined_pieces(lost, 1):
        contact = (cv2.dilate(piece.astype(np.uint8), touch) > 0) & kept[box]
        stretches, _ = cv2.connectedComponents(contact.astype(np.uint8), connectivity=8)
        if stretches - 1 >= 2 and _elongation(piece) >= min_elongation:
            result[box] |= piece
    return result


def _outlined_pieces(mask: np.ndarray, pad_px: int, min_box_px: float = 0):
    """Yield (box, piece) for each connected piece of `mask`, found from its outline: far
    faster than a label image on a whole film with few pieces. `box` is the piece's bounding
    box grown by `pad_px` (within the film), `piece` its mask there; pieces whose bounding box
    holds fewer than `min_box_px` pixels are passed over."""
    mask = mask.view(np.uint8) if mask.dtype == bool else mask
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if w * h < min_box_px:
            continue
        box = (slice(max(y - pad_px, 0), y + h + pad_px),
               slice(max(x - pad_px, 0), x + w + pad_px))
        piece = np.zeros(mask[box].shape, np.uint8)
        cv2.drawContours(piece, [contour], -1, 1, cv2.FILLED,
                         offset=(-box[1].start, -box[0].start))
        yield box, (piece > 0) & (mask[box] > 0)


def _pieces_holding(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The connected pieces of `mask` (8-connected) that hold a pixel of `seeds`."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    holding = np.zeros(count, bool)
    holding[np.unique(labels[seeds > 0])] = True
    holding[0] = False
    return holding[labels]


def _domed_islands(core: np.ndarray, excess: np.ndarray, spacing_mm: float,
                   config: AnatomyConfig) -> np.ndarray:
    """Small pieces of the bone core that are dense lumps, not bones (uint8 mask).

    A dense stone or cloud a narrow neck joined to a bone stands alone once the appendage
    cut has opened the neck. In projection such a lump is domed, densest at its centre; a
    small bone (a sesamoid, a tuft) has a cortex and is as dense at its edge as inside or
    more. A piece no larger than `small_bone_max_area_mm2` whose centre (what an erosion by
    a third of its half width leaves) exceeds its edge band by `dome_ratio` is a lump.
    """
    result = np.zeros_like(core)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(core, connectivity=8)
    max_area = config.small_bone_max_area_mm2 / spacing_mm ** 2
    for label in np.flatnonzero(stats[:, cv2.CC_STAT_AREA] <= max_area):
        if label == 0:
            continue
        x, y, w, h = stats[label, :4]
        box = (slice(y, y + h), slice(x, x + w))
        piece = labels[box] == label
        if _domed(piece, excess[box], config.dome_ratio):
            result[box][piece] = 1
    return result


def _domed(piece: np.ndarray, excess: np.ndarray, ratio: float) -> bool:
    """Whether a piece's centre (an erosion by a third of its half width) is `ratio` times
    denser than its edge band (its outer third)."""
    # A frame of background: a piece filling its box would have no distance to measure.
    piece = np.pad(piece.astype(np.uint8), 1)
    excess = np.pad(excess, 1, mode="edge")
    half_width = float(cv2.distanceTransform(piece, cv2.DIST_L2, 5).max())
    centre = cv2.erode(piece, disk(2 * half_width / 3 + 1)) > 0
    edge = (piece > 0) & ~(cv2.erode(piece, disk(4 * half_width / 3 + 1)) > 0)
    if centre.sum() < 3 or edge.sum() < 3:
        return False
    inner, outer = float(np.median(excess[centre])), float(np.median(excess[edge]))
    return outer > 0 and inner >= ratio * outer


def _small_bones_and_bone_ends(values: np.ndarray, floor: np.ndarray, coarse_bone: np.ndarray,
                               bone: np.ndarray, bone_level: float, spacing_mm: float,
                               config: AnatomyConfig) -> np.ndarray:
    """Bone that the outline refinement and the appendage cut dropped: sesamoids and tufts.

    A small bone beside a joint (a sesamoid) or the faint tuft at the end of a distal
    phalanx is part of the coarse bone, but fainter than the cortex that sets the refined
    outline's level, and a tuft is narrower than `bone_min_width_mm`. Each compact piece of
    the coarse bone the refined mask lost is outlined at half its own peak excess over the
    soft-tissue `floor` and given back when it is a bone: round to oval and solid, standing
    out from the tissue around it by a good part of the film's bone contrast, touching the
    kept bone along a small part of its outline at most (more is a fringe along a bone
    edge), with trabecular texture, which the smooth lumps and clouds of calcinosis lack,
    and not domed like a lump (`_domed`, `small_bone_max_dome_ratio`). Returns the pieces to
    add, on the analysis grid.
    """
    result = np.zeros_like(bone)
    # Fringes along every refined outline are thin: an opening leaves the compact pieces;
    # the narrower one then finds the smallest sesamoids close beside a joint.
    for opening_mm in SMALL_BONE_OPENINGS_MM:
        lost = (coarse_bone & ~bone & ~result).astype(np.uint8)
        lost = cv2.morphologyEx(lost, cv2.MORPH_OPEN, disk(opening_mm / spacing_mm))
        result |= _textured_pieces(values, floor, coarse_bone, bone, lost, bone_level, spacing_mm,
                                   config)
    return result


def _textured_pieces(values, floor, coarse_bone, bone, lost, bone_level, spacing_mm,
                     config: AnatomyConfig) -> np.ndarray:
    """The pieces of `lost` that pass the small-bone tests of `_small_bones_and_bone_ends`."""
    result = np.zeros_like(bone)
    min_area = config.small_bone_min_area_mm2 / spacing_mm ** 2
    max_area = config.small_bone_max_area_mm2 / spacing_mm ** 2
    ring_disk = disk(2 * 1.5 / spacing_mm + 1)
    edge_disk = disk(2 * 0.4 / spacing_mm + 1)
    for box, piece in _outlined_pieces(lost, int(round(3.0 / spacing_mm)), min_area):
        if piece.sum() < min_area:
            continue
        local = values[box]
        ex = cv2.GaussianBlur(local, (0, 0), max(0.2 / spacing_mm, 0.5)) - floor[box]
        # Fine texture: the residual from a 0.25 mm smoothing, trabeculae and quantum noise.
        residual = local - cv2.GaussianBlur(local, (0, 0), max(0.25 / spacing_mm, 0.5))
        peak = float(np.percentile(ex[piece], 95))
        if peak <= 0:
            continue
        lost_piece = piece
        piece = largest_component(piece & (ex >= 0.5 * peak))
        size = int(piece.sum())
        if (not min_area <= size <= max_area
                or _elongation(piece) > config.small_bone_max_elongation
                or _solidity(piece) < 0.85
                or _domed(_whole_lump(piece, lost_piece, ex, peak), ex,
                          config.small_bone_max_dome_ratio)):
            continue
        ring = ((cv2.dilate(piece.astype(np.uint8), ring_disk) > 0) & ~piece & ~coarse_bone[box]
                & ~bone[box])
        if ring.sum() < 10:
            continue
        contrast = (float(np.median(ex[piece])) - float(np.median(ex[ring]))) / bone_level
        # Texture away from the piece's own edge, inside and out.
        edge = cv2.dilate(_outline(piece), edge_disk) > 0
        texture = (_robust_sd(residual[piece & ~edge])
                   / max(_robust_sd(residual[ring & ~edge]), 1e-6))
        outline = _outline(piece) > 0
        touching = cv2.dilate(bone[box].astype(np.uint8), disk(3)) > 0
        contact = float((outline & touching).sum()) / max(int(outline.sum()), 1)
        if (contrast >= config.small_bone_min_contrast
                and texture >= config.small_bone_min_texture
                and contact <= config.small_bone_max_contact):
            result[box] |= piece
    return result


def _whole_lump(piece: np.ndarray, lost_piece: np.ndarray, excess: np.ndarray,
                peak: float) -> np.ndarray:
    """A piece (cut at half its peak, where a lump is flat-topped) taken down to a fifth of
    its peak, within its own width of it (the lost piece may hold a fringe along the bone)."""
    width = float(cv2.distanceTransform(piece.astype(np.uint8), cv2.DIST_L2, 5).max())
    around = cv2.dilate(piece.astype(np.uint8), disk(2 * width + 1)) > 0
    return largest_component(lost_piece & around & (excess >= 0.2 * peak))


def _outline(mask: np.ndarray) -> np.ndarray:
    """The mask's pixels next to its outside (uint8)."""
    mask = mask.astype(np.uint8)
    return mask - cv2.erode(mask, disk(3))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The mask's largest 8-connected piece (bool)."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return labels == 1 if count == 2 else mask
    return labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))


def _robust_sd(sample: np.ndarray) -> float:
    """`robust_sd`, or 0 for fewer than 10 values."""
    return robust_sd(sample) if sample.size >= 10 else 0.0


def _elongation(mask: np.ndarray) -> float:
    """Ratio of the long to the short axis of the mask's inertia ellipse."""
    moments = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    covariance = np.array([[moments["mu20"], moments["mu11"]],
                           [moments["mu11"], moments["mu02"]]]) / max(moments["m00"], 1.0)
    small, large = np.linalg.eigvalsh(covariance)
    return float(np.sqrt(large / max(small, 1e-6)))


def _solidity(mask: np.ndarray) -> float:
    """Pixel area over the area of the convex hull of the outline."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return 0.0
    hull = cv2.convexHull(np.concatenate(contours))
    return float(mask.sum()) / max(cv2.contourArea(hull), 1.0)


def _drop_boneless_regions(body: np.ndarray, bone: np.ndarray, min_bone_px: float,
                           glare: np.ndarray) -> np.ndarray:
    """Keep the body regions that hold a bone's worth of bone: on a film of a limb, a region
    without is collimator glare, a lead letter or a ruler in air, not the patient. Bright
    pixels in the `glare` zone beside an unexposed border do not count as bone."""
    count, labels = cv2.connectedComponents(body.astype(np.uint8), connectivity=8)
    bone_px = np.bincount(labels[bone & ~glare], minlength=count)
    keep = bone_px >= min_bone_px
    keep[0] = False
    return keep[labels]


def _refine_edges(values: np.ndarray, mask: np.ndarray, within: np.ndarray, band_px: float,
                  level: float, smoothing_px: float) -> np.ndarray:
    """Move a coarse outline onto an iso-level of its edge at full analysis resolution.

    Within a band around the coarse outline a pixel is inside when its (smoothed) value
    exceeds the local outside level by `level` times the local inside-outside step: 0.5
    puts the outline at the edge's mid-point, where its gradient peaks.
    """
    inner = cv2.erode(mask.astype(np.uint8), disk(2 * band_px + 1)) > 0
    outer = cv2.dilate(mask.astype(np.uint8), disk(2 * band_px + 1)) > 0
    # The two levels are smooth: estimate them on a grid `band_px` times coarser.
    rows, cols = values.shape
    small = (max(1, int(cols // band_px)), max(1, int(rows // band_px)))

    def shrink(image, interpolation=cv2.INTER_AREA):
        return cv2.resize(image.astype(np.float32), small, interpolation=interpolation)

    coarse_values = shrink(values)
    inside_level = smooth_background(coarse_values, shrink(inner) > 0.5, 3.0)
    outside_level = smooth_background(coarse_values, shrink(within & ~outer) > 0.5, 3.0)
    threshold = cv2.resize(outside_level + level * (inside_level - outside_level), (cols, rows),
                           interpolation=cv2.INTER_LINEAR)
    above = cv2.GaussianBlur(values, (0, 0), smoothing_px) > threshold
    return (inner | (outer & above)) & within


def fill_small_holes(mask: np.ndarray, max_area_px: float) -> np.ndarray:
    """Fill enclosed background regions of `mask` up to `max_area_px` pixels."""
    # Holes lie inside the mask's bounding box: label that box with a one-pixel frame of
    # background, which joins everything that reaches the box's edge (not enclosed).
    box = _padded_box(mask)
    if box is None:
        return mask.copy()
    holes = cv2.copyMakeBorder((~mask[box]).astype(np.uint8), 1, 1, 1, 1,
                               cv2.BORDER_CONSTANT, value=1)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(holes, connectivity=4)
    fill = stats[:, cv2.CC_STAT_AREA] <= max_area_px
    fill[0] = False
    fill[labels[0, 0]] = False
    result = mask.copy()
    result[box] |= fill[labels[1:-1, 1:-1]]
    return result


def _shutter_regions(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Large uniform regions at the film's maximum (unexposed) or minimum (electronic
    shutter) that touch its border. An unexposed corner left by a tilted collimator may be a
    thin sliver: it counts from a tenth of the area a shutter needs (1 % of the film)."""
    lo, hi = float(values.min()), float(values.max())
    spread = max(float(np.percentile(values, 99.9) - np.percentile(values, 0.1)), 1e-6)
    found = []
    for candidate, min_fraction in ((values >= hi - 0.03 * spread, 0.001),
                                    (values <= lo + 0.005 * spread, 0.01)):
        count, labels, stats, _ = cv2.connectedComponentsWithStats(candidate.astype(np.uint8),
                                                                   connectivity=8)
        region = np.zeros(values.shape, bool)
        rows, cols = values.shape
        for label in range(1, count):
            x, y, w, h, area = stats[label]
            touches = x == 0 or y == 0 or x + w == cols or y + h == rows
            if touches and area >= min_fraction * values.size:
                region |= labels == label
        found.append(region)
    return found[0], found[1]


def _without_shutter_glow(values: np.ndarray, shutter: np.ndarray, exposed: np.ndarray,
                          spacing_mm: float, air_quantile: float = 10.0) -> np.ndarray:
    """The film with the glow beside an electronic shutter removed.

    Scatter from the exposed field raises the air beside a shutter's edge, falling off with
    the distance from it over centimetres, far more steeply than the heel effect: at each
    distance the air is the darkest tenth of the exposed pixels, and that level, less its
    level far from the edge, is taken off. Films without a shutter are returned unchanged.
    """
    # Thin dark strips along the film's edges (plate borders) cast no glow.
    shutter = cv2.morphologyEx(shutter.astype(np.uint8), cv2.MORPH_OPEN,
                               disk(SHUTTER_MIN_WIDTH_MM / spacing_mm)) > 0
    if not shutter.any() or exposed.sum() < 100:
        return values
    distance = cv2.distanceTransform((~shutter).astype(np.uint8), cv2.DIST_L2, 5)
    step = np.minimum(distance.astype(np.int32), int(distance[exposed].max()))
    # The quantile of each distance step at once: sort by step, then value within it.
    at_step, sample = step[exposed], values[exposed]
    order = np.lexsort((sample, at_step))
    counts = np.bincount(at_step, minlength=int(step.max()) + 1)
    starts = np.cumsum(counts) - counts
    index = starts + ((counts - 1) * air_quantile / 100.0).astype(np.int64)
    levels = np.where(counts >= 20, sample[order][np.minimum(index, sample.size - 1)], np.nan)
    known = ~np.isnan(levels)
    if known.sum() < 2:
        return values
    levels = np.interp(np.arange(levels.size), np.flatnonzero(known), levels[known])
    # The glow only falls with the distance (tissue far from the edge may be the darkest
    # tenth somewhere: it must not raise the level there); the first pixels hold the
    # shutter's blurred edge.
    edge = min(int(round(SHUTTER_EDGE_BLUR_MM / spacing_mm)), levels.size - 1)
    levels[:edge] = levels[edge]
    levels = np.minimum.accumulate(levels)
    glow = (levels - levels[-1]).astype(np.float32)
    return np.where(exposed, values - glow[step], values).astype(np.float32)


def _tissue_mask(values: np.ndarray, exposed: np.ndarray, air_sigma_px: tuple[float, float],
                 skin_rim_px: float, classes: int = 3) -> np.ndarray:
    """The patient's tissue: separated from air along the skin line's steep edge.

    The air level is a smooth surface (the heel effect makes it vary) fitted to the darkest
    of `classes` intensity classes of exposed pixels (air, soft tissue, bone; 2 for films
    without bone), refitted without the pixels that stand clearly above it, at a
    coarse and then (from sure air) a fine scale `air_sigma_px`. Sure
    air lies within its noise of that surface, sure tissue well above it; between them
    (scatter glow near the skin, thin tissue) a watershed on the gradient puts the boundary
    on the steepest edge, which is the skin line.
    """
    from skimage.segmentation import watershed

    inside = values[exposed]
    if inside.size < 16 or np.ptp(inside) == 0:
        return np.zeros(values.shape, bool)
    # Air, soft tissue and bone: the lowest of the classes' thresholds. (Two classes split
    # the tissue instead when a limb fills most of the field and air is a thin strip.)
    air = exposed & (values <= float(threshold_multiotsu(inside, classes=classes)[0]))
    excess = np.zeros_like(values)
    center = spread = 0.0
    coarse_sigma, fine_sigma = air_sigma_px
    # Three fits on the coarse scale; then, from the sure air of the last one (faint finger
    # soft tissue lies within the coarse fit's spread), two on the fine scale.
    for sigma, keep in ((coarse_sigma, 4.0), (coarse_sigma, 4.0), (coarse_sigma, 1.0),
                        (fine_sigma, 4.0), (fine_sigma, 4.0)):
        if air.sum() < 16:
            return exposed.copy()
        excess = values - smooth_background(values, air, sigma)
        below = excess[air]
        center = float(np.median(below))
        spread = max(robust_sd(below), 1e-6)
        air = exposed & (excess < center + keep * spread)
    above = excess[exposed & (excess > center + 6.0 * spread)]
    if above.size == 0:
        return np.zeros(values.shape, bool)
    sure_tissue = exposed & (excess > max(center + 6.0 * spread, 0.3 * float(np.median(above))))
    markers = np.zeros(values.shape, np.int32)
    markers[~exposed | (excess < center + 3.0 * spread)] = 1
    markers[sure_tissue] = 2
    smooth = cv2.GaussianBlur(values, (0, 0), 1.0)
    gradient = cv2.magnitude(cv2.Sobel(smooth, cv2.CV_32F, 1, 0),
                             cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    tissue = (watershed(gradient, markers) == 2) & exposed
    # The skin line tapers to nothing: take in the thin rim still clearly above air.
    rim = cv2.dilate(tissue.astype(np.uint8), disk(2 * skin_rim_px + 1)) > 0
    return tissue | (rim & exposed & (excess > center + 4.0 * spread))


def _body_mask(tissue: np.ndarray, min_width_px: float, min_area_px: float,
               max_hole_px: float) -> np.ndarray:
    """The patient: tissue regions wide and large enough, with their small holes filled.

    Strips narrower than the body's minimum width (rulers, letters, glare) go even when
    attached to the patient; the skin line is then restored.
    """
    tissue = tissue.astype(np.uint8)
    core = cv2.morphologyEx(tissue, cv2.MORPH_OPEN, disk(min_width_px))
    mask = cv2.dilate(core, disk(min_width_px / 2)) & tissue
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area_px
    keep[0] = False
    # A large "hole" is air enclosed by the patient and the film's edges or shutters.
    return fill_small_holes(keep[labels], max_hole_px)


def _excess_over_soft_tissue(values: np.ndarray, body: np.ndarray, scale_px: float) -> np.ndarray:
    """Value above the local soft-tissue floor: a grey opening wider than the bones.

    Air is filled with the body's low values first, so that the skin line is no step.
    """
    if not body.any():
        return np.zeros_like(values)
    floor_value = float(np.percentile(values[body], 5))
    filled = np.where(body, values, floor_value).astype(np.float32)
    floor = cv2.morphologyEx(filled, cv2.MORPH_OPEN, disk(scale_px))
    floor = cv2.GaussianBlur(floor, (0, 0), max(scale_px / 6, 1))
    return np.where(body, filled - np.minimum(floor, filled), 0).astype(np.float32)


def _bone_by_watershed(values, body, excess, bone_level, config: AnatomyConfig, scale_mm,
                       spacing_mm, air=None):
    """Bones grown from sure-bone and sure-soft-tissue markers to the strongest edges.

    Sure bone: well above the soft-tissue floor at the small scale of a bone's width (or at
    the large scale), with what joins it above half that level, wide enough. Sure soft
    tissue: low above the floor at the small scale and clear of sure bone (the tissue
    between two long bones lies above the large scale's floor), or (given `air`) a layer
    under the skin low at the small scale and clear of anything bright. Between them the
    boundary follows the cortex edge (gradient maximum), wherever the thresholds fall.
    """
    from skimage.segmentation import watershed

    small = _excess_over_soft_tissue(values, body,
                                     scale_mm * config.bone_marker_fraction / spacing_mm)
    threshold = config.bone_contrast_fraction * bone_level
    # A finger narrower than the large opening stands above its floor, soft tissue and all.
    # Tissue under the skin that is low on the small scale and clear of anything bright on
    # it is soft tissue whatever the large scale says (a marker, not bone).
    low = small < 0.5 * threshold
    skin_layer = np.zeros_like(body)
    if air is not None:
        depth_mm = _depth_below_skin(~air) * spacing_mm
        clearance_mm = cv2.distanceTransform(low.astype(np.uint8), cv2.DIST_L2, 3) * spacing_mm
        skin_layer = (body & low & (depth_mm < SKIN_LAYER_MM)
                      & (clearance_mm >= SKIN_LAYER_CLEARANCE_MM))
    seeds = body & ((small > threshold) | (excess > threshold)) & ~skin_layer
    # A thin long bone (the fibula) is a tube: its two cortices pass the threshold, each
    # narrower than a bone, its middle only half of it. Sure bone grows from the seeds over
    # half the threshold and must then be a bone's width.
    grown = seeds | (body & (small > 0.5 * threshold) & ~skin_layer)
    grown = cv2.morphologyEx(grown.astype(np.uint8), cv2.MORPH_OPEN,
                             disk(config.bone_min_width_mm / spacing_mm))
    sure_bone = _pieces_holding(grown, seeds)
    # Soft-tissue markers close to every bone, so that the flood never bridges two bones (or
    # a bone and a dense deposit) through the soft tissue between them.
    near_bone = cv2.dilate(sure_bone.astype(np.uint8), disk(2.0 / spacing_mm + 1)).astype(bool)
    sure_soft = body & ((~near_bone & low) | skin_layer)
    markers = np.zeros(values.shape, np.int32)
    markers[~body] = 1
    markers[sure_soft] = 1
    markers[sure_bone] = 2
    smooth = cv2.GaussianBlur(values, (0, 0), max(0.6 / spacing_mm, 0.5))
    gradient = cv2.magnitude(cv2.Sobel(smooth, cv2.CV_32F, 1, 0),
                             cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    return (watershed(gradient, markers) == 2) & body


def _depth_below_skin(not_air: np.ndarray) -> np.ndarray:
    """Distance (pixels) from air; everything continues beyond the film's edges."""
    padded = cv2.copyMakeBorder(not_air.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    return cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]


def _drop_small_dense_islands(bone: np.ndarray, config: AnatomyConfig, spacing_mm: float, *,
                              long_limb: bool = False, field_edge: np.ndarray | None = None):
    """Keep bones; give back dense islands too small or too thin to be one (deposits).

    Bones, even the smallest (a sesamoid beside its metacarpal head, a distal phalanx
    beside its joint), belong to large connected skeletal regions once joint spaces are
    bridged; an isolated island is a bone only when it is both large and wide. On a
    `long_limb` film it must be wider still (`long_limb_min_island_*`) unless it touches
    `field_edge` (a bone the collimation cuts is as narrow as the cut leaves it).
    """
    # The mask's bounding box with room for the closing and a frame of background beyond it
    # holds every island whole (same result as the whole film, at a fraction of the cost).
    closing = disk(config.joint_space_mm / spacing_mm)
    box = _padded_box(bone, closing.shape[0] + 2)
    if box is None:
        return bone.copy()
    bridged = cv2.morphologyEx(bone[box].astype(np.uint8), cv2.MORPH_CLOSE, closing)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(bridged, connectivity=8)
    width_mm = 2 * cv2.distanceTransform(bridged, cv2.DIST_L2, 5) * spacing_mm

    def as_wide_as(limit_mm):
        """Which islands are at least `limit_mm` wide (hold a point half that from their
        edge)."""
        return np.bincount(labels[width_mm >= limit_mm], minlength=count) > 0

    area_mm2 = stats[:, cv2.CC_STAT_AREA] * spacing_mm ** 2
    keep = (area_mm2 >= config.bone_min_area_mm2) & as_wide_as(config.bone_min_island_width_mm)
    if long_limb:
        sheet = (~as_wide_as(config.long_limb_min_island_width_mm)
                 & (area_mm2 < config.long_limb_min_island_area_mm2))
        if field_edge is not None:
            # Touching: within one pixel of the field's edge.
            touching = cv2.dilate(field_edge[box].astype(np.uint8), disk(3)) > 0
            sheet &= np.bincount(labels[touching], minlength=count) == 0
        keep &= ~sheet
    keep[0] = False
    result = np.zeros_like(bone)
    result[box] = bone[box] & keep[labels]
    return result


def _bone_level(excess: np.ndarray) -> float:
    """Typical excess of bone over soft tissue: the median of the upper Otsu class."""
    if excess.size < 16 or np.ptp(excess) <= 0:
        return 1.0
    threshold = float(threshold_otsu(excess))
    upper = excess[excess > threshold]
    return float(np.median(upper)) if upper.size else max(threshold, 1e-6)
