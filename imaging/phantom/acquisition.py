"""Acquisition physics of the phantom: from patient shapes to film values.

The model works in the log (attenuation) domain, as a digital radiograph does:

1. Attenuation map ``A`` (a line integral, nepers): soft tissue (skin, fat, muscle layers),
   bone (cortex denser than the trabecular core, which displaces soft tissue), metal and lead
   markers. Coefficients are for a hand beam (about 50 kVp) and scaled per body part.
2. Expected detected quanta per pixel ``E = Q · illumination · (exp(−A) + S)`` with ``Q`` set
   by the dose, the illumination the anode heel gradient times the collimated field, and ``S``
   a smooth scatter term.
3. Noise and blur: Poisson quanta, then detector blur (a Gaussian MTF), then Gaussian
   electronic noise.
4. Film value ``v = offset + gain · ln(Q / detected)`` (attenuation-positive: denser is
   brighter), quantised to the stored bit depth; unexposed pixels (collimated borders, lead)
   saturate at the top of the range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .anatomy import Anatomy, PatientTexture, patient_texture
from .shapes import FilmGrid, Rod, _profile, union_bounds

# Linear attenuation coefficients (per mm) for a hand beam (~50 kVp, ~32 keV effective).
MU_SKIN = 0.036
MU_FAT = 0.025
MU_MUSCLE = 0.033
MU_CORTEX = 0.25
MU_TRABECULAR = 0.095   # trabecular bone at full density (mineral + marrow)
MU_MARROW = 0.028
MU_LEAD = 22.0
MU_STEEL = 2.4
MU_PLASTIC = 0.030
#: Ray length (mm) through trabecular bone at which the texture has its full contrast.
TEXTURE_DEPTH_MM = 4.0
#: Excess attenuation of a calcium deposit per mm of cortical-bone-equivalent thickness: the
#: deposit replaces soft tissue, so its contrast is that of cortex over muscle.
MU_DEPOSIT = MU_CORTEX - MU_MUSCLE


@dataclass(frozen=True)
class Marker:
    """A lead letter ("R" or "L") in a lead ring on a plastic disc, placed on the film."""

    letter: str = "R"
    radius_mm: float = 9.0
    corner: int = 0
    """Preferred film corner: 0 top-right, 1 top-left, 2 bottom-left, 3 bottom-right."""


@dataclass(frozen=True)
class MetalPart:
    """Orthopaedic hardware in patient space (a Kirschner wire or a screw)."""

    kind: str
    rods: tuple[Rod, ...]


@dataclass(frozen=True)
class Acquisition:
    """How one film is exposed and recorded.

    Attributes
    ----------
    grid : FilmGrid
        The film's pixel grid and the patient's pose on it.
    dose : float
        Relative exposure (1 = a standard exposure for the body part). Noise variance in the
        log domain is inversely proportional to it.
    blur_mm : float
        Standard deviation of the detector's Gaussian point spread function.
    heel_effect : float
        Fractional fall of exposure across the field along `heel_axis` (anode heel effect).
    heel_axis : (float, float)
        Unit (drow, dcol) direction in which exposure falls.
    collimation_mm : (top, bottom, left, right) or None
        Margins of the collimated field around the body; None leaves the whole film exposed.
    collimation_tilt_deg : float
        Tilt of the collimator blades relative to the film.
    marker : Marker or None
    scatter_fraction : float
        Scatter-to-primary scale under thick tissue.
    electronic_noise : float
        Standard deviation of the detector's additive noise, in quanta.
    bits_stored : int
        Stored bit depth (12 to 16) of the film values.
    noise_seed : int
        Seed of the quantum and electronic noise.
    """

    grid: FilmGrid
    dose: float = 1.0
    blur_mm: float = 0.1
    heel_effect: float = 0.1
    heel_axis: tuple[float, float] = (1.0, 0.0)
    collimation_mm: tuple[float, float, float, float] | None = (10.0, 10.0, 10.0, 10.0)
    collimation_tilt_deg: float = 0.0
    marker: Marker | None = field(default_factory=Marker)
    scatter_fraction: float = 0.12
    electronic_noise: float = 2.0
    bits_stored: int = 12
    noise_seed: int = 0

    @property
    def blur_px(self) -> float:
        return self.blur_mm / self.grid.spacing_mm


@dataclass(frozen=True)
class FilmScale:
    """The log-domain mapping from detected quanta to film values.

    ``value = offset + gain · ln(reference_quanta / detected)``, clipped to [0, max_value].
    """

    offset: float
    gain: float
    max_value: int
    reference_quanta: float

    @classmethod
    def for_film(cls, bits_stored: int, attenuation_range: float, reference_quanta: float):
        max_value = (1 << bits_stored) - 1
        return cls(0.08 * max_value, 0.86 * max_value / attenuation_range, max_value,
                   reference_quanta)

    @property
    def floor_quanta(self) -> float:
        """Detected quanta at or below which the film saturates."""
        return self.reference_quanta * math.exp(-(self.max_value - self.offset) / self.gain)

    def noiseless(self, quanta: np.ndarray) -> np.ndarray:
        """Unquantised film values of expected (blurred) quanta."""
        q = np.maximum(quanta, self.floor_quanta)
        values = self.offset + self.gain * (math.log(self.reference_quanta) - np.log(q))
        return np.clip(values, 0.0, self.max_value).astype(np.float32)

    def quantised(self, quanta: np.ndarray) -> np.ndarray:
        """Stored film values (integers as float32) of detected quanta."""
        return np.round(self.noiseless(quanta)).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything about one film except the deposits and the noise.

    Attributes
    ----------
    attenuation : ndarray of float32
        Line integral without deposits (nepers).
    illumination : ndarray of float32
        Heel gradient times collimated field (0 where unexposed).
    scatter : ndarray of float32
        Scatter, in units of the open-field primary exposure.
    body_mask, bone_mask, field_mask, object_mask : ndarray of bool
        Exposed soft tissue or bone; exposed bone; exposed field; lead markers and metal.
    quanta : float
        Expected detected quanta per pixel in the open field at unit illumination.
    deposit_mu : float
        Excess attenuation of deposits per mm for this beam.
    scale : FilmScale
    """

    acquisition: Acquisition
    anatomy: Anatomy
    attenuation: np.ndarray
    illumination: np.ndarray
    scatter: np.ndarray
    body_mask: np.ndarray
    bone_mask: np.ndarray
    field_mask: np.ndarray
    object_mask: np.ndarray
    quanta: float
    deposit_mu: float
    scale: FilmScale
    notes: tuple[str, ...] = ()

    @property
    def grid(self) -> FilmGrid:
        return self.acquisition.grid

    def expected_quanta(self, deposit_thickness: np.ndarray | None = None,
                        box: tuple[slice, slice] | None = None) -> np.ndarray:
        """Expected quanta before blur, optionally with deposits (mm, same box) added."""
        box = box or (slice(None), slice(None))
        a = self.attenuation[box]
        if deposit_thickness is not None:
            a = a + self.deposit_mu * deposit_thickness
        return (self.quanta * self.illumination[box]
                * (np.exp(-a) + self.scatter[box])).astype(np.float32)


