"""Ground truth of the phantom's deposits: contrast, truth masks, CNR, and the film itself.

Definitions (used everywhere in calcitrack's accuracy figures):

- **Contrast** of a deposit at a pixel: the noiseless film value with the deposit minus the
  noiseless film value of the same film without that deposit, in final film value units on
  the source pixel grid (after detector blur and the log mapping).
- **Truth mask**: the pixels where a component's own contrast is at least 50 % of that
  component's peak contrast (its full-width-at-half-maximum extent), united over the
  deposit's components (a net's specks; one lump otherwise), restricted to soft tissue
  (never bone). One label value per deposit.
- **Noise**: the standard deviation of the film's pixel noise (the film minus its noiseless
  version, so rounding included) over soft-tissue pixels 1-4 mm around the deposit (up to
  8 mm when fewer than `MIN_ANNULUS_PX` pixels qualify), other deposits excluded.
- **CNR** = mean contrast over the truth mask / noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .acquisition import Scene, blur_kernel_radius, detector_blur, expose, predicted_noise_sd
from .morphology import DepositShape, thickness_on

ANNULUS_MM = (1.0, 4.0)
WIDE_ANNULUS_MM = 8.0
MIN_ANNULUS_PX = 40
HALF_MAXIMUM = 0.5


@dataclass(frozen=True)
class DepositTruth:
    """One row of the deposit truth table.

    Attributes
    ----------
    deposit_id : int
        The deposit's label value in the truth label image.
    track_id : int
        The same physical deposit keeps its track id on every visit of a series.
    morphology : str
        stone, mousse, plate, net, periarticular, acral or universalis.
    region : str
        digit1..digit5 (digit1 = thumb), palm or wrist on a hand; proximal, middle or distal
        on a forearm or lower leg; ``unassigned`` when inserted into a real film.
    fingertip, periarticular : bool
    joint : str
        The joint a periarticular deposit lies beside ("" otherwise).
    area_px : int
    area_mm2 : float
        Exactly ``area_px`` times the pixel area.
    cnr : float
        Achieved contrast-to-noise ratio (see the module docstring).
    requested_cnr : float
        The CNR the generator aimed at (NaN on follow-up visits, where the deposit's
        physical density, not its CNR, is fixed).
    mean_contrast, noise_sd : float
        Numerator and denominator of `cnr`, in film value units.
    calcium_mm : float
        Peak mineral thickness, in mm of cortical-bone equivalent.
    size_mm : float
        Largest dimension of the deposit's shape.
    centroid_row, centroid_col : float
        Centroid of the truth mask on the source pixel grid.
    equivalent_diameter_mm : float
        Diameter of the disc with the same area.
    """

    deposit_id: int
    track_id: int
    morphology: str
    region: str
    fingertip: bool
    periarticular: bool
    joint: str
    area_px: int
    area_mm2: float
    cnr: float
    requested_cnr: float
    mean_contrast: float
    noise_sd: float
    calcium_mm: float
    size_mm: float
    centroid_row: float
    centroid_col: float
    equivalent_diameter_mm: float


@dataclass(frozen=True, eq=False)
class FilmRender:
    """A rendered film with its truth (arrays on the film grid)."""

    values: np.ndarray
    noiseless: np.ndarray
    labels: np.ndarray
    deposits: tuple[DepositTruth, ...]
    deposit_mm: np.ndarray


# --- one deposit on its patch --------------------------------------------------------------

class _Patch:
    """A deposit and its surroundings, with every other part of the film held fixed."""

    def __init__(self, scene: Scene, shape: DepositShape, other_mm: np.ndarray | None = None):
        grid = scene.grid
        self.scene = scene
        self.sigma = scene.acquisition.blur_px
        self.r = blur_kernel_radius(self.sigma)
        margin = max(2 * self.r + 2, int(math.ceil(WIDE_ANNULUS_MM / grid.spacing_mm)) + self.r + 2)
        box = grid.box_of(shape.bounds(), margin_px=margin)
        if box is None:
            raise ValueError("deposit lies outside the film")
        self.box = box
        a = scene.attenuation[box]
        if other_mm is not None:
            a = a + scene.deposit_mu * other_mm[box]
        q = scene.quanta * scene.illumination[box]
        self.primary = (q * np.exp(-a)).astype(np.float32)
        self.without = (self.primary + q * scene.scatter[box]).astype(np.float32)
        bone = scene.bone_mask[box]
        self.soft = (scene.body_mask[box] & ~bone & scene.field_mask[box]
                     & ~scene.object_mask[box])
        self.unit = thickness_on(grid, shape, box)
        self.unit[bone] = 0.0
        if len(shape.components) > 1:
            self.units = []
            for i in range(len(shape.components)):
                u = thickness_on(grid, shape, box, i)
                u[bone] = 0.0
                self.units.append(u)
        else:
            self.units = [self.unit]
        self.f_without = self.values(self.without)
        # a frame of `r` pixels where the patch blur differs from the film's (reflection)
        self.valid = np.zeros(self.unit.shape, dtype=bool)
        rows, cols = grid.shape
        top = 0 if box[0].start == 0 else self.r
        bottom = 0 if box[0].stop == rows else self.r
        left = 0 if box[1].start == 0 else self.r
        right = 0 if box[1].stop == cols else self.r
        self.valid[top:self.unit.shape[0] - bottom, left:self.unit.shape[1] - right] = True
        self.allowed = scene.body_mask[box] & ~bone

    def values(self, quanta: np.ndarray) -> np.ndarray:
        return self.scene.scale.noiseless(detector_blur(quanta, self.sigma))

    def with_deposit(self, thickness_mm: np.ndarray) -> np.ndarray:
        mu = self.scene.deposit_mu
        return self.without + self.primary * (np.exp(-mu * thickness_mm) - 1.0)

    def contrast(self, thickness_mm: np.ndarray) -> np.ndarray:
        c = self.values(self.with_deposit(thickness_mm)) - self.f_without
        return np.where(self.valid, c, 0.0).astype(np.float32)

    def truth(self, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """(truth mask, whole-deposit contrast) at a given deposit scale."""
        total = self.contrast(scale * self.unit)
        mask = np.zeros(total.shape, dtype=bool)
        for unit in self.units:
            c = total if unit is self.unit else self.contrast(scale * unit)
            peak = float(c.max())
            if peak > 0:
                mask |= c >= HALF_MAXIMUM * peak
        return mask & self.allowed, total

    def annulus(self, exclude: np.ndarray | None = None) -> np.ndarray:
        support = self.unit > 0
        spacing = self.scene.grid.spacing_mm
        dist = cv2.distanceTransform((~support).astype(np.uint8), cv2.DIST_L2, 5) * spacing
        usable = self.soft & self.valid
        if exclude is not None:
            usable &= ~exclude
        ring = (dist >= ANNULUS_MM[0]) & (dist <= ANNULUS_MM[1]) & usable
        if ring.sum() < MIN_ANNULUS_PX:
            ring = (dist >= ANNULUS_MM[0]) & (dist <= WIDE_ANNULUS_MM) & usable
        return ring


def solve_scale(scene: Scene, shape: DepositShape, target_cnr: float,
                exclude: np.ndarray | None = None, cap: float | None = None
                ) -> tuple[float, float]:
    """Mineral scale that gives `target_cnr` on this film, capped at the plausible density.

    `cap` overrides the shape's own plausible maximum (`DepositShape.max_scale`).

    The noise is the expected (model) noise around the deposit; the achieved CNR on the
    noisy film is measured later by `render_film`.

    Returns
    -------
    scale : float
    cnr : float
        The CNR the scale gives with the expected noise (below the target when capped).
    """
    patch = _Patch(scene, shape)
    ring = patch.annulus(None if exclude is None else exclude[patch.box])
    sd_map = predicted_noise_sd(detector_blur(patch.without, patch.sigma), scene)
    region = ring if ring.any() else (patch.unit > 0)
    sd = float(np.sqrt(np.mean(sd_map[region] ** 2)))

    def cnr(scale):
        mask, c = patch.truth(scale)
        return float(c[mask].mean()) / sd if mask.any() else 0.0

    cap = shape.max_scale if cap is None else cap
    scale = min(0.02, cap)
    value = cnr(scale)
    for _ in range(40):
        if value <= 0:
            return scale, 0.0
        if abs(value / target_cnr - 1.0) < 0.002:
            break
        scale = min(scale * target_cnr / value, cap)
        value = cnr(scale)
        if scale >= cap and value < target_cnr:
            break
    return scale, value


# --- the whole film ------------------------------------------------------------------------

def render_film(scene: Scene, shapes: list[DepositShape] | tuple[DepositShape, ...]
                ) -> FilmRender:
    """Expose a film with its deposits and measure each deposit's exact truth.

    Parameters
    ----------
    scene : Scene
    shapes : sequence of DepositShape
        Deposits with their final `scale`; label values follow this order (1, 2, ...).
    """
    grid = scene.grid
    deposit_mm = np.zeros(grid.shape, dtype=np.float32)
    drawn = []
    for shape in shapes:
        box = grid.box_of(shape.bounds(), margin_px=1)
        t = shape.scale * thickness_on(grid, shape, box)
        t[scene.bone_mask[box]] = 0.0
        deposit_mm[box] += t
        drawn.append((box, t))
    expected = scene.expected_quanta(deposit_mm if shapes else None)
    values = scene.scale.quantised(expose(expected, scene.acquisition))
    noiseless = scene.scale.noiseless(detector_blur(expected, scene.acquisition.blur_px))
    labels = np.zeros(grid.shape, dtype=np.int32)
    truths = []
    anatomy = scene.anatomy
    spacing = grid.spacing_mm
    reach = int(math.ceil(1.0 / spacing))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    for label, (shape, (box, t)) in enumerate(zip(shapes, drawn), start=1):
        others = deposit_mm.copy()
        others[box] -= t
        patch = _Patch(scene, shape, others)
        mask, contrast = patch.truth(shape.scale)
        if not mask.any():
            raise RuntimeError(f"deposit {label} ({shape.morphology}) has an empty truth mask")
        region_labels = labels[patch.box]
        if (region_labels[mask] != 0).any():
            raise RuntimeError(f"deposit {label} overlaps another deposit")
        region_labels[mask] = label
        other_support = cv2.dilate((others[patch.box] > 0).astype(np.uint8), kernel) > 0
        ring = patch.annulus(other_support)
        noise = values[patch.box] - noiseless[patch.box]
        if ring.sum() >= 2:
            noise_sd = float(noise[ring].std())
        else:
            sd_map = predicted_noise_sd(detector_blur(patch.without, patch.sigma), scene)
            noise_sd = float(np.sqrt(np.mean(sd_map[mask] ** 2)))
        mean_contrast = float(contrast[mask].mean())
        rr, cc = np.nonzero(mask)
        row = float(rr.mean() + patch.box[0].start)
        col = float(cc.mean() + patch.box[1].start)
        area_px = int(mask.sum())
        area_mm2 = area_px * spacing * spacing
        if anatomy is not None:
            x, y = grid.to_patient(row, col)
            region = anatomy.regions[int(anatomy.region_at(np.array([x]), np.array([y]))[0])]
            fingertip = bool(anatomy.is_fingertip(np.array([x]), np.array([y]))[0])
        else:
            region, fingertip = "unassigned", False
        touching = bool((cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)[
            scene.bone_mask[patch.box]].any())
        truths.append(DepositTruth(
            deposit_id=label, track_id=shape.track_id, morphology=shape.morphology,
            region=region, fingertip=fingertip or shape.morphology == "acral",
            periarticular=shape.periarticular and touching, joint=shape.joint,
            area_px=area_px, area_mm2=area_mm2,
            cnr=mean_contrast / noise_sd if noise_sd > 0 else math.inf,
            requested_cnr=(math.nan if shape.requested_cnr is None else float(shape.requested_cnr)),
            mean_contrast=mean_contrast, noise_sd=noise_sd,
            calcium_mm=float(t.max()), size_mm=float(shape.size_mm),
            centroid_row=row, centroid_col=col,
            equivalent_diameter_mm=2.0 * math.sqrt(area_mm2 / math.pi)))
    return FilmRender(values, noiseless, labels, tuple(truths), deposit_mm)
