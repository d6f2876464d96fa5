"""Calcinosis deposits as seen on plain films, by morphology.

The shapes follow the descriptions of calcinosis in the rheumatology literature (systemic
sclerosis, dermatomyositis, CREST): dense round *stones*; cloudy *mousse* with soft edges;
thin *plates* and sheets; reticular *nets* of specks; *periarticular* clusters beside joints
(touching the bone outline, never inside it); *acral* deposits in the fingertip pulp; and
widespread *universalis* sheets along fascial planes.

A deposit is a set of *components* (a net's specks; one lump for the others), each a sum of
`Blob` / `Strip` primitives in patient millimetres. The primitives give thickness per unit
*scale*; the deposit's `scale` is its peak mineral thickness in mm of cortical-bone
equivalent per unit weight, chosen by the truth module so the film shows the requested
contrast-to-noise ratio.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .shapes import Blob, Strip, union_bounds

#: The morphologies the generator knows, in the order of the deposit table's documentation.
MORPHOLOGIES = ("stone", "mousse", "plate", "net", "periarticular", "acral", "universalis")

#: Typical largest dimension (mm) of each morphology; the spec's size range clips these.
SIZE_RANGE_MM = {
    "stone": (0.5, 8.0),
    "mousse": (2.5, 16.0),
    "plate": (3.0, 20.0),
    "net": (3.0, 15.0),
    "periarticular": (1.5, 10.0),
    "acral": (0.5, 5.0),
    "universalis": (15.0, 30.0),
}

#: Densest plausible deposit: peak mineral thickness (mm of cortex equivalent) per mm of the
#: deposit's thinnest dimension (hydroxyapatite is denser than cortex).
MAX_DENSITY = 1.6


@dataclass(frozen=True)
class DepositShape:
    """One deposit in patient space.

    Attributes
    ----------
    morphology : str
        One of `MORPHOLOGIES`.
    components : tuple of tuple of Blob or Strip
        Components whose union makes the truth mask (a net's specks; a single lump otherwise).
    anchor : (float, float)
        Point the deposit grows or shrinks about (its contact with the bone when
        periarticular).
    size_mm : float
        Largest dimension.
    thin_mm : float
        Thinnest lateral dimension, which caps how dense the deposit can be.
    scale : float
        Mineral thickness (mm cortex equivalent) per unit primitive weight.
    track_id : int
        Identity of the physical deposit across the visits of a series.
    joint : str
        Name of the joint a periarticular deposit sits beside ("" otherwise).
    requested_cnr : float or None
        The contrast-to-noise ratio the scale was chosen for (None on follow-up visits).
    """

    morphology: str
    components: tuple[tuple[Blob | Strip, ...], ...]
    anchor: tuple[float, float]
    size_mm: float
    thin_mm: float
    scale: float = 1.0
    track_id: int = 0
    joint: str = ""
    requested_cnr: float | None = None

    @property
    def periarticular(self) -> bool:
        return bool(self.joint)

    @property
    def max_scale(self) -> float:
        """Largest physically plausible `scale`."""
        peak = max(p.weight for comp in self.components for p in comp)
        return MAX_DENSITY * max(self.thin_mm, 0.3) / peak * (3.0 if self.morphology in
                                                             ("plate", "universalis") else 1.0)

    def bounds(self) -> tuple[float, float, float, float]:
        return union_bounds(p.bounds() for comp in self.components for p in comp)

    def component_bounds(self, index: int) -> tuple[float, float, float, float]:
        return union_bounds(p.bounds() for p in self.components[index])

    def unit_thickness(self, x: np.ndarray, y: np.ndarray, component: int | None = None
                       ) -> np.ndarray:
        """Thickness per unit scale at patient points (all components, or one)."""
        comps = self.components if component is None else (self.components[component],)
        total = np.zeros(np.broadcast(x, y).shape, dtype=np.float32)
        for comp in comps:
            for primitive in comp:
                total += primitive.evaluate(x, y)
        return total

    def resized(self, factor: float) -> DepositShape:
        """The same deposit grown (factor > 1) or shrunk about its anchor."""
        ax, ay = self.anchor

        def move(p):
            return (ax + factor * (p[0] - ax), ay + factor * (p[1] - ay))

        def resize(primitive):
            if isinstance(primitive, Blob):
                return dataclasses.replace(primitive, centre=move(primitive.centre),
                                           semi_axes_mm=tuple(factor * a for a in
                                                              primitive.semi_axes_mm))
            return dataclasses.replace(primitive, points=tuple(move(p) for p in primitive.points),
                                       half_width_mm=factor * primitive.half_width_mm,
                                       edge_mm=factor * primitive.edge_mm)

        return dataclasses.replace(
            self, components=tuple(tuple(resize(p) for p in comp) for comp in self.components),
            size_mm=self.size_mm * factor, thin_mm=self.thin_mm * factor)


# --- generators ----------------------------------------------------------------------------

def make_shape(morphology: str, rng: np.random.Generator, centre: tuple[float, float],
               size_mm: float, axis: tuple[float, float] = (0.0, 1.0), *,
               normal: tuple[float, float] | None = None, joint: str = "") -> DepositShape:
    """Build a deposit of `morphology` about `centre` (patient mm).

    Parameters
    ----------
    morphology : str
        One of `MORPHOLOGIES`.
    rng : numpy.random.Generator
    centre : (float, float)
        Where the deposit sits; for a periarticular one, its contact with the bone outline.
    size_mm : float
        Largest dimension.
    axis : (float, float)
        Unit direction of the limb (plates and sheets tend to run along it).
    normal : (float, float), optional
        Outward unit normal of the bone outline (periarticular deposits only).
    joint : str
        The joint's name (periarticular deposits only).
    """
    builder = _BUILDERS[morphology]
    return builder(rng, centre, size_mm, axis, normal, joint)


def _angle_of(v) -> float:
    return math.degrees(math.atan2(v[1], v[0]))


def _stone(rng, centre, size, axis, normal, joint, morphology="stone"):
    aspect = float(rng.uniform(0.7, 1.0))
    a = size / 2
    angle = float(rng.uniform(0, 180))
    lumps = [Blob(centre, (a, a * aspect), angle, "dome", 1.0)]
    if size > 2.0 and rng.random() < 0.35:
        for _ in range(int(rng.integers(1, 3))):
            offset = rng.uniform(-0.25, 0.25, size=2) * size
            r = a * float(rng.uniform(0.35, 0.6))
            lumps.append(Blob((centre[0] + offset[0], centre[1] + offset[1]), (r, r), 0.0,
                              "dome", float(rng.uniform(0.5, 0.9))))
    return DepositShape(morphology, (tuple(lumps),), centre, size, size * aspect)


def _acral(rng, centre, size, axis, normal, joint):
    if rng.random() < 0.7:
        return _stone(rng, centre, size, axis, normal, joint, morphology="acral")
    shape = _mousse(rng, centre, size, axis, normal, joint)
    return dataclasses.replace(shape, morphology="acral")


def _mousse(rng, centre, size, axis, normal, joint):
    n = int(rng.integers(3, 8))
    lumps = []
    for _ in range(n):
        offset = rng.uniform(-0.17, 0.17, size=2) * size
        r = size * float(rng.uniform(0.16, 0.24))
        lumps.append(Blob((centre[0] + offset[0], centre[1] + offset[1]),
                          (r, r * float(rng.uniform(0.7, 1.0))), float(rng.uniform(0, 180)),
                          "gauss", float(rng.uniform(0.5, 1.0))))
    return DepositShape("mousse", (tuple(lumps),), centre, size, size * 0.6)


def _plate(rng, centre, size, axis, normal, joint):
    angle = math.radians(_angle_of(axis) + float(rng.normal(0, 35)))
    d = (math.cos(angle), math.sin(angle))
    p = (-d[1], d[0])
    bend = float(rng.uniform(-0.12, 0.12)) * size
    half = size / 2
    points = ((centre[0] - half * d[0], centre[1] - half * d[1]),
              (centre[0] + bend * p[0], centre[1] + bend * p[1]),
              (centre[0] + half * d[0], centre[1] + half * d[1]))
    width = float(rng.uniform(0.3, 1.0)) * min(1.0, size / 4)
    strip = Strip(points, max(width, 0.25), "dome", 1.0)
    return DepositShape("plate", ((strip,),), centre, size, 2 * strip.half_width_mm)


def _net(rng, centre, size, axis, normal, joint):
    n_lines = int(rng.integers(3, 6))
    n_specks = int(np.clip(size * 2.5, 6, 36))
    radius = size / 2
    thetas = rng.uniform(0, math.pi, size=n_lines)
    offsets = rng.uniform(-0.6, 0.6, size=n_lines) * radius
    specks = []
    for i in range(n_specks):
        theta, offset = float(thetas[i % n_lines]), float(offsets[i % n_lines])
        t = float(rng.uniform(-0.85, 0.85)) * radius
        cx = centre[0] - offset * math.sin(theta) + t * math.cos(theta)
        cy = centre[1] + offset * math.cos(theta) + t * math.sin(theta)
        r = float(rng.uniform(0.15, 0.45))
        if math.hypot(cx - centre[0], cy - centre[1]) + r > radius:
            continue
        specks.append((Blob((cx, cy), (r, r * float(rng.uniform(0.7, 1.0))),
                            float(rng.uniform(0, 180)), "dome", 1.0),))
    specks = _separate(specks, 0.25)
    if not specks:
        specks = [(Blob(centre, (0.35, 0.3), 0.0, "dome", 1.0),)]
    # a net is a 3-D network: rays cross several specks, so it can look denser than one speck
    return DepositShape("net", tuple(specks), centre, size, 1.2)


def _separate(specks, gap):
    """Drop specks that overlap an earlier one (a net's specks stay distinct)."""
    kept = []
    for (blob,) in specks:
        if all(math.dist(blob.centre, other.centre) > max(blob.semi_axes_mm)
               + max(other.semi_axes_mm) + gap for (other,) in kept):
            kept.append((blob,))
    return kept


def _periarticular(rng, centre, size, axis, normal, joint):
    if normal is None:
        raise ValueError("a periarticular deposit needs the bone outline's normal")
    tangent = (-normal[1], normal[0])
    n = int(rng.integers(1, 4))
    lumps = []
    a = size / 2
    depth = a * float(rng.uniform(0.55, 0.8))
    for i in range(n):
        along = float(rng.uniform(-0.3, 0.3)) * size if i else 0.0
        out = depth * float(rng.uniform(0.3, 0.6))
        c = (centre[0] + along * tangent[0] + out * normal[0],
             centre[1] + along * tangent[1] + out * normal[1])
        ra = a * (1.0 if i == 0 else float(rng.uniform(0.4, 0.7)))
        lumps.append(Blob(c, (ra, min(depth, ra)), _angle_of(tangent),
                          "dome" if rng.random() < 0.6 else "gauss",
                          1.0 if i == 0 else float(rng.uniform(0.5, 0.9))))
    return DepositShape("periarticular", (tuple(lumps),), centre, size, 2 * depth, joint=joint)


def _universalis(rng, centre, size, axis, normal, joint):
    d = axis
    p = (-d[1], d[0])
    n = 6
    wander = float(rng.uniform(0.5, 2.0))
    phase = float(rng.uniform(0, 2 * math.pi))
    points = []
    for i in range(n + 1):
        t = (i / n - 0.5) * size
        lateral = wander * math.sin(phase + 2 * math.pi * i / n)
        points.append((centre[0] + t * d[0] + lateral * p[0], centre[1] + t * d[1] + lateral * p[1]))
    width = float(rng.uniform(0.5, 1.6))
    strips = [Strip(tuple(points), width, "flat", 1.0, 0.5)]
    if rng.random() < 0.4:
        # a side branch leaving the sheet at an angle
        k = int(rng.integers(1, n))
        base = points[k]
        turn = math.radians(float(rng.choice([-1, 1])) * float(rng.uniform(25, 50)))
        bd = (d[0] * math.cos(turn) - d[1] * math.sin(turn), d[0] * math.sin(turn) +
              d[1] * math.cos(turn))
        length = size * float(rng.uniform(0.2, 0.35))
        strips.append(Strip((base, (base[0] + length * bd[0], base[1] + length * bd[1])),
                            width * 0.7, "flat", 0.8, 0.5))
    return DepositShape("universalis", (tuple(strips),), centre, size, 2 * width)


_BUILDERS = {
    "stone": _stone,
    "mousse": _mousse,
    "plate": _plate,
    "net": _net,
    "periarticular": _periarticular,
    "acral": _acral,
    "universalis": _universalis,
}


#: Sub-pixel samples per axis when drawing deposits: a pixel records the mean thickness over
#: its area, so specks smaller than a pixel still show, with partial-volume contrast.
SUPERSAMPLE = 3
#: Primitives at least this many pixels across are sampled at pixel centres only.
FINE_PX = 8.0


def thickness_on(grid, shape: DepositShape, box: tuple[slice, slice],
                 component: int | None = None) -> np.ndarray:
    """Mean thickness per unit scale over each pixel of a film box (supersampled).

    Parameters
    ----------
    grid : FilmGrid
    shape : DepositShape
    box : (slice, slice)
        Film rows and columns.
    component : int, optional
        One component only (default: the whole deposit).
    """
    total = np.zeros((box[0].stop - box[0].start, box[1].stop - box[1].start), dtype=np.float32)
    comps = shape.components if component is None else (shape.components[component],)
    # patient coordinates are affine in (row, col): one grid, shifted for each sub-sample
    x00, y00 = grid.to_patient(0.0, 0.0)
    xr, yr = (v - w for v, w in zip(grid.to_patient(1.0, 0.0), (x00, y00)))
    xc, yc = (v - w for v, w in zip(grid.to_patient(0.0, 1.0), (x00, y00)))
    for comp in comps:
        for primitive in comp:
            own = grid.box_of(primitive.bounds(), margin_px=1)
            if own is None:
                continue
            r0, r1 = max(own[0].start, box[0].start), min(own[0].stop, box[0].stop)
            c0, c1 = max(own[1].start, box[1].start), min(own[1].stop, box[1].stop)
            if r0 >= r1 or c0 >= c1:
                continue
            rows = np.arange(r0, r1, dtype=np.float32)[:, None]
            cols = np.arange(c0, c1, dtype=np.float32)[None, :]
            x, y = grid.to_patient(rows, cols)
            n = SUPERSAMPLE if _thinnest_px(primitive, grid.spacing_mm) < FINE_PX else 1
            offsets = (np.arange(n) + 0.5) / n - 0.5
            acc = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
            for dr in offsets:
                for dc in offsets:
                    acc += primitive.evaluate(x + np.float32(dr * xr + dc * xc),
                                              y + np.float32(dr * yr + dc * yc))
            if n > 1:
                acc /= np.float32(n * n)
            total[r0 - box[0].start:r1 - box[0].start, c0 - box[1].start:c1 - box[1].start] += acc
    return total


def _thinnest_px(primitive, spacing_mm: float) -> float:
    if isinstance(primitive, Blob):
        return 2.0 * min(primitive.semi_axes_mm) / spacing_mm
    return 2.0 * primitive.half_width_mm / spacing_mm