# --- rendering -----------------------------------------------------------------------------

def render_scene(anatomy: Anatomy, acquisition: Acquisition, *,
                 metal: tuple[MetalPart, ...] = (), texture: PatientTexture | None = None) -> Scene:
    """Draw a patient's anatomy, hardware and the film's markers and field.

    Parameters
    ----------
    anatomy : Anatomy
    acquisition : Acquisition
    metal : tuple of MetalPart
        Hardware in patient space (moves with the patient).
    texture : PatientTexture, optional
        The patient's texture, when already computed (it depends only on the anatomy).
    """
    grid = acquisition.grid
    shape = grid.shape
    texture = texture or patient_texture(anatomy)
    beam = anatomy.beam
    rows = np.arange(shape[0], dtype=np.float32)[:, None]
    cols = np.arange(shape[1], dtype=np.float32)[None, :]
    px, py = grid.to_patient(rows, cols)

    soft_total, soft_att = _soft_tissue(anatomy, grid, px, py, texture)
    bone_att, bone_total = _bones(anatomy, grid, px, py, texture)
    attenuation = beam.soft_factor * soft_att + bone_att
    body = soft_total > 0
    bone = bone_total > 0
    objects = np.zeros(shape, dtype=bool)
    for part in metal:
        for rod in part.rods:
            box = grid.box_of(rod.bounds())
            if box is None:
                continue
            _, d, radius = rod.coordinates(px[box], py[box])
            chord = rod.chord(d, radius)
            attenuation[box] += MU_STEEL * beam.mineral_factor * chord
            objects[box] |= chord > 0

    # scatter: a smooth haze that grows with the tissue in the beam
    small = cv2.resize(attenuation, None, fx=1 / 8, fy=1 / 8, interpolation=cv2.INTER_AREA)
    haze = 1.0 - np.exp(-np.minimum(small, 6.0))
    sigma = max(20.0 / (grid.spacing_mm * 8), 1.0)
    haze = cv2.GaussianBlur(haze, (0, 0), sigma)
    scatter = acquisition.scatter_fraction * cv2.resize(haze, (shape[1], shape[0]),
                                                        interpolation=cv2.INTER_LINEAR)

    field_map = _collimation(acquisition, body)
    notes = []
    if acquisition.marker is not None:
        placed = _draw_marker(acquisition, attenuation, objects, body, field_map > 0.5)
        if not placed:
            notes.append("no room for the lead marker outside the body")
    heel = _heel(acquisition)
    illumination = (heel * field_map).astype(np.float32)
    field_mask = field_map >= 0.5
    quanta = beam.quanta_per_mm2 * acquisition.dose * grid.spacing_mm ** 2
    scale = FilmScale.for_film(acquisition.bits_stored, beam.attenuation_range, quanta)
    return Scene(acquisition, anatomy, attenuation.astype(np.float32), illumination,
                 scatter.astype(np.float32), body & field_mask, bone & field_mask, field_mask,
                 objects & field_mask, quanta, MU_DEPOSIT * beam.mineral_factor, scale,
                 tuple(notes))


