"""Region maps: automatic anatomical zones of a film, or a study's own polygons.

Automatic regions (names as in the phantom truth, `imaging.phantom.anatomy.REGIONS`):

- **Hand PA**: ``digit1`` .. ``digit5`` (thumb = digit1), ``palm`` and ``wrist``, plus a
  *fingertip* zone (beyond the DIP joint, or the thumb's IP joint) inside each digit. The
  digits are the narrow protrusions of the body outline (what an opening at
  `RegionConfig.finger_max_width_mm` removes), numbered from the thumb, which is the digit
  standing furthest apart from its neighbours. Along each digit's axis, the joint spaces are
  the narrow dips of the film's values inside bone; counted from the tip, the third one
  (the thumb's second) is the MCP joint, where the digit zone starts. A digit zone covers
  what lies distal of the MCP joint and within the digit's half width plus `digit_margin_mm`
  of its axis (the nearest digit wins). The palm ends proximally at the metacarpal bases,
  estimated at `metacarpal_ratio` of the MCP-to-tip length proximal of each MCP joint
  (averaged over digits 2-5) on a line across the hand axis; beyond it lies the ``wrist``.
- **Forearm, leg and other long limbs**: ``proximal`` / ``middle`` / ``distal`` thirds along
  the limb's principal axis, over the length of the film's field along that axis. The
  proximal end is the wider one (elbow and calf are wider than wrist and ankle) unless
  `RegionConfig.distal_end` says otherwise. Joint spaces are narrow dips of the film
  values along the limb axis inside bone.
- **Anything else** (or a hand whose five digits cannot be told apart): one region ``all``.

The body part comes from the film's Body Part Examined; without one it is recognised from
the outline (five digit protrusions: a hand; an elongated body: a limb; else ``all``).

User regions come from a GeoJSON FeatureCollection (see `read_user_regions`); they replace
the automatic ones, and body pixels outside every polygon form the region ``unassigned``.

The region label image lives on the **analysis grid** (`DepositFindings.grid`, 0.2 mm),
like the anatomy masks; `RegionMap.at_source` looks regions up at source pixel positions.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage

from .config import RegionConfig
from .deposits import DepositFindings, DepositSearch
from .errors import CalcitrackError
from .radiograph import Radiograph

HAND_REGIONS = ("digit1", "digit2", "digit3", "digit4", "digit5", "palm", "wrist")
LIMB_REGIONS = ("proximal", "middle", "distal")
WHOLE_FILM = "all"
UNASSIGNED = "unassigned"

#: Body Part Examined values (upper case) filmed as a hand, or as a long limb.
HAND_PARTS = frozenset({"HAND"})
LIMB_PARTS = frozenset({"FOREARM", "ARM", "UPPER_ARM", "UPPERARM", "HUMERUS", "LEG", "LOWER_LEG",
                        "LOWERLEG", "TIBIA", "FIBULA", "THIGH", "FEMUR", "EXTREMITY"})

#: The geometry is worked out on this coarser grid (mm); it needs no finer detail.
GEOMETRY_SPACING_MM = 1.0


class RegionError(CalcitrackError):
    """A user region file is invalid or does not fit the film."""


_GEOJSON_HELP = ("give a GeoJSON FeatureCollection of Polygon features, each with a unique "
                 "properties.name (see imaging.regions.read_user_regions)")


@dataclass(frozen=True, eq=False)
class RegionMap:
    """The regions of one film, on the analysis grid.

    Attributes
    ----------
    names : tuple of str
        Region names; label ``i`` (1-based) of `labels` is ``names[i - 1]``.
    labels : ndarray of int16
        Region label per analysis-grid pixel, 0 outside the body.
    fingertip : ndarray of bool
        The fingertip zones (distal phalanges) of a hand; all False otherwise.
    joint_distance_mm : ndarray of float32 or None
        Distance (mm) of each analysis pixel to the nearest joint space; None when no joint
        space was found.
    kind : {"hand", "limb", "all", "user"}
    spacing_mm : float
        The analysis grid spacing.
    source_shape : (int, int)
        Rows and columns of the source film.
    notes : tuple of str
        How the regions were found, and anything that went wrong.
    """

    names: tuple[str, ...]
    labels: np.ndarray
    fingertip: np.ndarray
    joint_distance_mm: np.ndarray | None
    kind: str
    spacing_mm: float
    source_shape: tuple[int, int]
    notes: tuple[str, ...] = ()

    def _to_grid(self, rows, cols):
        scale_r = self.labels.shape[0] / self.source_shape[0]
        scale_c = self.labels.shape[1] / self.source_shape[1]
        r = np.clip(((np.asarray(rows, float) + 0.5) * scale_r).astype(int), 0,
                    self.labels.shape[0] - 1)
        c = np.clip(((np.asarray(cols, float) + 0.5) * scale_c).astype(int), 0,
                    self.labels.shape[1] - 1)
        return r, c

    def at_source(self, rows, cols) -> np.ndarray:
        """Region names at source pixel positions (``unassigned`` outside every region)."""
        r, c = self._to_grid(rows, cols)
        lookup = np.array((UNASSIGNED,) + self.names, dtype=object)
        return lookup[self.labels[r, c]]

    def fingertip_at_source(self, rows, cols) -> np.ndarray:
        r, c = self._to_grid(rows, cols)
        return self.fingertip[r, c]


# --- entry point ---------------------------------------------------------------------------

def region_map(radiograph: Radiograph, findings: DepositFindings | DepositSearch,
               config: RegionConfig | None = None, user_regions: UserRegions | None = None
               ) -> RegionMap:
    """Regions of a film: user polygons when given, else automatic anatomical zones.

    Parameters
    ----------
    radiograph : Radiograph
    findings : DepositFindings or DepositSearch
        The detector's result, or its search alone (its body and bone masks and analysis
        grid are used).
    config : RegionConfig, optional
    user_regions : UserRegions, optional
        From `read_user_regions`; replace the automatic regions.

    Returns
    -------
    RegionMap
        Label image on the analysis grid (see the module docstring).
    """
    config = config or RegionConfig()
    grid, anatomy = findings.grid, findings.anatomy
    body = anatomy.body
    joints = _joint_distance(grid, anatomy, config, None)
    if user_regions is not None:
        labels = user_regions.rasterize(radiograph, grid.values.shape)
        names = user_regions.names
        inside_body_unassigned = body & (labels == 0)
        if inside_body_unassigned.any():
            names = names + (UNASSIGNED,)
            labels = labels.copy()
            labels[inside_body_unassigned] = len(names)
        return RegionMap(names, labels, np.zeros_like(body), joints, "user", grid.spacing_mm,
                         grid.source_shape, (f"user regions from {user_regions.source}",))
    part = (radiograph.metadata.body_part or "").upper().replace(" ", "_")
    notes = []
    if part in HAND_PARTS or not part:
        hand = _hand_regions(grid, anatomy, config)
        if hand is not None:
            labels, fingertip, joint_segments, note = hand
            joints = _joint_distance(grid, anatomy, config, joint_segments)
            return RegionMap(HAND_REGIONS, labels, fingertip, joints, "hand", grid.spacing_mm,
                             grid.source_shape, tuple(notes + [note]))
        if part:
            notes.append("hand film, but five digits could not be told apart: one region 'all'")
    if part in LIMB_PARTS or (not part and _elongation(body) >= config.limb_min_elongation):
        limb = _limb_regions(grid, anatomy, config)
        if limb is not None:
            labels, note = limb
            return RegionMap(LIMB_REGIONS, labels, np.zeros_like(body), joints, "limb",
                             grid.spacing_mm, grid.source_shape, tuple(notes + [note]))
    labels = np.ones(body.shape, np.int16)     # the whole film
    if not notes:
        notes.append(f"body part {part or 'not recognised'}: one region 'all'")
    return RegionMap((WHOLE_FILM,), labels, np.zeros_like(body), joints, "all", grid.spacing_mm,
                     grid.source_shape, tuple(notes))


# --- hand ----------------------------------------------------------------------------------

@dataclass
class _Digit:
    tip: np.ndarray           # (row, col) on the geometry grid
    base: np.ndarray
    direction: np.ndarray     # unit, base -> tip
    half_width: float         # geometry pixels
    gaps: list = field(default_factory=list)   # distances (geometry px) from the tip
    mcp: np.ndarray | None = None


def _coarse(mask: np.ndarray, factor: int) -> np.ndarray:
    rows, cols = mask.shape
    return cv2.resize(mask.astype(np.uint8), (max(1, cols // factor), max(1, rows // factor)),
                      interpolation=cv2.INTER_AREA) > 0


def _hand_regions(grid, anatomy, config: RegionConfig):
    """Digits, palm and wrist; None when five digits are not found."""
    factor = max(1, int(round(GEOMETRY_SPACING_MM / grid.spacing_mm)))
    mm = grid.spacing_mm * factor
    body = ndimage.binary_fill_holes(_coarse(anatomy.body, factor))
    if not body.any():
        return None
    depth = cv2.distanceTransform(body.astype(np.uint8), cv2.DIST_L2, 5)
    radius = config.finger_max_width_mm / 2 / mm
    core = depth > radius
    if not core.any():
        return None
    opened = cv2.distanceTransform((~core).astype(np.uint8), cv2.DIST_L2, 5) <= radius
    protrusions = body & ~(cv2.dilate(opened.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
    count, comp = cv2.connectedComponents(protrusions.astype(np.uint8), connectivity=8)
    palm_centre = np.array(np.unravel_index(np.argmax(np.where(core, depth, 0)), depth.shape),
                           float)
    digits = []
    for k in range(1, count):
        rr, cc = np.nonzero(comp == k)
        points = np.stack([rr, cc], 1).astype(float)
        if len(points) < 10:
            continue
        centre = points.mean(0)
        _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
        axis = vt[0]
        if np.dot(centre - palm_centre, axis) < 0:
            axis = -axis
        along = (points - centre) @ axis
        length = along.max() - along.min()
        if length * mm < config.finger_min_length_mm:
            continue
        # A protrusion that touches the film's edge is the forearm running off the film.
        if (rr.min() == 0 or cc.min() == 0 or rr.max() == body.shape[0] - 1
                or cc.max() == body.shape[1] - 1):
            continue
        tip = centre + along.max() * axis
        base = centre + along.min() * axis
        samples = centre + np.linspace(along.min(), along.max(), 20)[:, None] * axis
        half = float(np.median(_sample(depth, samples)))
        digits.append(_Digit(tip, base, axis, half))
    if len(digits) != 5:
        return None
    digits = _number_digits(digits, palm_centre)
    if digits is None:
        return None
    # MCP joints from the joint spaces along each digit (analysis grid values).
    scale = factor
    missing = []
    for number, digit in enumerate(digits, start=1):
        needed = 2 if number == 1 else 3
        length = np.linalg.norm(digit.tip - digit.base)
        gaps = _joint_gaps(grid, anatomy, digit.tip * scale, digit.direction,
                           (length * 1.6) * scale, config)
        digit.gaps = [g / scale for g in gaps]
        if len(digit.gaps) >= needed:
            digit.mcp = digit.tip - digit.gaps[needed - 1] * digit.direction
        else:
            missing.append(number)
            # Fallback: the MCP joint lies about a fifth of the digit length proximal of the web.
            digit.mcp = digit.base - 0.2 * length * digit.direction
    hand_axis = np.mean([d.tip for d in digits[1:]], 0) - palm_centre
    hand_axis /= np.linalg.norm(hand_axis)
    bases = [d.mcp - config.metacarpal_ratio * np.linalg.norm(d.tip - d.mcp) * hand_axis
             for d in digits[1:]]
    wrist_level = float(np.mean([b @ hand_axis for b in bases]))

    rows, cols = anatomy.body.shape
    # Geometry in analysis-grid pixel coordinates from here on.
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    yy = (yy + 0.5) / scale - 0.5
    xx = (xx + 0.5) / scale - 0.5
    labels = np.where(yy * hand_axis[0] + xx * hand_axis[1] >= wrist_level, 6, 7).astype(np.int16)
    best = np.full((rows, cols), np.inf, np.float32)
    fingertip = np.zeros((rows, cols), bool)
    segments = []
    for number, digit in enumerate(digits, start=1):
        u = digit.direction.astype(np.float32)
        along = (yy - digit.mcp[0]) * u[0] + (xx - digit.mcp[1]) * u[1]
        span = float(np.linalg.norm(digit.tip - digit.mcp))
        t = np.clip(along, 0, span)
        dist = np.hypot(yy - (digit.mcp[0] + t * u[0]), xx - (digit.mcp[1] + t * u[1]))
        inside = ((along >= 0) & (dist <= digit.half_width + config.digit_margin_mm / mm)
                  & (dist < best))
        labels[inside] = number
        best[inside] = dist[inside]
        distal = digit.gaps[0] if digit.gaps else 0.25 * span
        tip_start = span - distal
        fingertip &= ~inside
        fingertip |= inside & (along > tip_start)
        for gap in digit.gaps[: (2 if number == 1 else 3)]:
            centre = digit.tip - gap * digit.direction
            normal = np.array([-u[1], u[0]])
            segments.append((centre - digit.half_width * normal,
                             centre + digit.half_width * normal))
    labels[~anatomy.body] = 0
    fingertip &= anatomy.body
    segments = [(a * scale, b * scale) for a, b in segments]
    note = "hand: five digits found"
    if missing:
        note += f"; MCP joint estimated (joint spaces not found) for digit(s) {missing}"
    return labels, fingertip, segments, note


def _number_digits(digits, palm_centre):
    """Order digits around the palm; the thumb is the end digit furthest from its neighbour."""
    angles = np.array([math.atan2(*(d.tip - palm_centre)) for d in digits])
    order = np.argsort(angles)
    angles = angles[order]
    # The digits span less than a half turn: unwrap around the widest empty sector.
    gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * math.pi]))
    start = (int(np.argmax(gaps)) + 1) % len(digits)
    order = np.roll(order, -start)
    ordered = [digits[i] for i in order]
    # Thumb: whichever end has the larger angle to its neighbour.
    def angle_between(a, b):
        va, vb = a.tip - palm_centre, b.tip - palm_centre
        return math.acos(np.clip(va @ vb / np.linalg.norm(va) / np.linalg.norm(vb), -1, 1))
    if angle_between(ordered[-1], ordered[-2]) > angle_between(ordered[0], ordered[1]):
        ordered = ordered[::-1]
    return ordered


def _sample(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    r = np.clip(np.round(points[:, 0]).astype(int), 0, image.shape[0] - 1)
    c = np.clip(np.round(points[:, 1]).astype(int), 0, image.shape[1] - 1)
    return image[r, c]


def _profile(values: np.ndarray, start: np.ndarray, direction: np.ndarray, length_px: float,
             half_width_px: float) -> np.ndarray:
    """Values along a line from `start` in `direction` (1-pixel steps), median across a band."""
    steps = np.arange(int(length_px))
    normal = np.array([-direction[1], direction[0]])
    offsets = np.arange(-half_width_px, half_width_px + 1)
    pts = start[None, None, :] + steps[:, None, None] * direction[None, None, :] \
        + offsets[None, :, None] * normal[None, None, :]
    map_r = pts[..., 0].astype(np.float32)
    map_c = pts[..., 1].astype(np.float32)
    sampled = cv2.remap(values, map_c, map_r, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.median(sampled, axis=1)


def _joint_gaps(grid, anatomy, tip, direction, length_px, config) -> list[float]:
    """Distances (analysis px) from `tip` of the joint spaces met along `direction` (backwards)."""
    bone_level = anatomy.bone_level or 0.0
    if bone_level <= 0:
        return []
    profile = _profile(grid.values, tip, -direction, length_px, grid.mm_to_px(1.0))
    return _dips(profile, grid, bone_level, config)


def _dips(profile: np.ndarray, grid, bone_level: float, config: RegionConfig) -> list[float]:
    """Positions of narrow deep dips between two brighter stretches (joint spaces)."""
    width = max(3, int(round(grid.mm_to_px(config.joint_max_width_mm))))
    smooth = ndimage.gaussian_filter1d(profile.astype(np.float64), grid.mm_to_px(0.2))
    closed = ndimage.grey_closing(smooth, size=width)
    tophat = closed - smooth
    deep = tophat > config.joint_dip_fraction * bone_level
    found = []
    spans, count = ndimage.label(deep)
    for index, piece in enumerate(ndimage.find_objects(spans), start=1):
        lo, hi = piece[0].start, piece[0].stop
        if lo == 0 or hi >= len(smooth):
            continue
        found.append(float(lo + np.argmax(tophat[lo:hi])))
    return found


# --- limbs ---------------------------------------------------------------------------------

def _principal_axis(mask: np.ndarray):
    rr, cc = np.nonzero(mask)
    points = np.stack([rr, cc], 1).astype(float)
    centre = points.mean(0)
    _, s, vt = np.linalg.svd(points - centre, full_matrices=False)
    return centre, vt[0], s


def _elongation(body: np.ndarray) -> float:
    if body.sum() < 100:
        return 0.0
    small = _coarse(body, 4)
    if small.sum() < 10:
        return 0.0
    _, _, s = _principal_axis(small)
    return float(s[0] / max(s[1], 1e-6))


def _limb_regions(grid, anatomy, config: RegionConfig):
    body = anatomy.body
    if not body.any():
        return None
    centre, axis, _ = _principal_axis(_coarse(body, 4))
    rows, cols = body.shape
    axis = axis / np.linalg.norm(axis)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    along = yy * axis[0] + xx * axis[1]
    # The limb runs on under the collimator: thirds of the film's extent along the axis.
    corners = np.array([[0, 0], [0, cols], [rows, 0], [rows, cols]], float) @ axis
    field_lo, field_hi = corners.min(), corners.max()
    lo, hi = field_lo, field_hi
    third = np.clip(((along - lo) / (hi - lo) * 3).astype(np.int16), 0, 2)
    distal_low = _distal_at_low_end(body, along, lo, hi, axis, config.distal_end)
    # names: proximal=1, middle=2, distal=3
    labels = (third + 1) if not distal_low else (3 - third)
    labels = np.where(body, labels, 0).astype(np.int16)
    note = "limb: thirds along the limb axis, distal end " + (
        "at the start" if distal_low else "at the end") + f" ({config.distal_end})"
    return labels, note


def _distal_at_low_end(body, along, lo, hi, axis, distal_end: str) -> bool:
    """True when the distal end of the limb lies at low values of `along`."""
    if distal_end != "auto":
        vertical = abs(axis[0]) >= abs(axis[1])
        sign = axis[0] if vertical else axis[1]
        low_is = (("top" if sign > 0 else "bottom") if vertical
                  else ("left" if sign > 0 else "right"))
        return distal_end == low_is
    span = hi - lo
    low_band = body & (along < lo + 0.2 * span)
    high_band = body & (along > hi - 0.2 * span)
    # Mean width across the axis per unit length: area over the band length.
    return low_band.sum() < high_band.sum()


# --- joint spaces --------------------------------------------------------------------------

def _joint_distance(grid, anatomy, config, segments) -> np.ndarray | None:
    """Distance (mm) to the nearest joint space: given segments (hand) or narrow dips of the
    values inside bone along the limb's axis (rows or columns, whichever is closer)."""
    joints = np.zeros(anatomy.body.shape, np.uint8)
    if segments:
        for a, b in segments:
            cv2.line(joints, (int(round(a[1])), int(round(a[0]))),
                     (int(round(b[1])), int(round(b[0]))), 1, max(1, int(grid.mm_to_px(0.6))))
    elif anatomy.bone.any() and anatomy.bone_level:
        _, axis, _ = _principal_axis(_coarse(anatomy.body, 4)) if anatomy.body.sum() > 100 else (
            None, np.array([1.0, 0.0]), None)
        values = cv2.GaussianBlur(grid.values, (0, 0), grid.mm_to_px(0.2))
        width = max(3, int(round(grid.mm_to_px(config.joint_max_width_mm))))
        kernel = np.ones((width, 1) if abs(axis[0]) >= abs(axis[1]) else (1, width), np.uint8)
        tophat = cv2.morphologyEx(values, cv2.MORPH_BLACKHAT, kernel)
        dips = (tophat > config.joint_dip_fraction * anatomy.bone_level) & anatomy.bone
        # A joint space runs across the bone: keep dips at least a few mm long.
        dips = cv2.morphologyEx(dips.astype(np.uint8), cv2.MORPH_OPEN,
                                np.ones((1, max(1, int(grid.mm_to_px(3.0)))) if kernel.shape[0] > 1
                                        else (max(1, int(grid.mm_to_px(3.0))), 1), np.uint8))
        joints = dips.astype(np.uint8)
    if not joints.any():
        return None
    return (cv2.distanceTransform((joints == 0).astype(np.uint8), cv2.DIST_L2, 5)
            * grid.spacing_mm).astype(np.float32)


