"""Inserting synthetic deposits into a real film, with the same truth as a phantom film.

A real film has no noiseless version and no known gain, so insertion works in film value
units directly: a deposit adds ``k · blur(t)`` to the film, where ``t`` is the deposit's
thickness profile drawn on the film grid (`morphology.thickness_on`), ``blur`` the detector
blur (`blur_mm`), and ``k`` is chosen so that the deposit's CNR is the requested one. The
truth mask is the FWHM extent of each component's ``blur(t)`` (as for phantoms), in soft
tissue only. The noise is estimated from the film itself: the robust standard deviation
(1.4826 x MAD) of the film minus its Gaussian-smoothed self (sigma 1.5 px) over soft tissue
1-4 mm around the deposit, corrected for the part of white noise the smoothing removes.
Pixels are rounded back to integers when the film's were integers, and the achieved CNR is
measured on the rounded result.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from ..radiograph import Radiograph
from .film import InsertionSpec, PhantomFilm, sample_cnr
from .morphology import MORPHOLOGIES, thickness_on
from .placement import Canvas, place_deposits
from .shapes import FilmGrid
from .truth import ANNULUS_MM, HALF_MAXIMUM, MIN_ANNULUS_PX, WIDE_ANNULUS_MM, DepositTruth

#: Smoothing used by the noise estimate (pixels).
NOISE_SMOOTHING_PX = 1.5


def estimate_noise_sd(pixels: np.ndarray, where: np.ndarray) -> float:
    """Robust pixel-noise standard deviation of a film over the pixels `where`.

    The film minus its Gaussian-smoothed self keeps the noise and little anatomy; its
    1.4826 x MAD, divided by the fraction of white-noise standard deviation the residual
    keeps, estimates the noise.
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    residual = pixels - cv2.GaussianBlur(pixels, (0, 0), NOISE_SMOOTHING_PX,
                                         borderType=cv2.BORDER_REFLECT)
    values = residual[where]
    if values.size == 0:
        return math.nan
    mad = float(np.median(np.abs(values - np.median(values))))
    r = int(math.ceil(4 * NOISE_SMOOTHING_PX))
    k = cv2.getGaussianKernel(2 * r + 1, NOISE_SMOOTHING_PX).ravel()
    centre = float(k[r] ** 2)
    kept = math.sqrt(1.0 - 2.0 * centre + float((k ** 2).sum() ** 2))
    return 1.4826 * mad / kept