def _soft_tissue(anatomy, grid, px, py, texture):
    """Projected soft-tissue thickness (max-union of parts) and its attenuation per mm."""
    total = np.zeros(grid.shape, dtype=np.float32)
    att = np.zeros(grid.shape, dtype=np.float32)
    for part in anatomy.soft_rods:
        rod = part.rod
        box = grid.box_of(rod.bounds())
        if box is None:
            continue
        x, y = px[box], py[box]
        _, d, radius = rod.coordinates(x, y)
        outer = rod.chord(d, radius)
        under_skin = rod.chord(d, np.maximum(radius - part.skin_mm, 0.0))
        core = rod.chord(d, np.maximum(radius - part.skin_mm - part.fat_mm, 0.0))
        a = (MU_SKIN * (outer - under_skin) + MU_FAT * (under_skin - core)
             + MU_MUSCLE * core * texture.sample("muscle", x, y))
        better = outer > total[box]
        total[box] = np.where(better, outer, total[box])
        att[box] = np.where(better, a, att[box])
    for slab in anatomy.slabs:
        xs, ys = [p[0] for p in slab.polygon], [p[1] for p in slab.polygon]
        box = grid.box_of((min(xs), max(xs), min(ys), max(ys)), margin_px=2)
        if box is None:
            continue
        rows, cols = grid.to_film(xs, ys)
        rows, cols = rows - box[0].start, cols - box[1].start
        pts = np.round(np.stack([cols, rows], axis=1) * 16).astype(np.int32)
        mask = np.zeros(total[box].shape, dtype=np.uint8)
        cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=4)
        depth = cv2.distanceTransform(mask, cv2.DIST_L2, 5) * np.float32(grid.spacing_mm
                                                                         / grid.pose.scale)
        outer = _lens(depth, slab.thickness_mm, slab.rounding_mm)
        under_skin = _lens(depth - slab.skin_mm, slab.thickness_mm - 2 * slab.skin_mm,
                           slab.rounding_mm - slab.skin_mm)
        inner = slab.skin_mm + slab.fat_mm
        core = _lens(depth - inner, slab.thickness_mm - 2 * inner, slab.rounding_mm - inner)
        a = (MU_SKIN * (outer - under_skin) + MU_FAT * (under_skin - core)
             + MU_MUSCLE * core * texture.sample("muscle", px[box], py[box]))
        better = outer > total[box]
        total[box] = np.where(better, outer, total[box])
        att[box] = np.where(better, a, att[box])
    return total, att


