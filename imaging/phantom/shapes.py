"""Geometric primitives of the phantom, defined in patient millimetres and drawn on a film grid.

Everything physical in a phantom (bones, soft tissue, deposits, metal) is an analytic shape in
*patient space*: millimetres, x to the patient's image-left-to-right, y towards the film's
bottom row, origin near the middle of the field. A `FilmGrid` maps patient space onto the
pixels of one film through a similarity `Pose` (rotation, shift, scale) and an optional mirror
for a left limb, so the same patient can be filmed again in another position and the truth
stays exact: shapes are evaluated at each film pixel's centre, never resampled.

Each primitive returns *projected thickness* in mm (the length of the ray through it), which
the acquisition model turns into attenuation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pose:
    """How the patient lies on the detector for one film.

    Attributes
    ----------
    rotation_deg : float
        In-plane rotation about the field centre (positive = clockwise as displayed).
    shift_mm : (float, float)
        (down, right) translation of the patient on the film, in mm.
    scale : float
        Geometric magnification relative to the reference film (1.0 = same).
    """

    rotation_deg: float = 0.0
    shift_mm: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0

    def __post_init__(self):
        if not (math.isfinite(self.rotation_deg) and abs(self.rotation_deg) <= 45):
            raise ValueError(f"rotation_deg must be within ±45°, got {self.rotation_deg}")
        if not 0.5 <= self.scale <= 2.0:
            raise ValueError(f"scale must be between 0.5 and 2, got {self.scale}")
        object.__setattr__(self, "shift_mm", tuple(float(s) for s in self.shift_mm))


@dataclass(frozen=True)
class FilmGrid:
    """The pixel grid of one film and its mapping from patient space.

    Attributes
    ----------
    shape : (int, int)
        (rows, cols).
    spacing_mm : float
        Isotropic pixel spacing.
    pose : Pose
    mirror : bool
        True for a left limb (patient x is negated before posing).
    """

    shape: tuple[int, int]
    spacing_mm: float
    pose: Pose = Pose()
    mirror: bool = False

    @property
    def _matrix(self) -> np.ndarray:
        """2x2 matrix taking patient (x, y) to film-centred (x, y) mm."""
        theta = math.radians(self.pose.rotation_deg)
        c, s = math.cos(theta), math.sin(theta)
        m = self.pose.scale * np.array([[c, -s], [s, c]])
        if self.mirror:
            m = m @ np.array([[-1.0, 0.0], [0.0, 1.0]])
        return m

    @property
    def extent_mm(self) -> tuple[float, float]:
        """(height, width) of the film in mm."""
        return self.shape[0] * self.spacing_mm, self.shape[1] * self.spacing_mm

    def to_film(self, x, y):
        """Patient (x, y) mm → film (row, col) in fractional pixels (pixel centres are integers)."""
        (a, b), (c, d) = self._matrix.tolist()
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        fx = a * x + b * y + self.pose.shift_mm[1]
        fy = c * x + d * y + self.pose.shift_mm[0]
        height, width = self.extent_mm
        col = (fx + width / 2) / self.spacing_mm - 0.5
        row = (fy + height / 2) / self.spacing_mm - 0.5
        return row, col

    def to_patient(self, row, col):
        """Film (row, col) pixels → patient (x, y) mm (float32 in, float32 out)."""
        height, width = self.extent_mm
        (a, b), (c, d) = self._matrix.tolist()
        det = a * d - b * c
        row = np.asarray(row)
        col = np.asarray(col)
        if row.dtype != np.float32:
            row = row.astype(float)
        if col.dtype != np.float32:
            col = col.astype(float)
        fx = (col + 0.5) * self.spacing_mm - (width / 2 + self.pose.shift_mm[1])
        fy = (row + 0.5) * self.spacing_mm - (height / 2 + self.pose.shift_mm[0])
        return (d * fx - b * fy) / det, (a * fy - c * fx) / det

    def direction_to_film(self, dx: float, dy: float) -> tuple[float, float]:
        """A patient-space direction as a unit (drow, dcol) film direction."""
        m = self._matrix
        fx, fy = m[0, 0] * dx + m[0, 1] * dy, m[1, 0] * dx + m[1, 1] * dy
        norm = math.hypot(fx, fy) or 1.0
        return fy / norm, fx / norm

    def patient_patch(self, box: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        """Patient (x, y) mm of every pixel centre in a film box, as float32 arrays."""
        rows = np.arange(box[0].start, box[0].stop, dtype=np.float64)[:, None]
        cols = np.arange(box[1].start, box[1].stop, dtype=np.float64)[None, :]
        x, y = self.to_patient(rows, cols)
        return x.astype(np.float32), y.astype(np.float32)

    def box_of(self, bounds: tuple[float, float, float, float], margin_px: int = 1
               ) -> tuple[slice, slice] | None:
        """Film box covering patient bounds (xmin, xmax, ymin, ymax), clipped; None if off-film."""
        xmin, xmax, ymin, ymax = bounds
        rows, cols = self.to_film([xmin, xmax, xmin, xmax], [ymin, ymin, ymax, ymax])
        r0 = max(int(math.floor(rows.min())) - margin_px, 0)
        r1 = min(int(math.ceil(rows.max())) + margin_px + 1, self.shape[0])
        c0 = max(int(math.floor(cols.min())) - margin_px, 0)
        c1 = min(int(math.ceil(cols.max())) + margin_px + 1, self.shape[1])
        if r0 >= r1 or c0 >= c1:
            return None
        return slice(r0, r1), slice(c0, c1)


# --- primitives ---------------------------------------------------------------------------

#: Samples of the lookup table that evaluates piecewise-linear profiles (error < 0.001 mm).
_PROFILE_SAMPLES = 4096


def _profile(knots: tuple[tuple[float, float], ...], u: np.ndarray) -> np.ndarray:
    """Piecewise-linear profile through `knots` at fractions `u` in [0, 1] (a lookup table)."""
    knots_u = np.array([k[0] for k in knots], dtype=np.float64)
    knots_v = np.array([k[1] for k in knots], dtype=np.float64)
    table = np.interp(np.linspace(0.0, 1.0, _PROFILE_SAMPLES + 1), knots_u,
                      knots_v).astype(np.float32)
    index = np.clip(np.asarray(u, dtype=np.float32), 0.0, 1.0) * np.float32(_PROFILE_SAMPLES)
    return table[(index + np.float32(0.5)).astype(np.int32)]


@dataclass(frozen=True)
class Rod:
    """A solid of revolution about the segment start → end (a bone, a finger, a limb, a wire).

    The radius varies along the axis by `radius_knots` ((fraction along, radius mm) pairs) and
    closes with an elliptical cap of length `cap_start_mm` / `cap_end_mm` at each end. The
    cross-section may be flattened: projected thickness is multiplied by `depth_ratio`.
    """

    start: tuple[float, float]
    end: tuple[float, float]
    radius_knots: tuple[tuple[float, float], ...]
    cap_start_mm: float = 0.0
    cap_end_mm: float = 0.0
    depth_ratio: float = 1.0

    @property
    def length_mm(self) -> float:
        return math.dist(self.start, self.end)

    @property
    def axis(self) -> tuple[float, float]:
        length = self.length_mm or 1.0
        return ((self.end[0] - self.start[0]) / length, (self.end[1] - self.start[1]) / length)

    def point_at(self, fraction: float) -> tuple[float, float]:
        """Patient point at `fraction` of the way from start to end."""
        return (self.start[0] + fraction * (self.end[0] - self.start[0]),
                self.start[1] + fraction * (self.end[1] - self.start[1]))

    def radius_at(self, fraction: float) -> float:
        return float(_profile(self.radius_knots, np.array([fraction]))[0])

    def bounds(self) -> tuple[float, float, float, float]:
        r = max(k[1] for k in self.radius_knots)
        xs, ys = (self.start[0], self.end[0]), (self.start[1], self.end[1])
        return min(xs) - r, max(xs) + r, min(ys) - r, max(ys) + r

    def coordinates(self, x: np.ndarray, y: np.ndarray):
        """(fraction along the axis, distance from the axis mm, capped outer radius mm)."""
        length = self.length_mm
        ax, ay = self.axis
        dx, dy = x - self.start[0], y - self.start[1]
        s = dx * ax + dy * ay
        d = np.abs(dx * ay - dy * ax)
        u = s / length
        radius = _profile(self.radius_knots, np.clip(u, 0.0, 1.0))
        factor = np.ones_like(radius)
        if self.cap_start_mm > 0:
            t = np.clip(1.0 - s / self.cap_start_mm, 0.0, 1.0)
            factor *= np.sqrt(np.clip(1.0 - t * t, 0.0, 1.0))
        if self.cap_end_mm > 0:
            t = np.clip(1.0 - (length - s) / self.cap_end_mm, 0.0, 1.0)
            factor *= np.sqrt(np.clip(1.0 - t * t, 0.0, 1.0))
        radius = np.where((s < 0) | (s > length), 0.0, radius * factor).astype(np.float32)
        return u.astype(np.float32), d.astype(np.float32), radius

    def chord(self, distance: np.ndarray, radius: np.ndarray) -> np.ndarray:
        """Projected thickness (mm) through a circle of `radius` at `distance` from its centre."""
        return (2.0 * self.depth_ratio) * np.sqrt(np.clip(radius * radius - distance * distance,
                                                          0.0, None))


@dataclass(frozen=True)
class Blob:
    """An elliptical lump: ``dome`` (hard edge, like a stone) or ``gauss`` (soft, like mousse).

    Thickness at the centre is `weight` mm per unit deposit scale. A gauss blob falls to zero
    at twice its semi-axes.
    """

    centre: tuple[float, float]
    semi_axes_mm: tuple[float, float]
    angle_deg: float = 0.0
    profile: str = "dome"
    weight: float = 1.0

    @property
    def reach(self) -> float:
        return 2.0 if self.profile == "gauss" else 1.0

    def bounds(self) -> tuple[float, float, float, float]:
        r = max(self.semi_axes_mm) * self.reach
        return self.centre[0] - r, self.centre[0] + r, self.centre[1] - r, self.centre[1] + r

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        theta = math.radians(self.angle_deg)
        c, s = math.cos(theta), math.sin(theta)
        dx, dy = x - self.centre[0], y - self.centre[1]
        a, b = self.semi_axes_mm
        q = ((dx * c + dy * s) / a) ** 2 + ((-dx * s + dy * c) / b) ** 2
        if self.profile == "dome":
            return self.weight * np.sqrt(np.clip(1.0 - q, 0.0, None))
        floor = math.exp(-8.0)
        return self.weight * np.clip((np.exp(-2.0 * q) - floor) / (1.0 - floor), 0.0, None)


@dataclass(frozen=True)
class Strip:
    """A band along a polyline: a plate or sheet seen in projection.

    ``dome`` bands have a lens-shaped cross-section (a plate seen edge-on); ``flat`` bands are
    uniform with a soft edge of `edge_mm` (a sheet seen en face).
    """

    points: tuple[tuple[float, float], ...]
    half_width_mm: float
    profile: str = "dome"
    weight: float = 1.0
    edge_mm: float = 0.4

    def bounds(self) -> tuple[float, float, float, float]:
        pts = np.array(self.points)
        r = self.half_width_mm + self.edge_mm
        return pts[:, 0].min() - r, pts[:, 0].max() + r, pts[:, 1].min() - r, pts[:, 1].max() + r

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        dist = polyline_distance(self.points, x, y)
        w = self.half_width_mm
        if self.profile == "dome":
            return self.weight * np.sqrt(np.clip(1.0 - (dist / w) ** 2, 0.0, None))
        return self.weight * np.clip((w - dist) / self.edge_mm + 0.5, 0.0, 1.0)


def polyline_distance(points, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Distance (mm) from each (x, y) to the polyline through `points`."""
    best = None
    pts = [tuple(map(float, p)) for p in points]
    if len(pts) == 1:
        return np.hypot(x - pts[0][0], y - pts[0][1]).astype(np.float32)
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        vx, vy = x1 - x0, y1 - y0
        length2 = vx * vx + vy * vy or 1e-12
        t = np.clip(((x - x0) * vx + (y - y0) * vy) / length2, 0.0, 1.0)
        d = np.hypot(x - (x0 + t * vx), y - (y0 + t * vy))
        best = d if best is None else np.minimum(best, d)
    return best.astype(np.float32)


def union_bounds(bounds_list) -> tuple[float, float, float, float]:
    """Smallest bounds covering all of `bounds_list`."""
    b = np.array(list(bounds_list), dtype=float)
    return b[:, 0].min(), b[:, 1].max(), b[:, 2].min(), b[:, 3].max()


def expand_box(box: tuple[slice, slice], margin: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    """Grow a film box by `margin` pixels on every side, clipped to the film."""
    return (slice(max(box[0].start - margin, 0), min(box[0].stop + margin, shape[0])),
            slice(max(box[1].start - margin, 0), min(box[1].stop + margin, shape[1])))
