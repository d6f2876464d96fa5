"""Preparing a film for analysis: a fixed-spacing grid, noise levels and soft-tissue backgrounds.

Every later stage works on the analysis grid, whose spacing is fixed in mm, so that all
parameters are physical sizes whatever the detector. Intensities stay in the film's own
attenuation-positive units; contrasts are expressed against the film's own measured noise
(CNR) or its own soft-tissue/bone references, never by per-image min-max scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .config import GridConfig
from .radiograph import Radiograph

#: A Gaussian's standard deviation per median absolute deviation.
MAD_TO_SD = 1.4826
#: The soft-tissue level by depth (`skin_depth_background`) leaves out values more than this
#: many lower semi-deviations above it...
PROFILE_CLIP_SD = 2.5
#: ...re-measured this many times.
PROFILE_CLIP_PASSES = 2


def robust_sd(sample) -> float:
    """Standard deviation estimated robustly: 1.4826 x the median absolute deviation."""
    sample = np.asarray(sample)
    return MAD_TO_SD * float(np.median(np.abs(sample - np.median(sample))))


def _mad_to_noise_sigma() -> float:
    # The residual from a 2-pixel Gaussian smoothing keeps (1 - 2 w0 + sum w^2) of white
    # noise's variance; a median absolute value times 1.4826 is a Gaussian's std.
    kernel = cv2.getGaussianKernel(17, 2.0) @ cv2.getGaussianKernel(17, 2.0).T
    kept = 1.0 - 2.0 * kernel.max() + float((kernel ** 2).sum())
    return MAD_TO_SD / float(np.sqrt(kept))


#: Median absolute residual (from a 2-pixel smoothing) to noise standard deviation.
MAD_TO_NOISE_SIGMA = _mad_to_noise_sigma()


def noise_residual(values: np.ndarray) -> np.ndarray:
    """Absolute residual from a 2-pixel Gaussian smoothing: mostly noise, little anatomy."""
    return np.abs(values - cv2.GaussianBlur(values, (0, 0), 2.0))


@dataclass(frozen=True, eq=False)
class AnalysisGrid:
    """A film resampled onto the analysis grid.

    Attributes
    ----------
    values : ndarray of float32
        Attenuation-positive values, area-averaged onto the grid.
    spacing_mm : float
        Isotropic spacing of the grid.
    source_shape : (int, int)
        Rows and columns of the source film.
    source_spacing_mm : (float, float)
        The source spacing used: the film's calibration or the nominal one.
    nominal : bool
        True when `source_spacing_mm` is assumed, not known.
    """

    values: np.ndarray
    spacing_mm: float
    source_shape: tuple[int, int]
    source_spacing_mm: tuple[float, float]
    nominal: bool

    @property
    def scale(self) -> tuple[float, float]:
        """Source pixels per analysis pixel along rows and columns."""
        return (self.spacing_mm / self.source_spacing_mm[0],
                self.spacing_mm / self.source_spacing_mm[1])

    @property
    def source_pixel_area_mm2(self) -> float:
        """Area of one source pixel (mm², nominal when `nominal`)."""
        return self.source_spacing_mm[0] * self.source_spacing_mm[1]

    def mm_to_px(self, mm: float) -> float:
        """A length in mm as a number of analysis pixels."""
        return mm / self.spacing_mm

    def to_source(self, image: np.ndarray, interpolation=cv2.INTER_NEAREST) -> np.ndarray:
        """Resample an analysis-grid image onto the source pixel grid."""
        rows, cols = self.source_shape
        return cv2.resize(image, (cols, rows), interpolation=interpolation)

    def mask_to_source(self, mask: np.ndarray) -> np.ndarray:
        """Resample an analysis-grid boolean mask onto the source pixel grid."""
        return self.to_source(mask.astype(np.uint8)) > 0


def source_spacing(radiograph: Radiograph, config: GridConfig) -> tuple[tuple[float, float], bool]:
    """Return the film's spacing, or the stated nominal one (and True) when it has none."""
    if radiograph.spacing_mm is not None:
        return radiograph.spacing_mm, False
    breast = (radiograph.metadata.modality == "MG"
              or (radiograph.metadata.body_part or "").upper() == "BREAST")
    nominal = config.nominal_spacing_mammography_mm if breast else config.nominal_spacing_mm
    return (nominal, nominal), True