def _lens(depth: np.ndarray, thickness: float, rounding: float) -> np.ndarray:
    """Thickness of a slab with rounded borders at `depth` mm inside its outline."""
    g = np.clip(depth / np.float32(rounding), 0.0, 1.0)
    lens = np.float32(thickness) * np.sqrt(np.clip(1 - (1 - g) ** 2, 0, 1))
    return np.where(depth > 0, lens, np.float32(0)).astype(np.float32)


def _bones(anatomy, grid, px, py, texture):
    """Bone attenuation (cortex + trabecular core − displaced muscle) and projected thickness."""
    beam = anatomy.beam
    att = np.zeros(grid.shape, dtype=np.float32)
    total = np.zeros(grid.shape, dtype=np.float32)
    for bone in anatomy.bones:
        box = grid.box_of(union_bounds(rod.bounds() for rod in bone.rods))
        if box is None:
            continue
        x, y = px[box], py[box]
        best_outer = np.zeros(x.shape, dtype=np.float32)
        best_att = np.zeros(x.shape, dtype=np.float32)
        tex = None
        for rod in bone.rods:
            u, d, radius = rod.coordinates(x, y)
            if not np.any(radius > 0):
                continue
            if tex is None:
                tex = texture.sample("trabecular", x, y)
            uc = np.clip(u, 0.0, 1.0)
            cortex = _profile(bone.cortex_knots, uc)
            trab = _profile(bone.trabecular_knots, uc)
            outer = rod.chord(d, radius)
            inner = rod.chord(d, np.maximum(radius - cortex, 0.0))
            # a longer ray through the trabecular network averages more of it out
            depth = np.sqrt(np.float32(TEXTURE_DEPTH_MM) / np.maximum(inner, TEXTURE_DEPTH_MM))
            texture_now = 1.0 + (tex - 1.0) * depth
            core_mu = (MU_MARROW + (MU_TRABECULAR - MU_MARROW) * bone.density * trab
                       * texture_now)
            a = (beam.mineral_factor * (MU_CORTEX * bone.density * (outer - inner)
                                        + core_mu * inner)
                 - beam.soft_factor * MU_MUSCLE * outer)
            better = outer > best_outer
            best_outer = np.where(better, outer, best_outer)
            best_att = np.where(better, a, best_att)
        att[box] += best_att
        total[box] += best_outer
    return att, total


def _collimation(acquisition: Acquisition, body: np.ndarray) -> np.ndarray:
    """Exposed fraction of each pixel: a tilted rectangle around the body with soft edges."""
    shape = body.shape
    if acquisition.collimation_mm is None:
        return np.ones(shape, dtype=np.float32)
    spacing = acquisition.grid.spacing_mm
    rows = np.flatnonzero(body.any(axis=1))
    cols = np.flatnonzero(body.any(axis=0))
    if rows.size == 0:
        rows, cols = np.array([0, shape[0] - 1]), np.array([0, shape[1] - 1])
    top, bottom, left, right = (m / spacing for m in acquisition.collimation_mm)
    r0, r1 = float(rows[0]) - top, float(rows[-1]) + bottom
    c0, c1 = float(cols[0]) - left, float(cols[-1]) + right
    # blades never lie outside the film: clip into it, keeping a thin unexposed border when
    # the body reaches the film edge (as when the forearm leaves a hand film)
    inset = 3.0 / spacing
    r0, c0 = max(r0, inset), max(c0, inset)
    r1, c1 = min(r1, shape[0] - 1 - inset), min(c1, shape[1] - 1 - inset)
    theta = math.radians(acquisition.collimation_tilt_deg)
    centre = np.array([(c0 + c1) / 2, (r0 + r1) / 2])
    half = np.array([(c1 - c0) / 2, (r1 - r0) / 2])
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
    # pixel centres are at integer coordinates; fillPoly's are at integer coordinates too
    pts = np.round((corners @ rot.T + centre) * 16).astype(np.int32)
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_AA, shift=4)
    penumbra_px = max(0.3 / spacing, 0.5)
    field_map = cv2.GaussianBlur(mask.astype(np.float32) * np.float32(1 / 255), (0, 0), penumbra_px)
    return np.clip(field_map, 0.0, 1.0)