# --- user regions --------------------------------------------------------------------------

@dataclass(frozen=True)
class UserRegions:
    """Named polygons from a GeoJSON file.

    Attributes
    ----------
    names : tuple of str
    polygons : tuple of tuple of ndarray
        Per region, its rings as (n, 2) arrays of (x, y): x along columns, y along rows.
        A Polygon's first ring is its outline, later rings are holes; a MultiPolygon
        gives several outline/hole groups (stored as a tuple of such polygons).
    units : {"pixel", "mm"}
    source : str
    """

    names: tuple[str, ...]
    polygons: tuple[tuple[tuple[np.ndarray, ...], ...], ...]
    units: str
    source: str

    def fingerprint(self) -> str:
        """16 hex digits identifying the names, units and coordinates (not the file name)."""
        digest = hashlib.sha256(f"{self.units}|{'|'.join(self.names)}".encode())
        for polygon_group in self.polygons:
            for polygon in polygon_group:
                for ring in polygon:
                    digest.update(np.ascontiguousarray(ring, dtype=np.float64).tobytes())
        return digest.hexdigest()[:16]

    def rasterize(self, radiograph: Radiograph, shape: tuple[int, int]) -> np.ndarray:
        """Region labels (1-based, file order; the first listed wins where polygons overlap)
        on a grid of `shape` covering the film.

        Raises
        ------
        RegionError
            mm coordinates on an uncalibrated film, or a polygon outside the film.
        """
        rows, cols = radiograph.shape
        if self.units == "mm":
            if radiograph.spacing_mm is None:
                raise RegionError(self.source, f"regions are in mm but the film "
                                  f"{radiograph.source_path} has no pixel spacing",
                                  "give the regions in pixels (\"units\": \"pixel\") or "
                                  "calibrate the film (--spacing-mm)")
            to_px = np.array([1.0 / radiograph.spacing_mm[1], 1.0 / radiograph.spacing_mm[0]])
        else:
            to_px = np.array([1.0, 1.0])
        scale = np.array([shape[1] / cols, shape[0] / rows])
        labels = np.zeros(shape, np.int16)
        tolerance = 1.0
        for index in range(len(self.names), 0, -1):      # the first listed is drawn last
            mask = np.zeros(shape, np.uint8)
            for polygon in self.polygons[index - 1]:
                for ring_index, ring in enumerate(polygon):
                    px = ring * to_px
                    if (px[:, 0].min() < -0.5 - tolerance or px[:, 1].min() < -0.5 - tolerance
                            or px[:, 0].max() > cols - 0.5 + tolerance
                            or px[:, 1].max() > rows - 0.5 + tolerance):
                        raise RegionError(
                            self.source, f"region {self.names[index - 1]!r} reaches outside the "
                            f"film {radiograph.source_path} ({cols} x {rows} pixels; x = column, "
                            f"y = row{', in mm' if self.units == 'mm' else ''})",
                            "check the coordinates and their \"units\"")
                    grid_pts = np.round(((px + 0.5) * scale - 0.5) * 16).astype(np.int32)
                    cv2.fillPoly(mask, [grid_pts], 0 if ring_index else 1, shift=4)
            labels[mask > 0] = index
        return labels


