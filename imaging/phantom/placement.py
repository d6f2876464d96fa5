"""Where deposits go: in soft tissue, outside bone, apart from each other and from artefacts.

Placement works on a `Canvas`: the film grid and its masks (body, bone, exposed field,
lead/metal), which a phantom scene provides and which a caller provides for a real film.
Every candidate deposit is drawn on the film grid and checked there, so the rules hold for
the pixels, not just for the shapes:

- inside the body, at least `SKIN_MARGIN_MM` from the skin outline;
- outside bone by at least `BONE_MARGIN_MM`, except periarticular deposits, which are cut
  by the bone outline (touching it, never inside it);
- at least `EDGE_MARGIN_MM` from the collimated edge and from lead or metal;
- at least `GAP_MM` from every other deposit.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import cv2
import numpy as np

from .anatomy import Anatomy, AnatomyKind
from .morphology import SIZE_RANGE_MM, DepositShape, make_shape, thickness_on
from .shapes import FilmGrid

SKIN_MARGIN_MM = 0.5
BONE_MARGIN_MM = 0.5
EDGE_MARGIN_MM = 3.0
GAP_MM = 1.5


@dataclass(frozen=True, eq=False)
class Canvas:
    """A film grid and the masks that say where deposits may go.

    Attributes
    ----------
    grid : FilmGrid
    body_mask, bone_mask, field_mask, object_mask : ndarray of bool
        Soft tissue or bone; bone; exposed field; lead markers and metal.
    blur_px : float
        Detector blur (Gaussian sigma) in pixels.
    anatomy : Anatomy or None
        The phantom's anatomy (joints, digits, regions); None for a real film.
    """

    grid: FilmGrid
    body_mask: np.ndarray
    bone_mask: np.ndarray
    field_mask: np.ndarray
    object_mask: np.ndarray
    blur_px: float
    anatomy: Anatomy | None = None

    def _distance_mm(self, inside: np.ndarray) -> np.ndarray:
        return cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 5) * np.float32(
            self.grid.spacing_mm)

    @cached_property
    def skin_distance_mm(self) -> np.ndarray:
        """Distance to the nearest pixel outside the body (0 outside)."""
        return self._distance_mm(self.body_mask)

    @cached_property
    def bone_distance_mm(self) -> np.ndarray:
        """Distance to the nearest bone pixel."""
        return self._distance_mm(~self.bone_mask)

    @cached_property
    def edge_distance_mm(self) -> np.ndarray:
        """Distance to the collimated edge or to lead and metal."""
        return self._distance_mm(self.field_mask & ~self.object_mask)

    @property
    def soft_tissue(self) -> np.ndarray:
        return self.body_mask & ~self.bone_mask & self.field_mask & ~self.object_mask


def check_fit(canvas: Canvas, shape: DepositShape, occupied: np.ndarray | None = None
              ) -> tuple[slice, slice] | None:
    """The shape's film box if the shape obeys the placement rules on `canvas`, else None."""
    grid = canvas.grid
    box = grid.box_of(shape.bounds(), margin_px=1)
    if box is None:
        return None
    t = thickness_on(grid, shape, box)
    support = t > 0
    if support.sum() == 0:
        return None
    bone = canvas.bone_mask[box]
    outside = support & ~bone
    if not outside.any():
        return None
    if shape.periarticular:
        if outside.sum() < 0.5 * support.sum():
            return None
        touching = cv2.dilate(outside.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        if not (touching & bone).any():
            return None
    elif canvas.bone_distance_mm[box][support].min() < BONE_MARGIN_MM:
        return None
    if canvas.skin_distance_mm[box][outside].min() < SKIN_MARGIN_MM:
        return None
    if canvas.edge_distance_mm[box][outside].min() < EDGE_MARGIN_MM:
        return None
    if occupied is not None and occupied[box][support].any():
        return None
    # every component must reach at least one pixel outside bone
    for i in range(len(shape.components)):
        if len(shape.components) > 1 and not (thickness_on(grid, shape, box, i)[~bone] > 0).any():
            return None
    return box


def mark_occupied(canvas: Canvas, shape: DepositShape, box, occupied: np.ndarray,
                  gap_mm: float = GAP_MM) -> None:
    """Reserve the shape's pixels and a `gap_mm` rim around them in `occupied` (in place)."""
    grid = canvas.grid
    reach = int(math.ceil(gap_mm / grid.spacing_mm)) + 1
    big = (slice(max(box[0].start - reach, 0), box[0].stop + reach),
           slice(max(box[1].start - reach, 0), box[1].stop + reach))
    support = thickness_on(grid, shape, big) > 0
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    occupied[big] |= cv2.dilate(support.astype(np.uint8), kernel) > 0


class _Pool:
    """A random sample of soft-tissue pixels with their clearances, to draw locations from."""

    def __init__(self, canvas: Canvas, rng: np.random.Generator, size: int = 40000):
        rows, cols = np.nonzero(canvas.soft_tissue)
        if rows.size > size:
            pick = rng.choice(rows.size, size=size, replace=False)
            pick.sort()
            rows, cols = rows[pick], cols[pick]
        self.rows, self.cols = rows, cols
        self.bone = canvas.bone_distance_mm[rows, cols]
        self.skin = canvas.skin_distance_mm[rows, cols]
        self.edge = canvas.edge_distance_mm[rows, cols]
        x, y = canvas.grid.to_patient(rows, cols)
        self.x, self.y = x, y
        self.weight = np.ones(rows.size)
        if canvas.anatomy is not None and canvas.anatomy.kind is AnatomyKind.HAND:
            region = canvas.anatomy.region_at(x, y)
            self.weight = np.where(region < 5, 2.5, 1.0)   # calcinosis favours the fingers

    def draw(self, rng, clearance_mm: float, bone_clearance_mm: float):
        ok = ((self.skin >= clearance_mm) & (self.bone >= bone_clearance_mm)
              & (self.edge >= clearance_mm + EDGE_MARGIN_MM))
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            return None
        w = self.weight[idx]
        i = int(rng.choice(idx, p=w / w.sum()))
        return float(self.x[i]), float(self.y[i])


def place_deposits(
    canvas: Canvas,
    rng: np.random.Generator,
    n: int,
    morphologies: tuple[str, ...],
    size_range_mm: tuple[float, float],
    *,
    occupied: np.ndarray | None = None,
    accept: Callable[[DepositShape], bool] | None = None,
    first_track_id: int = 1,
    growth: float = 1.0,
    attempts: int = 60,
) -> list[DepositShape]:
    """Choose `n` deposits (unscaled shapes) that obey the placement rules.

    Parameters
    ----------
    canvas : Canvas
    rng : numpy.random.Generator
    n : int
        How many deposits to place; fewer are returned only when no room is left.
    morphologies : tuple of str
        Morphologies to draw from (uniformly).
    size_range_mm : (float, float)
        Bounds on the largest dimension.
    occupied : ndarray of bool, optional
        Pixels already taken (updated in place when given).
    accept : callable, optional
        Extra rule a shape must pass (e.g. staying in the field on every visit of a series).
    first_track_id : int
        Track id of the first deposit placed.
    growth : float
        Room to leave for the deposit to grow by this linear factor later (serial films).
    attempts : int
        Candidates tried per deposit before giving up on it.
    """
    if occupied is None:
        occupied = np.zeros(canvas.grid.shape, dtype=bool)
    pool = _Pool(canvas, rng)
    shapes = []
    for i in range(n):
        morphology = str(rng.choice(morphologies))
        lo, hi = SIZE_RANGE_MM[morphology]
        lo, hi = max(lo, size_range_mm[0]), min(hi, size_range_mm[1])
        if lo > hi:
            lo = hi = min(max(size_range_mm[0], SIZE_RANGE_MM[morphology][0]), size_range_mm[1])
        size = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        for attempt in range(attempts):
            if attempt and attempt % 8 == 0:
                size = max(lo, size * 0.8)
            shape = _candidate(canvas, pool, rng, morphology, size)
            if shape is None or not shape.components:
                continue
            box = check_fit(canvas, shape, occupied)
            if box is None:
                continue
            grown = shape.resized(growth) if growth != 1.0 else shape
            if growth != 1.0:
                box = check_fit(canvas, grown, occupied)
                if box is None:
                    continue
            if accept is not None and not accept(shape):
                continue
            mark_occupied(canvas, grown, box, occupied)
            shapes.append(_with_track(shape, first_track_id + len(shapes)))
            break
    return shapes


def _with_track(shape: DepositShape, track_id: int) -> DepositShape:
    return dataclasses.replace(shape, track_id=track_id)


def _candidate(canvas: Canvas, pool: _Pool, rng, morphology: str, size: float
               ) -> DepositShape | None:
    anatomy = canvas.anatomy
    if morphology == "periarticular":
        return _periarticular(canvas, rng, size, pool)
    if morphology == "acral" and anatomy is not None and anatomy.kind is AnatomyKind.HAND:
        digit = anatomy.digits[int(rng.integers(len(anatomy.digits)))]
        ux, uy = digit.direction
        along = float(rng.uniform(-7.0, -1.0))
        lateral = float(rng.uniform(-0.55, 0.55)) * digit.radius_mm
        centre = (digit.tip[0] + along * ux - lateral * uy, digit.tip[1] + along * uy +
                  lateral * ux)
        return make_shape("acral", rng, centre, size, digit.direction)
    elongated = morphology in ("plate", "universalis")
    clearance = (2.0 if elongated else size / 2) + SKIN_MARGIN_MM
    bone_clearance = (2.0 if elongated else size / 2) + BONE_MARGIN_MM
    centre = pool.draw(rng, clearance, bone_clearance)
    if centre is None:
        return None
    if anatomy is not None:
        axis = anatomy.axis_at(*centre)
    else:
        angle = float(rng.uniform(0, math.pi))
        axis = (math.cos(angle), math.sin(angle))
    return make_shape(morphology, rng, centre, size, axis)


def _periarticular(canvas: Canvas, rng, size: float, pool: _Pool) -> DepositShape | None:
    anatomy = canvas.anatomy
    if anatomy is None or not anatomy.joints:
        return _beside_bone(canvas, rng, size, pool)
    joint = anatomy.joints[int(rng.integers(len(anatomy.joints)))]
    ax, ay = joint.axis
    norm = math.hypot(ax, ay) or 1.0
    ax, ay = ax / norm, ay / norm
    delta = float(rng.uniform(1.5, 5.0))
    if rng.random() < 0.5:
        anchor = (joint.proximal_end[0] - delta * ax, joint.proximal_end[1] - delta * ay)
    else:
        anchor = (joint.distal_start[0] + delta * ax, joint.distal_start[1] + delta * ay)
    side = 1.0 if rng.random() < 0.5 else -1.0
    normal = (-ay * side, ax * side)
    grid = canvas.grid
    row, col = grid.to_film(anchor[0], anchor[1])
    drow, dcol = grid.direction_to_film(*normal)
    step = 0.5
    r, c = float(row), float(col)
    inside = False
    for _ in range(int(60.0 / (grid.spacing_mm * step))):
        ri, ci = int(round(r)), int(round(c))
        if not (0 <= ri < grid.shape[0] and 0 <= ci < grid.shape[1]):
            return None
        if canvas.bone_mask[ri, ci]:
            inside = True
        elif inside:
            break
        elif not inside:
            return None      # the anchor is not in bone: this joint side is not usable here
        r += drow * step
        c += dcol * step
    else:
        return None
    x, y = grid.to_patient(r, c)
    return make_shape("periarticular", rng, (float(x), float(y)), size, (ax, ay),
                      normal=normal, joint=joint.name)


def _beside_bone(canvas: Canvas, rng, size: float, pool: _Pool) -> DepositShape | None:
    """A periarticular deposit on a film without anatomy: against any bone outline."""
    near = np.flatnonzero((pool.bone > 0) & (pool.bone <= 1.0) & (pool.skin >= size / 2))
    if near.size == 0:
        return None
    i = int(rng.choice(near))
    row, col = int(pool.rows[i]), int(pool.cols[i])
    grid = canvas.grid
    dist = canvas.bone_distance_mm
    r0, r1 = max(row - 1, 0), min(row + 2, grid.shape[0])
    c0, c1 = max(col - 1, 0), min(col + 2, grid.shape[1])
    patch = dist[r0:r1, c0:c1]
    if patch.shape != (3, 3):
        return None
    grow_r = float(patch[2, 1] - patch[0, 1])
    grow_c = float(patch[1, 2] - patch[1, 0])
    norm = math.hypot(grow_r, grow_c)
    if norm == 0:
        return None
    drow, dcol = grow_r / norm, grow_c / norm
    back = float(pool.bone[i]) / grid.spacing_mm
    x, y = grid.to_patient(row - drow * back, col - dcol * back)
    x1, y1 = grid.to_patient(row, col)
    nx, ny = float(x1 - x), float(y1 - y)
    n = math.hypot(nx, ny) or 1.0
    return make_shape("periarticular", rng, (float(x), float(y)), size, (-ny / n, nx / n),
                      normal=(nx / n, ny / n), joint="bone outline")