def insert_deposits(
    radiograph: Radiograph,
    soft_tissue_mask: np.ndarray,
    *,
    n: int,
    seed: int,
    bone_mask: np.ndarray | None = None,
    field_mask: np.ndarray | None = None,
    object_mask: np.ndarray | None = None,
    cnr_range: tuple[float, float] = (2.0, 40.0),
    size_range_mm: tuple[float, float] = (0.5, 30.0),
    morphologies: tuple[str, ...] | None = None,
    blur_mm: float = 0.1,
) -> PhantomFilm:
    """Insert `n` synthetic deposits into the soft tissue of a real film.

    Parameters
    ----------
    radiograph : Radiograph
        A calibrated film (isotropic spacing), attenuation-positive.
    soft_tissue_mask : ndarray of bool
        Where deposits may go (body minus bone, in the film's grid).
    n : int
        Number of deposits.
    seed : int
    bone_mask : ndarray of bool, optional
        Bone; needed for periarticular deposits (against the bone outline).
    field_mask, object_mask : ndarray of bool, optional
        Exposed field (default: everything) and markers/metal to keep away from.
    cnr_range : (float, float)
    size_range_mm : (float, float)
    morphologies : tuple of str, optional
        Default: all but acral, plus periarticular only when `bone_mask` is given.
    blur_mm : float
        Blur given to the inserted deposits (the film's own sharpness).

    Returns
    -------
    PhantomFilm
        With the modified radiograph, truth labels and deposit table (region
        ``unassigned``; `calcium_mm` NaN because a real film's gain is unknown).
    """
    if radiograph.spacing_mm is None:
        raise ValueError("insertion needs a calibrated film (spacing in mm)")
    sr, sc = radiograph.spacing_mm
    if not math.isclose(sr, sc, rel_tol=1e-6):
        raise ValueError(f"insertion needs isotropic pixels, got spacing {radiograph.spacing_mm}")
    shape = radiograph.shape
    soft = np.asarray(soft_tissue_mask, dtype=bool)
    if soft.shape != shape:
        raise ValueError(f"soft_tissue_mask shape {soft.shape} differs from the film {shape}")
    bone = np.zeros(shape, bool) if bone_mask is None else np.asarray(bone_mask, dtype=bool)
    field = np.ones(shape, bool) if field_mask is None else np.asarray(field_mask, dtype=bool)
    objects = (np.zeros(shape, bool) if object_mask is None
               else np.asarray(object_mask, dtype=bool))
    if morphologies is None:
        morphologies = tuple(m for m in MORPHOLOGIES if m != "acral"
                             and (m != "periarticular" or bone_mask is not None))
    bad = [m for m in morphologies if m not in MORPHOLOGIES or m == "acral"]
    if bad or not morphologies:
        raise ValueError(f"morphologies {bad or morphologies} cannot be inserted into a real "
                         "film (acral needs the phantom's fingers)")
    grid = FilmGrid(shape, float(sr))
    blur_px = blur_mm / sr
    canvas = Canvas(grid, soft | bone, bone & ~soft, field, objects, blur_px, None)
    rng = np.random.default_rng([seed, 31])
    shapes = place_deposits(canvas, rng, n, tuple(morphologies), size_range_mm)

    pixels = np.asarray(radiograph.pixels, dtype=np.float32)
    integral = bool(np.array_equal(pixels, np.round(pixels)))
    top = float(pixels.max())
    new = pixels.copy()
    labels = np.zeros(shape, dtype=np.int32)
    truths = []
    spacing = grid.spacing_mm
    usable = canvas.soft_tissue
    for label, deposit in enumerate(shapes, start=1):
        margin = int(math.ceil(WIDE_ANNULUS_MM / spacing)) + int(math.ceil(4 * blur_px)) + 2
        box = grid.box_of(deposit.bounds(), margin_px=margin)
        unit = thickness_on(grid, deposit, box)
        unit[bone[box]] = 0.0
        blurred = _blur(unit, blur_px)
        mask = np.zeros(unit.shape, dtype=bool)
        for i in range(len(deposit.components)):
            part = unit if len(deposit.components) == 1 else thickness_on(grid, deposit, box, i)
            if part is not unit:
                part[bone[box]] = 0.0
            c = blurred if part is unit else _blur(part, blur_px)
            if c.max() > 0:
                mask |= c >= HALF_MAXIMUM * c.max()
        mask &= soft[box] & (labels[box] == 0)
        if not mask.any():
            continue
        dist = cv2.distanceTransform((unit <= 0).astype(np.uint8), cv2.DIST_L2, 5) * spacing
        ring = (dist >= ANNULUS_MM[0]) & (dist <= ANNULUS_MM[1]) & usable[box] & (labels[box] == 0)
        if ring.sum() < MIN_ANNULUS_PX:
            ring = (dist >= ANNULUS_MM[0]) & (dist <= WIDE_ANNULUS_MM) & usable[box]
        noise_sd = estimate_noise_sd(pixels[box], ring)
        if not math.isfinite(noise_sd) or noise_sd <= 0:
            continue
        target = sample_cnr(rng, cnr_range)
        k = target * noise_sd / float(blurred[mask].mean())
        patch = new[box] + k * blurred
        if integral:
            patch = np.round(patch)
        patch = np.minimum(patch, max(top, float(new[box].max())))
        contrast = patch - pixels[box]
        new[box] = patch
        labels[box][mask] = label
        mean_contrast = float(contrast[mask].mean())
        rr, cc = np.nonzero(mask)
        area_px = int(mask.sum())
        area_mm2 = area_px * spacing * spacing
        truths.append(DepositTruth(
            deposit_id=label, track_id=deposit.track_id, morphology=deposit.morphology,
            region="unassigned", fingertip=False, periarticular=deposit.periarticular,
            joint=deposit.joint, area_px=area_px, area_mm2=area_mm2,
            cnr=mean_contrast / noise_sd, requested_cnr=target, mean_contrast=mean_contrast,
            noise_sd=noise_sd, calcium_mm=math.nan, size_mm=float(deposit.size_mm),
            centroid_row=float(rr.mean() + box[0].start),
            centroid_col=float(cc.mean() + box[1].start),
            equivalent_diameter_mm=2.0 * math.sqrt(area_mm2 / math.pi)))
    # relabel densely in case a deposit was skipped
    truths = _relabel(labels, truths)
    result = dataclasses.replace(
        radiograph, pixels=new,
        notes=radiograph.notes + (f"{len(truths)} synthetic deposits inserted (seed {seed})",))
    spec = InsertionSpec(radiograph.source_path, int(seed), len(truths), tuple(morphologies),
                         tuple(cnr_range), tuple(size_range_mm), float(blur_mm))
    bits = int(min(max(math.ceil(math.log2(max(float(new.max()), 1.0) + 1)), 12), 16))
    return PhantomFilm(result, labels, tuple(truths), bone, soft | bone, field, objects, spec,
                       bits, (), tuple(shapes))


def _blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    r = max(1, int(math.ceil(4 * sigma_px)))
    return cv2.GaussianBlur(image, (2 * r + 1, 2 * r + 1), sigma_px,
                            borderType=cv2.BORDER_REFLECT)


def _relabel(labels: np.ndarray, truths: list[DepositTruth]) -> list[DepositTruth]:
    out = []
    for new_id, truth in enumerate(truths, start=1):
        if truth.deposit_id != new_id:
            labels[labels == truth.deposit_id] = new_id
            truth = dataclasses.replace(truth, deposit_id=new_id)
        out.append(truth)
    return out