def read_user_regions(path: str | os.PathLike, *, units: str | None = None) -> UserRegions:
    """Read a study's scoring zones from a GeoJSON file.

    The file is a FeatureCollection; each Feature has a Polygon or MultiPolygon geometry and
    a unique non-empty ``properties.name`` (not ``all`` or ``unassigned``). Coordinates are
    ``[x, y]`` with x along the columns and y along the rows of the source film, the centre
    of the top-left pixel at (0, 0). A top-level member ``"units"`` says whether they are in
    source pixels (``"pixel"``, the default) or in mm from the same origin (``"mm"``: needs
    a calibrated film). Rings must be closed (first position repeated last, RFC 7946);
    rings after a polygon's first are holes. Where polygons overlap, the first listed wins.

    Parameters
    ----------
    path : path
    units : {"pixel", "mm"}, optional
        Overrides the file's ``units``.

    Raises
    ------
    RegionError
        With the file name, the offending feature and the remedy.
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as handle:
            document = json.load(handle)
    except OSError as error:
        raise RegionError(source, f"cannot read the region file ({error.strerror})",
                          "check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RegionError(source, f"not valid JSON ({error})", _GEOJSON_HELP) from None
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise RegionError(source, "no GeoJSON FeatureCollection at the top level", _GEOJSON_HELP)
    units = units or document.get("units", "pixel")
    if units in ("px", "pixels"):
        units = "pixel"
    if units not in ("pixel", "mm"):
        raise RegionError(source, f"unknown units {units!r}", 'set "units" to "pixel" or "mm"')
    features = document.get("features")
    if not isinstance(features, list) or not features:
        raise RegionError(source, "the FeatureCollection has no features",
                          "add one Polygon feature per region")
    names, polygons = [], []
    for number, feature in enumerate(features, start=1):
        where = f"feature {number}"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise RegionError(source, f"{where} is not a GeoJSON Feature", _GEOJSON_HELP)
        name = (feature.get("properties") or {}).get("name")
        if not isinstance(name, str) or not name.strip():
            raise RegionError(source, f"{where} has no name; set properties.name to the region's "
                              "name", _GEOJSON_HELP)
        name = name.strip()
        if name in (WHOLE_FILM, UNASSIGNED):
            raise RegionError(source, f"{where}: the name {name!r} is reserved; choose another",
                              _GEOJSON_HELP)
        if name in names:
            raise RegionError(source, f"{where}: region name {name!r} is used twice; names must "
                              "be unique", _GEOJSON_HELP)
        geometry = feature.get("geometry") or {}
        kind = geometry.get("type")
        coordinates = geometry.get("coordinates")
        if kind == "Polygon":
            groups = [coordinates]
        elif kind == "MultiPolygon":
            groups = coordinates if isinstance(coordinates, list) else None
        else:
            raise RegionError(source, f"{where} ({name!r}) has geometry {kind!r}; only Polygon and "
                              "MultiPolygon regions are supported", _GEOJSON_HELP)
        if not groups:
            raise RegionError(source, f"{where} ({name!r}) has no coordinates", _GEOJSON_HELP)
        parsed = []
        for group in groups:
            rings = []
            if not isinstance(group, list) or not group:
                raise RegionError(source, f"{where} ({name!r}): a polygon needs at least one ring",
                                  _GEOJSON_HELP)
            for ring in group:
                try:
                    array = np.asarray(ring, dtype=float)
                except (TypeError, ValueError):
                    raise RegionError(source, f"{where} ({name!r}): coordinates must be [x, y] "
                                      "numbers", _GEOJSON_HELP) from None
                if array.ndim != 2 or array.shape[1] != 2 or not np.isfinite(array).all():
                    raise RegionError(source, f"{where} ({name!r}): coordinates must be [x, y] "
                                      "numbers", _GEOJSON_HELP)
                if len(array) < 4 or not np.array_equal(array[0], array[-1]):
                    raise RegionError(source, f"{where} ({name!r}): each ring needs at least 4 "
                                      "positions and must be closed (repeat the first "
                                      "position last)", _GEOJSON_HELP)
                rings.append(array[:-1])
            parsed.append(tuple(rings))
        names.append(name)
        polygons.append(tuple(parsed))
    return UserRegions(tuple(names), tuple(polygons), units, source)