def _heel(acquisition: Acquisition) -> np.ndarray:
    shape = acquisition.grid.shape
    dr, dc = acquisition.heel_axis
    rr = (np.arange(shape[0], dtype=np.float32)[:, None] / max(shape[0] - 1, 1) - 0.5)
    cc = (np.arange(shape[1], dtype=np.float32)[None, :] / max(shape[1] - 1, 1) - 0.5)
    t = dr * rr + dc * cc
    # exposure falls towards the anode, a little faster near the edge
    return (1.0 - acquisition.heel_effect * (t + 0.6 * t * np.abs(t))).astype(np.float32)


def _draw_marker(acquisition, attenuation, objects, body, field_mask) -> bool:
    """Put the lead marker in the first free corner of the field; False if none is free."""
    marker = acquisition.marker
    spacing = acquisition.grid.spacing_mm
    radius = marker.radius_mm / spacing
    clearance = cv2.distanceTransform((~body).astype(np.uint8), cv2.DIST_L2, 3)
    keep_out = clearance < radius + 3.0 / spacing
    rows = np.flatnonzero(field_mask.any(axis=1))
    cols = np.flatnonzero(field_mask.any(axis=0))
    if rows.size == 0:
        return False
    inset = radius + 6.0 / spacing
    corners = [(rows[0] + inset, cols[-1] - inset), (rows[0] + inset, cols[0] + inset),
               (rows[-1] - inset, cols[0] + inset), (rows[-1] - inset, cols[-1] - inset)]
    order = corners[marker.corner:] + corners[:marker.corner]
    # also try points part-way along the edges of the field
    extra = [((rows[0] + rows[-1]) / 2, cols[-1] - inset), ((rows[0] + rows[-1]) / 2,
                                                          cols[0] + inset)]
    for r, c in order + extra:
        r, c = int(round(r)), int(round(c))
        if not (0 <= r < body.shape[0] and 0 <= c < body.shape[1]):
            continue
        if keep_out[r, c] or not field_mask[r, c]:
            continue
        size = int(math.ceil(radius)) + 2
        box = (slice(max(r - size, 0), r + size + 1), slice(max(c - size, 0), c + size + 1))
        disc = np.zeros(attenuation[box].shape, dtype=np.uint8)
        ring = np.zeros_like(disc)
        letter = np.zeros_like(disc)
        centre = (c - box[1].start, r - box[0].start)
        cv2.circle(disc, centre, int(radius), 1, -1, cv2.LINE_AA)
        cv2.circle(ring, centre, int(radius * 0.92), 1, max(int(0.9 / spacing), 1), cv2.LINE_AA)
        height = 0.95 * radius
        font = cv2.FONT_HERSHEY_DUPLEX
        scale = cv2.getFontScaleFromHeight(font, int(height), max(int(1.0 / spacing), 1))
        thick = max(int(1.1 / spacing), 1)
        (w, h), _ = cv2.getTextSize(marker.letter, font, scale, thick)
        cv2.putText(letter, marker.letter, (centre[0] - w // 2, centre[1] + h // 2), font, scale,
                    1, thick, cv2.LINE_AA)
        lead = (ring > 0) | (letter > 0)
        attenuation[box] += MU_PLASTIC * 4.0 * disc + MU_LEAD * 1.0 * lead
        objects[box] |= lead
        return True
    return False


# --- exposure ------------------------------------------------------------------------------

#: Mean count below which quanta are drawn from the Poisson law itself.
POISSON_EXACT_BELOW = 50.0


def blur_kernel_radius(sigma_px: float) -> int:
    """Half-size of the detector blur kernel, in pixels."""
    return max(1, int(math.ceil(4.0 * sigma_px)))


def detector_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """The detector's point spread function (Gaussian), exactly as applied to every film."""
    r = blur_kernel_radius(sigma_px)
    return cv2.GaussianBlur(np.asarray(image, dtype=np.float32), (2 * r + 1, 2 * r + 1),
                            sigma_px, borderType=cv2.BORDER_REFLECT)


def noise_gain(sigma_px: float) -> float:
    """Sum of squared blur weights: the factor by which blur reduces white-noise variance."""
    r = blur_kernel_radius(sigma_px)
    k = cv2.getGaussianKernel(2 * r + 1, sigma_px).ravel()
    return float((k ** 2).sum() ** 2)


def expose(expected: np.ndarray, acquisition: Acquisition) -> np.ndarray:
    """Detected quanta: Poisson quanta, detector blur, then electronic noise (seeded)."""
    rng = np.random.default_rng([acquisition.noise_seed, 303])
    expected = np.asarray(expected, dtype=np.float32)
    # Poisson quanta: the normal approximation where counts are high (exact to well under a
    # percent there), true Poisson draws where they are low (behind lead and metal)
    quanta = expected + np.sqrt(expected) * rng.standard_normal(expected.shape, dtype=np.float32)
    low = expected < POISSON_EXACT_BELOW
    if low.any():
        quanta[low] = rng.poisson(expected[low].astype(np.float64))
    detected = detector_blur(quanta, acquisition.blur_px)
    detected += acquisition.electronic_noise * rng.standard_normal(detected.shape,
                                                                   dtype=np.float32)
    return detected


def predicted_noise_sd(blurred_expected: np.ndarray, scene: Scene) -> np.ndarray:
    """Standard deviation of film values expected from quantum, electronic and rounding noise."""
    acq = scene.acquisition
    e = np.maximum(blurred_expected, scene.scale.floor_quanta)
    var_quanta = noise_gain(acq.blur_px) * e + acq.electronic_noise ** 2
    return np.sqrt(scene.scale.gain ** 2 * var_quanta / (e * e) + 1.0 / 12.0).astype(np.float32)


# --- hardware ------------------------------------------------------------------------------

_HARDWARE_BONES = {"hand": ("mc2", "mc3", "mc4", "mc5", "radius"),
                   "forearm": ("radius", "ulna"),
                   "lower_leg": ("tibia", "fibula")}


def make_hardware(kind: str, anatomy: Anatomy, rng: np.random.Generator
                  ) -> tuple[MetalPart, ...]:
    """A Kirschner wire (``"wire"``) or a bone screw (``"screw"``) through one of the bones.

    Parameters
    ----------
    kind : {"wire", "screw"}
    anatomy : Anatomy
    rng : numpy.random.Generator
    """
    if kind not in ("wire", "screw"):
        raise ValueError(f"metal must be 'wire' or 'screw', got {kind!r}")
    names = _HARDWARE_BONES[anatomy.kind.value]
    bone = anatomy.bone(str(rng.choice(names)))
    rod = bone.rods[0]
    fraction = float(rng.uniform(0.35, 0.7)) if bone.name != "radius" else float(
        rng.uniform(0.05, 0.2))
    centre = rod.point_at(fraction)
    ax, ay = rod.axis
    small = anatomy.kind.value == "hand"
    if kind == "wire":
        turn = math.radians(float(rng.choice([-1, 1])) * float(rng.uniform(20, 55)))
        d = (ax * math.cos(turn) - ay * math.sin(turn), ax * math.sin(turn) + ay * math.cos(turn))
        length = (45.0 if small else 90.0) * float(rng.uniform(0.8, 1.2))
        radius = 0.8 if small else 1.0
        start = (centre[0] - 0.5 * length * d[0], centre[1] - 0.5 * length * d[1])
        end = (centre[0] + 0.5 * length * d[0], centre[1] + 0.5 * length * d[1])
        return (MetalPart("wire", (Rod(start, end, ((0.0, radius), (1.0, radius)), radius,
                                       2.5 * radius),)),)
    turn = math.radians(90.0 + float(rng.uniform(-20, 20)))
    d = (ax * math.cos(turn) - ay * math.sin(turn), ax * math.sin(turn) + ay * math.cos(turn))
    bone_radius = rod.radius_at(fraction)
    length = 2.2 * bone_radius + 2.0
    minor, major, pitch = (0.9, 1.25, 0.6) if small else (1.6, 2.25, 1.0)
    start = (centre[0] - 0.5 * length * d[0], centre[1] - 0.5 * length * d[1])
    end = (centre[0] + 0.5 * length * d[0], centre[1] + 0.5 * length * d[1])
    n = max(int(length / (pitch / 2)), 2)
    knots = tuple((i / n, major if i % 2 else minor) for i in range(n + 1))
    head_length = 1.8 if small else 3.0
    head_end = (start[0] - head_length * d[0], start[1] - head_length * d[1])
    head_radius = 2.0 * major
    shaft = Rod(start, end, knots, 0.0, 1.5 * minor)
    head = Rod(head_end, start, ((0.0, head_radius), (1.0, head_radius)), 0.6, 0.0)
    return (MetalPart("screw", (shaft, head)),)
