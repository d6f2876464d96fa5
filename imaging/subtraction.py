"""Temporal subtraction: where a registered pair of films differs by more than noise.

A faint deposit is hard to find on one film because the soft tissue around it has structure
of its own (the background model's residual, `benchmarks/clutter.py`), not because of
noise. Two films of the same limb share that structure: once the baseline is brought onto
the follow-up's grid through the registration, and its pixel values onto the follow-up's
exposure by a straight-line fit, their difference holds the change of the deposits, the
noise of both films and what the registration and the exposure leave. Both films are
smoothed at `CompareConfig.change_sigma_mm` first (resampling would otherwise blur the
baseline's peaks only), the difference's slow trend (`change_background_mm`) is taken out,
and it is divided by its own robust spread: a change significance that the anatomy does not
limit. It is read only over the soft tissue both films search, `change_margin_mm` clear of
its edges, and not where a registration error of `change_registration_mm` on either film's
slope (a cortex, the rim of a dense deposit) could reach `change_low_z`.

Regions that reach `change_seed_z` (grown down to `change_low_z`, at least
`change_min_area_mm2`) are where the follow-up shows more calcium than the baseline; those
below minus that, less. They only say where to look: `imaging.paired.find_again_in_pair`
looks there on the film that shows more, with the outline rule and selection it applies
where the other film has a deposit. The significance itself (`FilmChanges.significance`)
tells `imaging.paired.share_extent` whether the films differ over a piece of outline that
one film draws and the other does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .anatomy import disk
from .config import CompareConfig
from .deposits import DepositSearch
from .preprocess import robust_sd, smooth_background
from .radiograph import Radiograph
from .register import Registration

#: Fewer source pixels of soft tissue in common than this and the films are not compared.
MIN_COMPARED_PX = 1000


@dataclass(frozen=True, eq=False)
class FilmChanges:
    """Where a registered pair of films differs by more than noise.

    Attributes
    ----------
    more_on_followup : ndarray of bool
        Regions where the follow-up shows more calcium (follow-up source grid).
    more_on_baseline : ndarray of bool
        Regions where the baseline shows more calcium (baseline source grid).
    noise_sd : float or None
        Robust spread of the smoothed difference (follow-up pixel units); None when too
        little soft tissue of the two films overlaps to compare.
    significance : ndarray of float32
        The difference in units of `noise_sd` (follow-up source grid; positive where the
        follow-up shows more), NaN where it is not read.
    """

    more_on_followup: np.ndarray
    more_on_baseline: np.ndarray
    noise_sd: float | None
    significance: np.ndarray


def film_changes(baseline: Radiograph, baseline_search: DepositSearch, followup: Radiograph,
                 followup_search: DepositSearch, registration: Registration,
                 config: CompareConfig) -> FilmChanges:
    """The regions where a registered pair of films differs by more than noise.

    Parameters
    ----------
    baseline, followup : Radiograph
    baseline_search, followup_search : DepositSearch
        Each film's searched soft tissue (`imaging.deposits.prepare_deposit_search`).
    registration : Registration
        The follow-up aligned onto the baseline (`imaging.register.register_films`).
    config : CompareConfig
        ``change_*`` parameters.

    Returns
    -------
    FilmChanges
    """
    spacing = min(registration.followup_spacing_mm)
    none = FilmChanges(np.zeros(followup.shape, bool), np.zeros(baseline.shape, bool), None,
                       np.full(followup.shape, np.nan, np.float32))
    # Both films are smoothed before the baseline is resampled: interpolating the raw film
    # would blur its peaks and ridges only, and the follow-up's would stand out as changes.
    sigma_mm = config.change_sigma_mm
    current = cv2.GaussianBlur(followup.pixels.astype(np.float32), (0, 0), sigma_mm / spacing)
    shown = registration.warp_baseline_image(
        cv2.GaussianBlur(baseline.pixels.astype(np.float32), (0, 0),
                         sigma_mm / min(registration.baseline_spacing_mm)), followup.shape)
    searched = registration.warp_baseline_labels(baseline_search.source_region,
                                                 followup.shape) > 0
    compared = searched & followup_search.source_region & np.isfinite(shown)
    compared = cv2.erode(compared.astype(np.uint8),
                         disk(2 * config.change_margin_mm / spacing + 1)) > 0
    if compared.sum() < MIN_COMPARED_PX:
        return none
    shown = np.nan_to_num(shown)
    difference = _after_exposure_fit(current, shown, compared)
    difference -= _slow_trend(difference, compared, config.change_background_mm / spacing)
    noise = robust_sd(difference[compared])
    if noise <= 0:
        return none
    # What a registration error leaves on a steep edge (a cortex, a dense deposit both films
    # show) is no change: where it could reach the low level, nothing is compared.
    steep = np.maximum(_slope(current), _slope(shown)) * (config.change_registration_mm / spacing)
    read = compared & (steep < config.change_low_z * noise)
    z = np.where(read, difference / noise, 0.0)
    min_px = config.change_min_area_mm2 / (spacing * spacing)
    more = _hysteresis(z, config.change_seed_z, config.change_low_z, min_px)
    less = _hysteresis(-z, config.change_seed_z, config.change_low_z, min_px)
    on_baseline = registration.warp_followup_labels(less, baseline.shape) > 0
    return FilmChanges(more, on_baseline, float(noise),
                       np.where(read, z, np.nan).astype(np.float32))


def _after_exposure_fit(current: np.ndarray, previous: np.ndarray,
                        compared: np.ndarray) -> np.ndarray:
    """``current - (a * previous + b)`` on `compared` pixels (0 elsewhere), the line fitted
    by least squares and again without the pixels 3 robust SDs off it (the changes)."""
    x, y = previous[compared].astype(np.float64), current[compared].astype(np.float64)
    keep = np.ones(x.size, bool)
    for _ in range(2):
        a, b = np.polyfit(x[keep], y[keep], 1)
        residual = y - (a * x + b)
        keep = np.abs(residual - np.median(residual)) <= 3 * max(robust_sd(residual), 1e-9)
    return np.where(compared, current - (a * previous + b), 0.0).astype(np.float32)


def _slow_trend(difference: np.ndarray, compared: np.ndarray, sigma_px: float) -> np.ndarray:
    """The difference's slow trend over `compared` pixels, learnt without its outliers (a
    large change would otherwise leave a halo of the opposite sign around it)."""
    trend = smooth_background(difference, compared, sigma_px)
    residual = difference - trend
    spread = robust_sd(residual[compared])
    quiet = compared & (np.abs(residual) <= 3 * spread) if spread > 0 else compared
    return smooth_background(difference, quiet, sigma_px)


def _slope(image: np.ndarray) -> np.ndarray:
    """Gradient magnitude of `image` (per pixel)."""
    return cv2.magnitude(cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3) / 8,
                         cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3) / 8)


def _hysteresis(z: np.ndarray, seed: float, low: float, min_px: float) -> np.ndarray:
    """Connected regions of ``z >= low`` that reach `seed`, of at least `min_px` pixels."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats((z >= low).astype(np.uint8),
                                                               connectivity=8)
    keep = np.zeros(count, bool)
    keep[np.unique(labels[z >= seed])] = True
    keep &= stats[:, cv2.CC_STAT_AREA] >= min_px
    keep[0] = False
    return keep[labels]
