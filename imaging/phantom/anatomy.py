"""Anatomical models of the phantom: a hand PA, a forearm AP and a lower leg AP.

Each model is a set of analytic shapes in patient millimetres (see `shapes`): bones as solids
of revolution with a cortical shell and a trabecular core, soft tissue as rods and a palm slab
with skin, subcutaneous fat and muscle layers, plus the joints (for periarticular deposits),
the digits (for regions and fingertips) and the beam that suits the body part. Models are of a
right limb; a left limb is the mirror image, applied by the film grid.

Patient size and proportions vary with a seed, so a phantom "patient" is one seed.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .shapes import Rod, polyline_distance


class AnatomyKind(enum.StrEnum):
    """Body parts the phantom can film."""

    HAND = "hand"
    FOREARM = "forearm"
    LOWER_LEG = "lower_leg"


#: Region names per anatomy (the deposit table's ``region`` column).
REGIONS = {
    AnatomyKind.HAND: ("digit1", "digit2", "digit3", "digit4", "digit5", "palm", "wrist"),
    AnatomyKind.FOREARM: ("proximal", "middle", "distal"),
    AnatomyKind.LOWER_LEG: ("proximal", "middle", "distal"),
}

#: DICOM Body Part Examined per anatomy.
BODY_PART = {AnatomyKind.HAND: "HAND", AnatomyKind.FOREARM: "FOREARM",
             AnatomyKind.LOWER_LEG: "LEG"}

#: Default field of view (rows, cols) in mm and default film spacing per anatomy.
FIELD_MM = {AnatomyKind.HAND: (260.0, 210.0), AnatomyKind.FOREARM: (300.0, 160.0),
            AnatomyKind.LOWER_LEG: (400.0, 200.0)}
DEFAULT_SPACING_MM = {AnatomyKind.HAND: 0.15, AnatomyKind.FOREARM: 0.15,
                      AnatomyKind.LOWER_LEG: 0.2}


@dataclass(frozen=True)
class Beam:
    """The X-ray beam that suits a body part (a harder beam for thicker parts).

    Attributes
    ----------
    soft_factor, mineral_factor : float
        Scale of the soft-tissue and mineral attenuation coefficients relative to a hand beam
        (about 50 kVp); mineral falls faster than soft tissue as the beam hardens.
    quanta_per_mm2 : float
        Detected X-ray quanta per mm² of open field at relative dose 1.
    attenuation_range : float
        Line integral (in nepers) mapped to the top of the film's value range; denser parts
        saturate, as lead does.
    """

    soft_factor: float
    mineral_factor: float
    quanta_per_mm2: float
    attenuation_range: float


BEAMS = {
    AnatomyKind.HAND: Beam(1.0, 1.0, 2.5e4, 4.2),
    AnatomyKind.FOREARM: Beam(0.9, 0.8, 3.0e4, 5.0),
    AnatomyKind.LOWER_LEG: Beam(0.72, 0.55, 5.0e4, 6.0),
}


@dataclass(frozen=True)
class Bone:
    """One bone: the union of one or more rods sharing a cortical and trabecular profile.

    Attributes
    ----------
    name : str
    rods : tuple of Rod
    cortex_knots : tuple of (fraction, mm)
        Cortical thickness along the first rod's axis (thin at the ends, thick on the shaft).
    trabecular_knots : tuple of (fraction, density)
        Relative trabecular density (1 in epiphyses, low in the medullary cavity).
    density : float
        Mineral density factor of this bone.
    """

    name: str
    rods: tuple[Rod, ...]
    cortex_knots: tuple[tuple[float, float], ...] = ((0.0, 0.4), (0.25, 1.0), (0.75, 1.0),
                                                     (1.0, 0.4))
    trabecular_knots: tuple[tuple[float, float], ...] = ((0.0, 1.0), (0.25, 0.35), (0.75, 0.35),
                                                         (1.0, 1.0))
    density: float = 1.0


@dataclass(frozen=True)
class SoftRod:
    """A limb segment of soft tissue with skin and subcutaneous fat layers (mm)."""

    rod: Rod
    skin_mm: float = 1.0
    fat_mm: float = 3.0


@dataclass(frozen=True)
class SoftSlab:
    """A flat body part (the palm): a polygon of given thickness with rounded borders."""

    polygon: tuple[tuple[float, float], ...]
    thickness_mm: float
    rounding_mm: float
    skin_mm: float = 1.0
    fat_mm: float = 3.0


@dataclass(frozen=True)
class Joint:
    """A joint between two bones, for periarticular deposits.

    `axis` is the unit direction from the `proximal` bone to the `distal` one; `proximal_end`
    and `distal_start` are the on-axis ends of the two bones that face each other.
    """

    name: str
    centre: tuple[float, float]
    axis: tuple[float, float]
    proximal_end: tuple[float, float]
    distal_start: tuple[float, float]


@dataclass(frozen=True)
class Digit:
    """A finger (number 2-5) or the thumb (number 1), for regions and fingertips."""

    number: int
    mcp: tuple[float, float]
    distal_joint: tuple[float, float]
    tip: tuple[float, float]
    radius_mm: float

    @property
    def direction(self) -> tuple[float, float]:
        dx, dy = self.tip[0] - self.mcp[0], self.tip[1] - self.mcp[1]
        n = math.hypot(dx, dy)
        return dx / n, dy / n


@dataclass(frozen=True)
class Anatomy:
    """A phantom patient's body part, in patient millimetres (right limb)."""

    kind: AnatomyKind
    bones: tuple[Bone, ...]
    soft_rods: tuple[SoftRod, ...]
    slabs: tuple[SoftSlab, ...]
    joints: tuple[Joint, ...]
    digits: tuple[Digit, ...]
    beam: Beam
    field_mm: tuple[float, float]
    palm_wrist_y: float | None = None
    distal_at_top: bool = True
    seed: int = 0

    @property
    def body_part(self) -> str:
        return BODY_PART[self.kind]

    @property
    def regions(self) -> tuple[str, ...]:
        return REGIONS[self.kind]

    def bone(self, name: str) -> Bone:
        for bone in self.bones:
            if bone.name == name:
                return bone
        raise KeyError(name)

    def region_at(self, x, y) -> np.ndarray:
        """Region index (into `regions`) of patient points (x, y) mm; vectorised."""
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32)
        if self.kind is AnatomyKind.HAND:
            region = np.where(y < self.palm_wrist_y, 5, 6).astype(np.int16)
            best = np.full(x.shape, np.inf, dtype=np.float32)
            for digit in self.digits:
                ux, uy = digit.direction
                along = (x - digit.mcp[0]) * ux + (y - digit.mcp[1]) * uy
                dist = polyline_distance((digit.mcp, digit.tip), x, y)
                inside = (along >= 0) & (dist <= digit.radius_mm + 3.0) & (dist < best)
                region = np.where(inside, digit.number - 1, region)
                best = np.where(inside, dist, best)
            return region
        half = self.field_mm[0] / 2
        third = np.clip(((y + half) / self.field_mm[0] * 3).astype(np.int16), 0, 2)
        # index 0 = proximal; the top third is distal when the distal end is at the top
        return (2 - third) if self.distal_at_top else third

    def is_fingertip(self, x, y) -> np.ndarray:
        """True where a patient point lies in a fingertip (beyond the DIP or thumb IP joint)."""
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32)
        result = np.zeros(np.broadcast(x, y).shape, dtype=bool)
        if self.kind is not AnatomyKind.HAND:
            return result
        region = self.region_at(x, y)
        for digit in self.digits:
            ux, uy = digit.direction
            along = (x - digit.distal_joint[0]) * ux + (y - digit.distal_joint[1]) * uy
            result |= (region == digit.number - 1) & (along > 0)
        return result

    def axis_at(self, x: float, y: float) -> tuple[float, float]:
        """Unit direction of the limb (fascial planes run along it) at a patient point."""
        if self.kind is AnatomyKind.HAND:
            region = int(self.region_at(np.array([x]), np.array([y]))[0])
            if region < 5:
                return self.digits[region].direction
            return 0.0, -1.0
        return 0.0, 1.0


