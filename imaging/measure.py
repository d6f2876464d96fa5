"""Per-deposit measures: size, position, contrast, density and shape, in physical units."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.measure import regionprops

from .preprocess import MAD_TO_NOISE_SIGMA, noise_residual

#: Window (mm) around a deposit where its local noise is measured.
NOISE_WINDOW_MM = 5.0
#: The ring of soft tissue just around a deposit: from 0.5 to 2 mm off its outline.
RIM_MM = (0.5, 2.0)
#: The core of a deposit (where clipping is looked for) lies this far inside its outline.
CORE_INSET_MM = 0.15
#: A core smaller than this (pixels) is too small to judge its noise.
MIN_CORE_PX = 20
#: Pixels just outside a deposit this close (mm) to the bone mask count as bone contact.
BONE_CONTACT_MM = 0.6


def _ring(mask: np.ndarray, radii_px: tuple[float, float]) -> np.ndarray:
    """Pixels between two distances (in pixels) outside a mask."""
    # Dilations only reach `reach` pixels: work on the mask's bounding box plus that much.
    reach = int(round(max(radii_px))) + 1
    ring = np.zeros(mask.shape, bool)
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        return ring
    box = (slice(max(rows[0] - reach, 0), rows[-1] + 1 + reach),
           slice(max(cols[0] - reach, 0), cols[-1] + 1 + reach))
    inner, outer = (cv2.dilate(mask[box].astype(np.uint8),
                               cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0
                    for k in (2 * int(round(r)) + 1 for r in radii_px))
    ring[box] = outer & ~inner
    return ring


def bounding_boxes(labels: np.ndarray) -> list[tuple[slice, slice] | None]:
    """`scipy.ndimage.find_objects(labels)` from the labelled pixels only (few on a film)."""
    flat = np.flatnonzero(labels)
    count = int(labels.ravel()[flat].max()) if flat.size else 0
    if count == 0:
        return []
    value = labels.ravel()[flat]
    row, col = np.divmod(flat, labels.shape[1])
    first_row, last_row = np.full(count + 1, labels.shape[0]), np.full(count + 1, -1)
    first_col, last_col = np.full(count + 1, labels.shape[1]), np.full(count + 1, -1)
    np.minimum.at(first_row, value, row)
    np.maximum.at(last_row, value, row)
    np.minimum.at(first_col, value, col)
    np.maximum.at(last_col, value, col)
    return [(slice(int(first_row[k]), int(last_row[k]) + 1),
             slice(int(first_col[k]), int(last_col[k]) + 1))
            if last_row[k] >= 0 else None for k in range(1, count + 1)]


@dataclass(frozen=True)
class DepositMeasures:
    """Measures of one deposit. Positions are in the source pixel grid.

    Areas and lengths in mm are None for uncalibrated films (never from a guessed spacing).
    Contrasts are in film units: `mean_contrast` and `peak_contrast` above the soft-tissue
    background under the deposit, `rim_contrast` above the soft tissue just around it (a
    ring from 0.5 to 2 mm); CNRs divide them by the local pixel noise. `relative_density`
    puts the mean contrast on the film's own scale where soft tissue is 0 and typical bone
    is 1.
    """

    label: int
    area_px: int
    area_mm2: float | None
    centroid_row: float
    centroid_col: float
    bbox: tuple[int, int, int, int]
    equivalent_diameter_mm: float | None
    equivalent_diameter_px: float
    major_axis_mm: float | None
    minor_axis_mm: float | None
    eccentricity: float
    solidity: float
    mean_contrast: float
    peak_contrast: float
    noise_sigma: float
    cnr: float
    rim_contrast: float
    rim_cnr: float
    relative_density: float | None
    peak_relative_density: float | None
    core_noise_ratio: float | None = None
    """Pixel noise inside the deposit's core over the noise of the tissue around it; near 0
    for a flat, clipped top (a saturated metal bead), about 1 or more for calcium. None when
    the deposit has too small a core."""
    bone_contact: float | None = None
    """Fraction of the pixels just outside the deposit's outline that lie within
    `BONE_CONTACT_MM` of the bone mask: about half for a strip of bone edge the bone mask
    missed, less for a deposit beside a bone. None when no bone mask was given."""
    skin_depth_px: float | None = None
    """Median depth of the deposit's pixels below the skin (distance to the body outline),
    in pixels; None when the deposit lies deeper than `NOISE_WINDOW_MM` or no body mask was
    given."""
    skin_depth_mm: float | None = None
    """The same in mm (None also for uncalibrated films)."""
    skin_depth_change: float | None = None
    """How much the depth below the skin changes across the deposit (its 10th to 90th
    percentile) over the deposit's extent (its bounding-box diagonal): near 0 for a strip
    running along the skin line, about 0.5 for a round deposit. None when `skin_depth_px`
    is."""


def measure_deposits(pixels: np.ndarray, labels: np.ndarray, background: np.ndarray,
                     spacing_mm: tuple[float, float], *, calibrated: bool, bone_level: float | None,
                     soft_tissue: np.ndarray, bone: np.ndarray | None = None,
                     body: np.ndarray | None = None) -> tuple[DepositMeasures, ...]:
    """Measure every labelled deposit.

    Parameters
    ----------
    pixels : ndarray
        The film's attenuation-positive pixels (source grid).
    labels : ndarray of int
        Deposit labels in the source grid.
    background : ndarray
        Soft-tissue background in the source grid (the deposit-free tissue level).
    spacing_mm : (float, float)
        The source spacing (used for mm values only when `calibrated`).
    calibrated : bool
        Whether `spacing_mm` is known rather than nominal.
    bone_level : float or None
        The film's typical bone excess over soft tissue (the density reference); None for
        films without bone, whose relative densities are then None.
    soft_tissue : ndarray of bool
        Soft tissue in the source grid (where the local noise is measured).
    bone : ndarray of bool, optional
        The bone mask in the source grid (for `bone_contact`).
    body : ndarray of bool, optional
        The body mask in the source grid (for the `skin_depth_*` measures).
    """
    count = int(labels.max()) if labels.size else 0
    if count == 0:
        return ()
    pixel_area = spacing_mm[0] * spacing_mm[1]
    mean_spacing = float(np.sqrt(pixel_area))
    window = int(np.ceil(NOISE_WINDOW_MM / mean_spacing))
    # At least 3 pixels: the residual of the 2-pixel smoothing still holds the edge closer in.
    inset = max(3, int(round(CORE_INSET_MM / mean_spacing)))
    cross = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    bone_reach = cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * int(round(BONE_CONTACT_MM / mean_spacing)) + 1,) * 2)
    measures = []
    for index, found in enumerate(bounding_boxes(labels), start=1):
        if found is None:
            continue
        r0, r1 = max(found[0].start - window, 0), min(found[0].stop + window, labels.shape[0])
        c0, c1 = max(found[1].start - window, 0), min(found[1].stop + window, labels.shape[1])
        crop_labels = labels[r0:r1, c0:c1]
        mask = crop_labels == index
        excess = pixels[r0:r1, c0:c1] - background[r0:r1, c0:c1]
        around = soft_tissue[r0:r1, c0:c1] & (crop_labels == 0)
        residual = noise_residual(np.ascontiguousarray(pixels[r0:r1, c0:c1]))
        noise = (float(np.median(residual[around])) * MAD_TO_NOISE_SIGMA
                 if around.sum() >= 30 else float(np.median(residual)) * MAD_TO_NOISE_SIGMA)
        noise = max(noise, 1e-6)
        mean_contrast = float(excess[mask].mean())
        # The rim takes whatever lies around the deposit but other deposits: soft tissue, and
        # bone too, which a bright halo of soft tissue beside a bone does not outshine.
        rim = (crop_labels == 0) & _ring(mask, (RIM_MM[0] / mean_spacing, RIM_MM[1] / mean_spacing))
        rim_contrast = (float(pixels[r0:r1, c0:c1][mask].mean()
                              - np.median(pixels[r0:r1, c0:c1][rim])) if rim.sum() >= 10
                        else mean_contrast)
        core = cv2.erode(mask.astype(np.uint8), cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (2 * inset + 1, 2 * inset + 1))) > 0
        core_noise_ratio = (float(np.median(residual[core])) * MAD_TO_NOISE_SIGMA / noise
                            if core.sum() >= MIN_CORE_PX else None)
        bone_contact = None
        if bone is not None:
            outline = (cv2.dilate(mask.astype(np.uint8), cross) > 0) & ~mask
            near_bone = cv2.dilate(bone[r0:r1, c0:c1].astype(np.uint8), bone_reach) > 0
            bone_contact = float((outline & near_bone).sum() / max(int(outline.sum()), 1))
        skin_depth_px = skin_depth_change = None
        if body is not None:
            skin_depth_px, skin_depth_change = _skin_depth(mask, body[r0:r1, c0:c1], window)
        local_mean = cv2.blur(excess, (3, 3))
        peak_contrast = float(local_mean[mask].max())
        props = regionprops(mask.astype(np.uint8))[0]
        area_px = int(mask.sum())
        centroid = (props.centroid[0] + r0, props.centroid[1] + c0)
        bbox = (found[0].start, found[1].start, found[0].stop, found[1].stop)
        diameter_px = float(np.sqrt(4 * area_px / np.pi))
        mm = (lambda value: value * mean_spacing) if calibrated else (lambda value: None)
        measures.append(DepositMeasures(
            label=index,
            area_px=area_px,
            area_mm2=area_px * pixel_area if calibrated else None,
            centroid_row=float(centroid[0]),
            centroid_col=float(centroid[1]),
            bbox=bbox,
            equivalent_diameter_mm=mm(diameter_px),
            equivalent_diameter_px=diameter_px,
            major_axis_mm=mm(float(props.axis_major_length)),
            minor_axis_mm=mm(float(props.axis_minor_length)),
            eccentricity=float(props.eccentricity),
            solidity=float(props.solidity),
            mean_contrast=mean_contrast,
            peak_contrast=peak_contrast,
            noise_sigma=noise,
            cnr=mean_contrast / noise,
            rim_contrast=rim_contrast,
            rim_cnr=rim_contrast / noise,
            relative_density=mean_contrast / bone_level if bone_level else None,
            peak_relative_density=peak_contrast / bone_level if bone_level else None,
            core_noise_ratio=core_noise_ratio,
            bone_contact=bone_contact,
            skin_depth_px=skin_depth_px,
            skin_depth_mm=(skin_depth_px * mean_spacing
                           if calibrated and skin_depth_px is not None else None),
            skin_depth_change=skin_depth_change,
        ))
    return tuple(measures)


def _skin_depth(mask: np.ndarray, body: np.ndarray, reach_px: int
                ) -> tuple[float | None, float | None]:
    """(median depth below the skin, its change across the deposit over the deposit's
    length) of a deposit in a crop reaching `reach_px` beyond it: air farther away is
    outside the crop, so deeper deposits get (None, None)."""
    if body.all():
        return None, None
    depth = cv2.distanceTransform(body.astype(np.uint8), cv2.DIST_L2, 5)[mask]
    median = float(np.median(depth))
    if median >= reach_px:
        return None, None
    rows, cols = np.nonzero(mask)
    length = max(float(np.hypot(np.ptp(rows), np.ptp(cols))), 1.0)
    return median, float(np.percentile(depth, 90) - np.percentile(depth, 10)) / length