def to_analysis_grid(radiograph: Radiograph, config: GridConfig) -> AnalysisGrid:
    """Resample a film onto the fixed-spacing analysis grid (area averaging, never sharpening).

    Films finer than the grid are averaged down; films coarser than it are interpolated up.
    """
    spacing, nominal = source_spacing(radiograph, config)
    rows, cols = radiograph.shape
    out_rows = max(1, int(round(rows * spacing[0] / config.spacing_mm)))
    out_cols = max(1, int(round(cols * spacing[1] / config.spacing_mm)))
    shrinking = out_rows < rows or out_cols < cols
    values = cv2.resize(radiograph.pixels, (out_cols, out_rows),
                        interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return AnalysisGrid(values.astype(np.float32, copy=False), config.spacing_mm,
                        (rows, cols), spacing, nominal)


def local_location_and_spread(values: np.ndarray, mask: np.ndarray, tile_px: int):
    """Local median and robust standard deviation (MAD x 1.4826) of `values` over `mask`.

    Computed per tile; tiles with fewer than a quarter of their pixels in `mask` take the
    median of the others; both tile grids are interpolated back to full size.

    Returns
    -------
    center, spread : ndarray of float32, same shape as `values`
    """
    center, spread = _tile_location_and_spread(values, mask, tile_px)
    return _tiles_to_full(center, values.shape), _tiles_to_full(spread, values.shape)


def local_spread(values: np.ndarray, mask: np.ndarray, tile_px: int) -> np.ndarray:
    """The `spread` of `local_location_and_spread` alone (the centre is not interpolated)."""
    return _tiles_to_full(_tile_location_and_spread(values, mask, tile_px)[1], values.shape)


def _tiles_to_full(tiles, shape: tuple[int, int]) -> np.ndarray:
    if np.isscalar(tiles):
        return np.full(shape, tiles, np.float32)
    return cv2.resize(tiles, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _tile_location_and_spread(values: np.ndarray, mask: np.ndarray, tile_px: int):
    """Per-tile median and robust spread (small float32 grids), or two floats when no tile
    has enough pixels."""
    rows, cols = values.shape
    tiles_r, tiles_c = max(1, rows // tile_px), max(1, cols // tile_px)
    # Every other pixel of every other row is plenty for a median; crop to whole tiles of
    # equal size (the remainder is covered by the interpolation).
    sub_values, sub_mask = values[::2, ::2], mask[::2, ::2]
    th, tw = sub_values.shape[0] // tiles_r, sub_values.shape[1] // tiles_c
    sample = np.where(sub_mask[:tiles_r * th, :tiles_c * tw],
                      sub_values[:tiles_r * th, :tiles_c * tw], np.float32(np.nan))
    blocks = sample.reshape(tiles_r, th, tiles_c, tw).transpose(0, 2, 1, 3).reshape(
        tiles_r, tiles_c, th * tw)
    counts = np.isfinite(blocks).sum(axis=2)
    enough = counts >= 0.25 * th * tw
    center = np.full((tiles_r, tiles_c), np.nan, np.float32)
    spread = np.full((tiles_r, tiles_c), np.nan, np.float32)
    if enough.any():
        sample = blocks[enough]
        middle = _median_of_finite(sample, counts[enough])
        center[enough] = middle
        spread[enough] = MAD_TO_SD * _median_of_finite(np.abs(sample - middle[:, None]),
                                                       counts[enough])
    known = np.isfinite(spread) & (spread > 0)
    if not known.any():
        inside = values[mask] if mask.any() else values.ravel()
        middle = float(np.median(inside))
        return middle, max(robust_sd(inside), 1e-6)
    center[~known] = np.median(center[known])
    spread[~known] = np.median(spread[known])
    return center, spread


def _median_of_finite(rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Median of the `counts` finite values of each row (the others NaN): the values of
    `np.nanmedian(rows, axis=1)`, by one sort instead of a loop over the rows."""
    ordered = np.sort(rows, axis=1)  # NaN sorts last
    index = np.arange(len(rows))
    return (ordered[index, (counts - 1) // 2] + ordered[index, counts // 2]) / 2


def smooth_background(values: np.ndarray, weights: np.ndarray, sigma_px: float) -> np.ndarray:
    """Normalised convolution: a smooth background from the pixels where `weights` is 1.

    Masked pixels (bone, air, deposits) get the background interpolated from their
    surroundings; far from any weighted pixel the search widens (3x, then 9x). Wide kernels
    run on a coarser grid, as in `blur`; the ratio is taken there and brought back once.
    """
    w = weights.astype(np.float32)
    v = (values * w).astype(np.float32)
    factor = _coarsening(sigma_px)
    if factor < 2:
        return _normalised_convolution(v, w, sigma_px)
    small = _normalised_convolution(_shrunk(v, factor), _shrunk(w, factor), sigma_px / factor)
    return _expanded(small, values.shape)


def _normalised_convolution(v: np.ndarray, w: np.ndarray, sigma_px: float) -> np.ndarray:
    """blur(v) / blur(w), widening the kernel where `w` is absent."""
    num, den = blur(v, sigma_px), blur(w, sigma_px)
    for wider in (3.0, 9.0):
        missing = den < 1e-3
        if not missing.any():
            break
        num = np.where(missing, blur(v, sigma_px * wider), num)
        den = np.where(missing, blur(w, sigma_px * wider), den)
    return num / np.maximum(den, 1e-6)


def blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian smoothing; wide kernels run on a coarser grid (same result, much faster)."""
    factor = _coarsening(sigma_px)
    if factor < 2:
        return cv2.GaussianBlur(image, (0, 0), sigma_px)
    small = cv2.GaussianBlur(_shrunk(image, factor), (0, 0), sigma_px / factor)
    return _expanded(small, image.shape)


def _coarsening(sigma_px: float) -> int:
    """How many times coarser a grid a Gaussian of `sigma_px` can run on (3 pixels of sigma
    left; below 2, the full grid)."""
    return int(sigma_px // 3)


def _shrunk(image: np.ndarray, factor: int) -> np.ndarray:
    """`image` on a grid `factor` times coarser (area averages)."""
    rows, cols = image.shape
    return cv2.resize(image, (max(1, cols // factor), max(1, rows // factor)),
                      interpolation=cv2.INTER_AREA)


def _expanded(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A coarse-grid image brought back to `shape` (bilinear)."""
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def skin_depth_background(values: np.ndarray, weights: np.ndarray, depth_mm: np.ndarray,
                          tile_px: int, bin_mm: float = 0.5) -> np.ndarray:
    """Soft-tissue level as a function of depth below the skin, per neighbourhood.

    Within each tile, the weighted pixels are binned by their depth below the skin and
    each bin's robust mean (values far above it clipped, see `_clipped_group_sums`) is its
    level; a pixel's background blends the profiles of the four nearest tiles at its own
    depth. Bins without data take the nearest filled bin of the same tile; tiles without
    data take the whole film's profile. Regions that are not soft tissue (bone, air) get the
    level of their depth too.
    """
    rows, cols = values.shape
    tiles_r, tiles_c = max(1, rows // tile_px), max(1, cols // tile_px)
    bins = int(np.ceil(float(depth_mm.max()) / bin_mm)) + 1
    depth_bin = np.minimum((depth_mm / bin_mm).astype(np.int32), bins - 1)
    tile_r = np.minimum(np.arange(rows) * tiles_r // rows, tiles_r - 1)
    tile_c = np.minimum(np.arange(cols) * tiles_c // cols, tiles_c - 1)
    tile_index = tile_r[:, None] * tiles_c + tile_c[None, :]
    n_groups = tiles_r * tiles_c * bins
    group = (tile_index * bins + depth_bin)[weights]
    sample = values[weights].astype(np.float64)
    total, count = (x.reshape(tiles_r * tiles_c, bins)
                    for x in _clipped_group_sums(group, sample, n_groups))
    profile = _means_of_sums(total, count)
    # The whole film's profile: every tile's clipped values of each depth.
    overall = _fill_along_depth(_means_of_sums(total.sum(axis=0), count.sum(axis=0))[None, :])[0]
    profile = _fill_along_depth(profile)
    empty = np.isnan(profile).all(axis=1)
    profile[empty] = overall
    profile = profile.reshape(tiles_r, tiles_c, bins)
    # Blend the four nearest tile centres bilinearly, block by block of pixels that share
    # the same four tiles (small look-up tables, cache-sized arrays).
    fr = np.clip((np.arange(rows) + 0.5) * tiles_r / rows - 0.5, 0, tiles_r - 1)
    fc = np.clip((np.arange(cols) + 0.5) * tiles_c / cols - 0.5, 0, tiles_c - 1)
    r0, c0 = np.floor(fr).astype(np.int32), np.floor(fc).astype(np.int32)
    r1, c1 = np.minimum(r0 + 1, tiles_r - 1), np.minimum(c0 + 1, tiles_c - 1)
    wr = (fr - r0).astype(np.float32)[:, None]
    wc = (fc - c0).astype(np.float32)[None, :]
    weights_r, weights_c = (1 - wr, wr), (1 - wc, wc)
    table = profile.astype(np.float32)
    index = depth_bin
    if bins <= 256:
        # 8-bit bins and 256-entry profiles: OpenCV's table look-up (`_look_up`).
        table = np.pad(table, ((0, 0), (0, 0), (0, 256 - bins)))
        index = depth_bin.astype(np.uint8)
    result = np.empty((rows, cols), np.float32)
    for rows_block in _runs(r0):
        for cols_block in _runs(c0):
            block = (rows_block, cols_block)
            depth = index[block]
            total = np.zeros(depth.shape, np.float32)
            for tr, weight_r in zip((r0, r1), weights_r):
                for tc, weight_c in zip((c0, c1), weights_c):
                    lookup = table[tr[rows_block.start], tc[cols_block.start]]
                    total += (weight_r[rows_block] * weight_c[:, cols_block]
                              * _look_up(lookup, depth))
            result[block] = total
    return result


def _look_up(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """`table[index]`; for 8-bit indices into a 256-entry table by OpenCV's look-up, several
    times faster than NumPy's fancy indexing."""
    return cv2.LUT(index, table) if index.dtype == np.uint8 else table[index]


def _runs(index: np.ndarray) -> list[slice]:
    """Slices of the runs of equal values in a sorted index."""
    starts = np.flatnonzero(np.diff(index)) + 1
    bounds = [0, *starts.tolist(), len(index)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _clipped_group_sums(group: np.ndarray, sample: np.ndarray, n_groups: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(sum, count) per group of the values at most `PROFILE_CLIP_SD` spreads above the
    group's mean (`PROFILE_CLIP_PASSES` passes, each about the mean of the last).

    Deposits only raise the tissue level, so the spread is the lower semi-deviation (of the
    values below the mean), which they do not inflate: a standard deviation that a sheet of
    calcinosis filling part of a depth bin widens would let the sheet through the clip.
    """
    count = np.bincount(group, minlength=n_groups).astype(np.float64)
    total = np.bincount(group, weights=sample, minlength=n_groups)
    for _ in range(PROFILE_CLIP_PASSES):
        with np.errstate(invalid="ignore", divide="ignore"):
            residual = sample - (total / count)[group]
            shortfall = np.minimum(residual, 0)
            # A group without values below its mean (all equal) has no spread: all stay.
            semi_variance = np.nan_to_num(
                np.bincount(group, weights=shortfall * shortfall, minlength=n_groups)
                / np.bincount(group, weights=residual < 0, minlength=n_groups))
        keep = residual <= (PROFILE_CLIP_SD * np.sqrt(semi_variance))[group]
        count = np.bincount(group, weights=keep, minlength=n_groups)
        total = np.bincount(group, weights=sample * keep, minlength=n_groups)
    return total, count


def _means_of_sums(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    """total / count where at least 5 values count, NaN elsewhere."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= 5, total / count, np.nan)


def _fill_along_depth(profile: np.ndarray) -> np.ndarray:
    """Fill empty depth bins of each row by linear interpolation between filled ones
    (constant beyond the ends; rows without data stay NaN)."""
    filled = profile.copy()
    index = np.arange(profile.shape[1])
    for row in filled:
        known = ~np.isnan(row)
        if known.any() and not known.all():
            row[:] = np.interp(index, index[known], row[known])
    return filled