# --- builders ------------------------------------------------------------------------------

def build_anatomy(kind: AnatomyKind | str, seed: int) -> Anatomy:
    """Build a phantom patient's body part; the seed varies size and proportions.

    Parameters
    ----------
    kind : AnatomyKind or str
        ``"hand"``, ``"forearm"`` or ``"lower_leg"``.
    seed : int
        The patient seed: the same seed gives the same patient.
    """
    kind = AnatomyKind(kind)
    rng = np.random.default_rng([seed, 101])
    builder = {AnatomyKind.HAND: _hand, AnatomyKind.FOREARM: _forearm,
               AnatomyKind.LOWER_LEG: _lower_leg}[kind]
    return dataclasses.replace(builder(rng), seed=int(seed))


@dataclass(frozen=True, eq=False)
class PatientTexture:
    """Random but fixed tissue texture of one patient, on patient-space rasters.

    Attributes
    ----------
    trabecular : ndarray of float32
        Multiplier (mean 1) of trabecular density: a band-passed random field that looks like
        the trabecular network at radiographic resolution; covers the bones.
    trabecular_origin_mm : (float, float)
        Patient (x, y) of ``trabecular[0, 0]``.
    muscle : ndarray of float32
        Multiplier (mean 1) of soft-tissue attenuation, varying over centimetres (fat/muscle).
    muscle_origin_mm : (float, float)
    spacing_mm : float
        Raster spacing of `trabecular`; `muscle` is `MUSCLE_STEP` times coarser.
    """

    trabecular: np.ndarray
    trabecular_origin_mm: tuple[float, float]
    muscle: np.ndarray
    muscle_origin_mm: tuple[float, float]
    spacing_mm: float

    MUSCLE_STEP = 16

    def sample(self, which: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Texture values at patient points (bilinear; 1 outside the raster)."""
        if which == "muscle":
            raster, origin = self.muscle, self.muscle_origin_mm
            step = self.spacing_mm * self.MUSCLE_STEP
        else:
            raster, origin, step = self.trabecular, self.trabecular_origin_mm, self.spacing_mm
        map_x = ((x - origin[0]) / step).astype(np.float32)
        map_y = ((y - origin[1]) / step).astype(np.float32)
        return cv2.remap(raster, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=1.0)


def patient_texture(anatomy: Anatomy, spacing_mm: float = 0.15) -> PatientTexture:
    """The patient's tissue texture, fixed by `anatomy.seed` (the same on every visit)."""
    rng = np.random.default_rng([anatomy.seed, 202, list(AnatomyKind).index(anatomy.kind)])
    height, width = anatomy.field_mm
    reach = 0.5 * math.hypot(height, width) + 15.0
    xs, ys = [], []
    for bone in anatomy.bones:
        for rod in bone.rods:
            x0, x1, y0, y1 = rod.bounds()
            xs += [x0, x1]
            ys += [y0, y1]
    x0, x1 = max(min(xs) - 5.0, -reach), min(max(xs) + 5.0, reach)
    y0, y1 = max(min(ys) - 5.0, -reach), min(max(ys) + 5.0, reach)
    shape = (int(math.ceil((y1 - y0) / spacing_mm)) + 1, int(math.ceil((x1 - x0) / spacing_mm)) + 1)
    white = rng.standard_normal(shape, dtype=np.float32)
    band = (cv2.GaussianBlur(white, (0, 0), 0.25 / spacing_mm)
            - cv2.GaussianBlur(white, (0, 0), 0.75 / spacing_mm))
    band /= float(band.std()) or 1.0
    trabecular = np.clip(1.0 + 0.45 * np.tanh(1.5 * band), 0.3, 1.7).astype(np.float32)
    step = spacing_mm * PatientTexture.MUSCLE_STEP
    m = int(math.ceil(2 * reach / step)) + 1
    smooth = cv2.GaussianBlur(rng.standard_normal((m, m), dtype=np.float32), (0, 0), 8.0 / step)
    smooth /= float(smooth.std()) or 1.0
    muscle = (1.0 + 0.06 * smooth).astype(np.float32)
    return PatientTexture(trabecular, (x0, y0), muscle, (-reach, -reach), spacing_mm)


def _direction(angle_deg: float) -> tuple[float, float]:
    """Unit vector at `angle_deg` from 'up' (−y), positive towards +x."""
    a = math.radians(angle_deg)
    return math.sin(a), -math.cos(a)


def _add(p, v, t=1.0):
    return (p[0] + t * v[0], p[1] + t * v[1])


def _scale_knots(knots, k):
    return tuple((u, r * k) for u, r in knots)


def _ellipsoid(centre, half_length, radius, angle_deg) -> Rod:
    d = _direction(angle_deg)
    start = _add(centre, d, -half_length)
    end = _add(centre, d, half_length)
    return Rod(start, end, ((0.0, radius), (1.0, radius)), half_length, half_length)


def _rounded_block(centre, half_length, radius, angle_deg, cap_fraction=0.6) -> Rod:
    d = _direction(angle_deg)
    start = _add(centre, d, -half_length)
    end = _add(centre, d, half_length)
    cap = cap_fraction * min(half_length, radius)
    return Rod(start, end, ((0.0, radius), (1.0, radius)), cap, cap)


_MC_KNOTS = ((0.0, 5.5), (0.15, 4.2), (0.5, 3.6), (0.85, 4.4), (1.0, 6.0))
_PP_KNOTS = ((0.0, 5.2), (0.2, 4.0), (0.5, 3.4), (0.85, 3.8), (1.0, 4.6))
_MP_KNOTS = ((0.0, 4.4), (0.25, 3.3), (0.6, 3.0), (1.0, 3.8))
_DP_KNOTS = ((0.0, 4.2), (0.3, 2.6), (0.75, 2.2), (0.9, 3.0), (1.0, 3.3))
_MC_CORTEX = ((0.0, 0.4), (0.25, 1.3), (0.75, 1.3), (1.0, 0.4))
_PH_CORTEX = ((0.0, 0.35), (0.3, 0.9), (0.7, 0.9), (1.0, 0.35))
_CARPAL_CORTEX = ((0.0, 0.45), (1.0, 0.45))
_CARPAL_TRAB = ((0.0, 0.9), (1.0, 0.9))

# (digit number, MC base (x, y), MC angle, MC length, phalanx angle, phalanx lengths, width)
_HAND_RAYS = (
    (1, (-15.0, 42.0), -36.0, 44.0, -42.0, (31.0, 23.0), 1.1),
    (2, (-3.0, 38.0), -7.0, 66.0, -10.0, (40.0, 24.0, 17.0), 0.97),
    (3, (8.0, 37.0), -1.0, 63.0, -1.0, (45.0, 28.0, 19.0), 1.0),
    (4, (18.0, 39.0), 6.0, 57.0, 8.0, (42.0, 26.0, 18.0), 0.93),
    (5, (26.0, 42.0), 13.0, 52.0, 18.0, (33.0, 19.0, 16.0), 0.85),
)


def _hand(rng: np.random.Generator) -> Anatomy:
    k = float(rng.uniform(0.86, 0.98))          # patient size
    splay = float(rng.uniform(-3.0, 4.0))        # how far the fingers are spread
    density = float(rng.uniform(0.85, 1.1))      # bone mineral density
    y_shift = 5.0

    def P(x, y):
        return (x * k, (y + y_shift) * k)

    bones, soft, joints, digits = [], [], [], []
    gaps = {"mcp": 2.0 * k, "pip": 1.6 * k, "dip": 1.3 * k}
    for number, base, mc_angle, mc_len, ph_angle, lengths, width in _HAND_RAYS:
        jitter = rng.uniform(0.96, 1.04, size=4)
        spread = splay * (number - 3) / 2.0
        mc_dir = _direction(mc_angle + spread * 0.4)
        ph_dir = _direction(ph_angle + spread + rng.uniform(-2, 2))
        w = width * k
        mc_start = P(*base)
        mc_end = _add(mc_start, mc_dir, mc_len * k * jitter[0])
        knots = _MC_KNOTS if number != 1 else ((0.0, 6.5), (0.2, 5.0), (0.5, 4.2), (0.85, 5.0),
                                               (1.0, 6.2))
        mc = Rod(mc_start, mc_end, _scale_knots(knots, w), 2.5 * w, 5.0 * w)
        bones.append(Bone(f"mc{number}", (mc,), _scale_knots(_MC_CORTEX, w), density=density))
        names = ("pp", "dp") if number == 1 else ("pp", "mp", "dp")
        gap_names = ("mcp", "ip") if number == 1 else ("mcp", "pip", "dip")
        prev_end, prev_rod = mc_end, mc
        knot_sets = {"pp": _PP_KNOTS, "mp": _MP_KNOTS, "dp": _DP_KNOTS}
        joint_points = {}
        for i, (name, length) in enumerate(zip(names, lengths)):
            gap = gaps.get(gap_names[i], gaps["dip"])
            direction = ph_dir
            start = _add(prev_end, direction, gap)
            end = _add(start, direction, length * k * jitter[i + 1])
            caps = (1.5 * w, 2.5 * w if name == "dp" else 3.5 * w)
            rod = Rod(start, end, _scale_knots(knot_sets[name], w), *caps)
            bones.append(Bone(f"{name}{number}", (rod,), _scale_knots(_PH_CORTEX, w),
                              density=density))
            centre = _add(prev_end, direction, gap / 2)
            joint_name = f"{gap_names[i]}{number}"
            axis = prev_rod.axis
            joints.append(Joint(joint_name, centre, (0.5 * (axis[0] + direction[0]),
                                                     0.5 * (axis[1] + direction[1])),
                                prev_end, start))
            joint_points[gap_names[i]] = centre
            prev_end, prev_rod = end, rod
        tip = _add(prev_end, ph_dir, 3.5 * w)
        finger_radius = 10.0 * w
        distal_joint = joint_points["ip" if number == 1 else "dip"]
        digits.append(Digit(number, joint_points["mcp"], distal_joint, tip, finger_radius))
        finger_start = _add(joint_points["mcp"], ph_dir, -12.0 * k)
        if number == 1:
            finger_start = _add(mc_start, mc_dir, 0.45 * mc_len * k)
        finger = Rod(finger_start, _add(tip, ph_dir, 2.0 * w),
                     _scale_knots(((0.0, 11.0), (0.35, 10.0), (0.7, 9.0), (1.0, 7.8)), w),
                     0.0, 6.5 * w, depth_ratio=0.82)
        soft.append(SoftRod(finger, skin_mm=1.0, fat_mm=2.2 * w))
        if number == 1:
            sesamoid_dir = (-ph_dir[1], ph_dir[0])
            centre = _add(_add(mc_end, mc_dir, -2.5 * w), sesamoid_dir, 4.2 * w)
            bones.append(Bone("sesamoid1", (_ellipsoid(centre, 2.6 * k, 2.3 * k, mc_angle),),
                              _CARPAL_CORTEX, _CARPAL_TRAB, density))
            thenar = Rod(P(-12.0, 52.0), _add(mc_end, mc_dir, -4.0 * k),
                         ((0.0, 14.0 * k), (1.0, 11.0 * k)), 10.0 * k, 8.0 * k, depth_ratio=0.95)
            soft.append(SoftRod(thenar, 1.0, 4.0 * k))

    carpals = (
        ("scaphoid", (-6.0, 65.0), 11.0, 5.5, -30.0),
        ("lunate", (6.0, 66.0), 7.0, 7.0, 0.0),
        ("triquetrum", (17.0, 64.0), 6.5, 5.5, 30.0),
        ("pisiform", (23.0, 60.0), 4.5, 4.5, 0.0),
        ("trapezium", (-12.0, 50.0), 7.0, 6.0, -35.0),
        ("trapezoid", (-3.0, 45.0), 5.5, 5.0, -10.0),
        ("capitate", (8.0, 48.5), 10.0, 6.5, 0.0),
        ("hamate", (21.0, 49.0), 8.5, 6.5, 15.0),
    )
    for name, centre, half, radius, angle in carpals:
        rod = _rounded_block(P(*centre), half * k, radius * k, angle, 0.8)
        bones.append(Bone(name, (rod,), _CARPAL_CORTEX, _CARPAL_TRAB, density))

    radius_rod = Rod(P(0.0, 77.0), P(-3.0, 190.0),
                     _scale_knots(((0.0, 14.0), (0.15, 11.5), (0.4, 9.0), (1.0, 8.5)), k),
                     3.0 * k, 0.0)
    ulna_rod = Rod(P(23.0, 80.0), P(25.0, 190.0),
                   _scale_knots(((0.0, 7.0), (0.12, 6.0), (1.0, 6.3)), k), 4.0 * k, 0.0)
    long_cortex = ((0.0, 0.5 * k), (0.3, 1.6 * k), (1.0, 2.2 * k))
    long_trab = ((0.0, 1.0), (0.3, 0.5), (1.0, 0.25))
    bones.append(Bone("radius", (radius_rod,), long_cortex, long_trab, density))
    bones.append(Bone("ulna", (ulna_rod,), long_cortex, long_trab, density))
    joints.append(Joint("radiocarpal", P(3.0, 75.0), (0.0, -1.0), radius_rod.start,
                        P(6.0, 71.0)))
    trapezium = next(b for b in bones if b.name == "trapezium").rods[0]
    mc1 = next(b for b in bones if b.name == "mc1").rods[0]
    joints.append(Joint("cmc1", ((trapezium.end[0] + mc1.start[0]) / 2,
                                 (trapezium.end[1] + mc1.start[1]) / 2),
                        mc1.axis, trapezium.end, mc1.start))

    # palm slab: the convex hull of the metacarpals, widened, down to the wrist
    outline = []
    for bone in bones:
        if bone.name in ("mc2", "mc3", "mc4", "mc5"):
            rod = bone.rods[0]
            ax, ay = rod.axis
            px, py = -ay, ax
            for point, reach in ((rod.end, 8.0 * k), (rod.start, 0.0)):
                for side in (-1, 1):
                    extra = 5.0 * k if (bone.name == "mc5" and side > 0) else 0.0
                    outline.append(_add(_add(point, (ax, ay), reach), (px, py),
                                        side * (9.0 * k + extra)))
    outline += [P(-24.0, 92.0), P(36.0, 92.0), P(-22.0, 58.0), P(36.0, 62.0)]
    hull = _convex_hull(outline)
    soft.append(SoftRod(Rod(P(6.0, 72.0), P(6.0, 230.0),
                            ((0.0, 30.0 * k), (1.0, 34.0 * k)), 0.0, 0.0, depth_ratio=0.68),
                        1.0, 3.5 * k))
    slab = SoftSlab(hull, thickness_mm=29.0 * k, rounding_mm=12.0 * k, skin_mm=1.0, fat_mm=3.0 * k)
    palm_wrist_y = float(np.mean([b.rods[0].start[1] for b in bones
                                  if b.name in ("mc2", "mc3", "mc4", "mc5")]))
    return Anatomy(AnatomyKind.HAND, tuple(bones), tuple(soft), (slab,), tuple(joints),
                   tuple(digits), BEAMS[AnatomyKind.HAND], FIELD_MM[AnatomyKind.HAND],
                   palm_wrist_y=palm_wrist_y, distal_at_top=True)


def _forearm(rng: np.random.Generator) -> Anatomy:
    k = float(rng.uniform(0.9, 1.05))
    density = float(rng.uniform(0.85, 1.1))

    def P(x, y):
        return (x * k, y * k)

    long_cortex = _scale_knots(((0.0, 0.5), (0.2, 2.0), (0.85, 2.0), (1.0, 0.5)), k)
    long_trab = ((0.0, 1.0), (0.15, 0.3), (0.85, 0.3), (1.0, 1.0))
    radius = Rod(P(-12.0, -137.0), P(-5.0, 122.0),
                 _scale_knots(((0.0, 14.5), (0.08, 11.0), (0.25, 7.5), (0.6, 6.5), (0.88, 6.0),
                               (0.94, 7.5), (1.0, 9.5)), k), 3.0 * k, 2.5 * k)
    ulna = Rod(P(14.0, -133.0), P(9.0, 152.0),
               _scale_knots(((0.0, 7.5), (0.06, 6.0), (0.5, 6.5), (0.85, 8.5), (0.95, 12.0),
                             (1.0, 12.0)), k), 3.0 * k, 8.0 * k)
    condyles = Rod(P(-24.0, 136.0), P(22.0, 136.0), ((0.0, 11.0 * k), (1.0, 11.0 * k)),
                   9.0 * k, 9.0 * k)
    humerus = Rod(P(0.0, 136.0), P(0.0, 300.0),
                  _scale_knots(((0.0, 17.0), (0.15, 12.0), (1.0, 10.5)), k), 0.0, 0.0)
    bones = [
        Bone("radius", (radius,), long_cortex, long_trab, density),
        Bone("ulna", (ulna,), long_cortex, long_trab, density),
        Bone("humerus", (condyles, humerus), _scale_knots(((0.0, 1.0), (1.0, 1.0)), k),
             ((0.0, 0.8), (1.0, 0.8)), density),
    ]
    for name, centre, half, r, angle in (("scaphoid", (-14.0, -152.0), 10.0, 6.0, -30.0),
                                         ("lunate", (0.0, -148.0), 7.0, 7.0, 0.0),
                                         ("triquetrum", (13.0, -149.0), 6.0, 5.5, 30.0)):
        bones.append(Bone(name, (_rounded_block(P(*centre), half * k, r * k, angle, 0.8),),
                          _CARPAL_CORTEX, _CARPAL_TRAB, density))
    joints = (
        Joint("radiocarpal", P(-8.0, -141.5), (0.0, -1.0), radius.start, P(-8.0, -146.0)),
        Joint("distal_radioulnar", P(4.0, -128.0), (1.0, 0.0), P(0.0, -128.0), ulna.start),
        Joint("radiocapitellar", P(-5.0, 123.5), (0.0, 1.0), radius.end, P(-5.0, 126.0)),
        Joint("ulnohumeral", P(12.0, 124.0), (0.0, 1.0), P(12.0, 122.0), P(12.0, 126.0)),
    )
    limb = Rod(P(0.0, -200.0), P(0.0, 220.0),
               _scale_knots(((0.0, 27.0), (0.45, 30.0), (0.85, 38.0), (1.0, 40.0)), k),
               depth_ratio=0.78)
    return Anatomy(AnatomyKind.FOREARM, tuple(bones), (SoftRod(limb, 1.2, 4.0 * k),), (),
                   joints, (), BEAMS[AnatomyKind.FOREARM], FIELD_MM[AnatomyKind.FOREARM],
                   distal_at_top=True)


def _lower_leg(rng: np.random.Generator) -> Anatomy:
    k = float(rng.uniform(0.9, 1.05))
    density = float(rng.uniform(0.85, 1.1))

    def P(x, y):
        return (x * k, y * k)

    femur = (Rod(P(0.0, -330.0), P(0.0, -178.0),
                 _scale_knots(((0.0, 14.0), (0.7, 16.0), (0.9, 24.0), (1.0, 30.0)), k), 0.0,
                 14.0 * k),
             _ellipsoid(P(-19.0, -174.0), 21.0 * k, 17.0 * k, 0.0),
             _ellipsoid(P(19.0, -173.0), 21.0 * k, 18.0 * k, 0.0))
    tibia = (Rod(P(3.0, -148.0), P(6.0, 180.0),
                 _scale_knots(((0.0, 38.0), (0.05, 33.0), (0.15, 20.0), (0.35, 13.0),
                               (0.6, 12.0), (0.85, 14.0), (0.95, 21.0), (1.0, 23.0)), k),
                 4.0 * k, 3.0 * k),
             Rod(P(24.0, 168.0), P(27.0, 196.0), ((0.0, 8.0 * k), (1.0, 7.0 * k)), 4.0 * k,
                 6.0 * k))
    fibula = Rod(P(-34.0, -140.0), P(-30.0, 196.0),
                 _scale_knots(((0.0, 10.0), (0.06, 7.0), (0.15, 5.5), (0.8, 5.5), (0.93, 8.0),
                               (1.0, 9.0)), k), 7.0 * k, 8.0 * k)
    patella = _ellipsoid(P(0.0, -182.0), 22.0 * k, 20.0 * k, 0.0)
    talus = Rod(P(-26.0, 202.0), P(32.0, 202.0), ((0.0, 16.0 * k), (1.0, 16.0 * k)), 14.0 * k,
                14.0 * k)
    shaft_trab = ((0.0, 1.0), (0.12, 0.35), (0.88, 0.35), (1.0, 1.0))
    bones = (
        Bone("femur", femur, _scale_knots(((0.0, 4.0), (0.8, 3.0), (1.0, 0.8)), k),
             ((0.0, 0.3), (0.8, 0.6), (1.0, 1.0)), density),
        Bone("patella", (patella,), _scale_knots(((0.0, 0.8), (1.0, 0.8)), k),
             ((0.0, 0.8), (1.0, 0.8)), density),
        Bone("tibia", tibia, _scale_knots(((0.0, 0.8), (0.2, 4.5), (0.8, 4.5), (1.0, 0.8)), k),
             shaft_trab, density),
        Bone("fibula", (fibula,), _scale_knots(((0.0, 0.6), (0.2, 1.8), (0.8, 1.8), (1.0, 0.6)),
                                               k), shaft_trab, density),
        Bone("talus", (talus,), _scale_knots(((0.0, 0.8), (1.0, 0.8)), k),
             ((0.0, 0.9), (1.0, 0.9)), density),
    )
    joints = (
        Joint("knee_lateral", P(-19.0, -150.5), (0.0, 1.0), P(-19.0, -153.0), P(-19.0, -148.0)),
        Joint("knee_medial", P(19.0, -150.0), (0.0, 1.0), P(19.0, -152.0), P(19.0, -148.0)),
        Joint("proximal_tibiofibular", P(-28.0, -132.0), (-1.0, 0.0), P(-22.0, -132.0),
              P(-34.0, -132.0)),
        Joint("ankle", P(6.0, 183.0), (0.0, 1.0), P(6.0, 176.0), P(6.0, 190.0)),
        Joint("distal_tibiofibular", P(-22.0, 172.0), (-1.0, 0.0), P(-18.0, 172.0),
              P(-30.0, 172.0)),
    )
    limb = Rod(P(0.0, -280.0), P(0.0, 280.0),
               _scale_knots(((0.0, 55.0), (0.2, 52.0), (0.38, 57.0), (0.7, 40.0), (0.85, 33.0),
                             (1.0, 38.0)), k), depth_ratio=0.85)
    return Anatomy(AnatomyKind.LOWER_LEG, bones, (SoftRod(limb, 1.5, 7.0 * k),), (), joints, (),
                   BEAMS[AnatomyKind.LOWER_LEG], FIELD_MM[AnatomyKind.LOWER_LEG],
                   distal_at_top=False)


def _convex_hull(points) -> tuple[tuple[float, float], ...]:
    """Convex hull (counter-clockwise) by the monotone chain algorithm."""
    pts = sorted(set((float(x), float(y)) for x, y in points))

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return tuple(lower[:-1] + upper[:-1])
