"""Aligning a follow-up film onto its baseline, driven by bone, refusing what cannot be compared.

Serial films of a patient are never taken in the same position: the limb is rotated and
shifted on the detector and the magnification differs a little. Before deposits of two visits
can be matched, the follow-up is registered onto the baseline with a similarity transform
(rotation, isotropic scale, shift) in millimetres:

1. Metadata first (`check_same_anatomy`): a different pseudonymous patient, side, body part or
   view refuses the comparison before any pixel is looked at.
2. Each film is resampled to a coarse grid in mm (`RegistrationConfig.spacing_mm`, the
   ``registration`` section of `imaging.config.AnalysisConfig`), and its body, bone and
   non-anatomical regions are found (`imaging.anatomy.find_anatomy`, the ``anatomy`` section).
   The registration image is a band-pass of the film (bone edges and trabeculae stand out,
   the soft-tissue slope, the anode heel and the exposure level do not); the metric looks only
   at bone and the few mm around it, never at deposits (which change between visits), lead
   markers, collimator edges or metal.
3. SimpleITK optimises Mattes mutual information over three resolutions, from a start that
   aligns the bones' centres of mass, trying a few initial rotations. (Normalised correlation,
   used before, has a gradient that on forearm and leg films drifts off its own optimum:
   started from the true pose it slid 1-4 mm along the shafts and shrank the scale by
   1-3 %, while Mattes MI stays within 0.1 mm; see `benchmarks/serial.py`.)
   Films on which the detector finds no body or no bone (a limb filling the whole exposed
   field, so no air to find the skin line by) are registered on a bone mask of their own:
   a top-hat of the exposed field at the bone scale (`_bone_emphasis`).
4. Quality (`Registration.correlation`, `Registration.bone_dice`): the band-passed films'
   correlation over bone after alignment, and the overlap of the two bone masks. Below the
   configured minimum, or with an implausible transform, the comparison is refused
   (`RegistrationFailed`): films of another side (a mirror image), view, body part or patient
   do not align.

The result maps follow-up source pixel coordinates to baseline source pixel coordinates
(and mm, on each film's own calibration); uncalibrated films are registered on the nominal
spacing (flagged), which leaves the pixel mapping exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import SimpleITK as sitk
from skimage.filters import threshold_otsu

from .anatomy import bone_scale_mm, disk, fill_small_holes, find_anatomy
from .config import AnalysisConfig, GridConfig, RegistrationConfig
from .errors import CalcitrackError
from .preprocess import to_analysis_grid
from .radiograph import Radiograph

#: Metadata that must agree for two films to be compared, and how it is named in messages.
IDENTITY_FIELDS = (("patient_key", "patient"), ("laterality", "side"),
                   ("body_part", "body part"), ("view_position", "view"))


class ComparisonRefused(CalcitrackError):
    """Two films cannot be compared (not the same anatomy, or they do not align)."""


class DifferentAnatomy(ComparisonRefused):
    """The films' metadata say they show another patient, side, body part or view."""


class RegistrationFailed(ComparisonRefused):
    """The follow-up could not be aligned onto the baseline well enough to compare them."""


@dataclass(frozen=True, eq=False)
class Registration:
    """A follow-up film aligned onto its baseline.

    Attributes
    ----------
    transform : SimpleITK.Similarity2DTransform
        Maps baseline source-grid mm (x = column × spacing, y = row × spacing, pixel centres
        at integer pixels) to follow-up source-grid mm (the SimpleITK fixed → moving sense).
    baseline_spacing_mm, followup_spacing_mm : (float, float)
        (row, col) spacing each film was registered on.
    nominal : bool
        True when a spacing was assumed (an uncalibrated film): mm figures are then nominal.
    rotation_deg : float
        Rotation of the follow-up relative to the baseline.
    scale : float
        Follow-up length per baseline length (relative magnification).
    shift_mm : (float, float)
        (down, right) displacement of the baseline bones' centre of mass (the transform's
        centre) on the follow-up film, in mm.
    correlation : float
        Correlation of the band-passed films over bone after alignment (1 = identical).
    bone_dice : float
        Overlap of the bone masks after alignment, within both fields of view.
    """

    transform: sitk.Similarity2DTransform
    baseline_spacing_mm: tuple[float, float]
    followup_spacing_mm: tuple[float, float]
    nominal: bool
    rotation_deg: float
    scale: float
    shift_mm: tuple[float, float]
    correlation: float
    bone_dice: float

    def baseline_to_followup_mm(self, x_mm, y_mm):
        """Baseline (x, y) mm → follow-up (x, y) mm."""
        return _apply(self.transform, x_mm, y_mm)

    def followup_to_baseline_mm(self, x_mm, y_mm):
        """Follow-up (x, y) mm → baseline (x, y) mm."""
        return _apply(self.transform.GetInverse(), x_mm, y_mm)

    def followup_to_baseline(self, rows, cols):
        """Follow-up source pixel (row, col) → baseline source pixel (row, col)."""
        (fr, fc), (br, bc) = self.followup_spacing_mm, self.baseline_spacing_mm
        x, y = self.followup_to_baseline_mm(np.asarray(cols, float) * fc,
                                            np.asarray(rows, float) * fr)
        return y / br, x / bc

    def baseline_to_followup(self, rows, cols):
        """Baseline source pixel (row, col) → follow-up source pixel (row, col)."""
        (fr, fc), (br, bc) = self.followup_spacing_mm, self.baseline_spacing_mm
        x, y = self.baseline_to_followup_mm(np.asarray(cols, float) * bc,
                                            np.asarray(rows, float) * br)
        return y / fr, x / fc

    @property
    def pixel_area_ratio(self) -> float:
        """Baseline pixels per follow-up pixel: turns follow-up pixel areas into baseline
        pixel areas (corrects both magnification and detector pixel size)."""
        (fr, fc), (br, bc) = self.followup_spacing_mm, self.baseline_spacing_mm
        return (fr * fc) / (br * bc) / self.scale ** 2

    def warp_followup_labels(self, labels: np.ndarray, baseline_shape: tuple[int, int]
                             ) -> np.ndarray:
        """Resample a follow-up label image onto the baseline source grid (nearest label)."""
        return _warp_labels(labels, self.followup_spacing_mm, baseline_shape,
                            self.baseline_spacing_mm, self.transform)

    def warp_baseline_labels(self, labels: np.ndarray, followup_shape: tuple[int, int]
                             ) -> np.ndarray:
        """Resample a baseline label image onto the follow-up source grid (nearest label)."""
        return _warp_labels(labels, self.baseline_spacing_mm, followup_shape,
                            self.followup_spacing_mm, self.transform.GetInverse())

    def warp_baseline_image(self, image: np.ndarray, followup_shape: tuple[int, int]
                            ) -> np.ndarray:
        """Resample a baseline image onto the follow-up source grid (linear, float32; NaN
        beyond the baseline)."""
        return _warp(np.asarray(image, np.float32), self.baseline_spacing_mm, followup_shape,
                     self.followup_spacing_mm, self.transform.GetInverse(), sitk.sitkLinear,
                     float("nan"), sitk.sitkFloat32)

    def warp_followup_image(self, image: np.ndarray, baseline_shape: tuple[int, int]
                            ) -> np.ndarray:
        """Resample a follow-up image onto the baseline source grid (linear, float32; NaN
        beyond the follow-up)."""
        return _warp(np.asarray(image, np.float32), self.followup_spacing_mm, baseline_shape,
                     self.baseline_spacing_mm, self.transform, sitk.sitkLinear,
                     float("nan"), sitk.sitkFloat32)


@dataclass(frozen=True, eq=False)
class _Prepared:
    """One film on its registration grid (SimpleITK images in source-grid mm)."""

    image: sitk.Image
    bone: sitk.Image
    mask: sitk.Image
    field: np.ndarray
    bone_array: np.ndarray
    spacing_mm: tuple[float, float]
    nominal: bool


def check_same_anatomy(baseline: Radiograph, followup: Radiograph) -> tuple[str, ...]:
    """Refuse films whose metadata name another patient, side, body part or view.

    A value missing on either film cannot be checked: it is returned as a note (image
    similarity after registration is then the only check).

    Returns
    -------
    tuple of str
        Notes on what could not be checked.

    Raises
    ------
    DifferentAnatomy
    """
    notes = []
    for name, label in IDENTITY_FIELDS:
        a = getattr(baseline.metadata, name)
        b = getattr(followup.metadata, name)
        if a is None or b is None or str(a).strip() == "" or str(b).strip() == "":
            notes.append(f"{label} not checked (missing from the metadata)")
        elif str(a).strip().upper() != str(b).strip().upper():
            shown = (a, b) if name != "patient_key" else ("one patient", "another")
            raise DifferentAnatomy(
                followup.source_path,
                f"shows {label} {shown[1]!s}, but the baseline {baseline.source_path} shows "
                f"{shown[0]!s}: not the same anatomy",
                "compare films of the same patient, side, body part and view")
    return tuple(notes)


def register_films(baseline: Radiograph, followup: Radiograph,
                   config: AnalysisConfig | None = None, *,
                   baseline_deposits: np.ndarray | None = None,
                   followup_deposits: np.ndarray | None = None,
                   check_metadata: bool = True) -> Registration:
    """Register a follow-up film onto its baseline with a bone-driven similarity transform.

    Parameters
    ----------
    baseline, followup : Radiograph
    config : AnalysisConfig, optional
        Its `registration` section, and its `anatomy` section for the bone masks.
    baseline_deposits, followup_deposits : ndarray, optional
        Deposit labels (or masks) in each film's source grid: left out of the metric.
    check_metadata : bool
        Refuse on mismatching metadata first (`check_same_anatomy`).

    Returns
    -------
    Registration

    Raises
    ------
    DifferentAnatomy
        The metadata name another patient, side, body part or view.
    RegistrationFailed
        No plausible alignment of sufficient quality was found.
    """
    config = config or AnalysisConfig()
    if check_metadata:
        check_same_anatomy(baseline, followup)
    # ITK prints a warning for every candidate that leaves the films without overlap; those
    # candidates are simply scored worst, so keep stderr for messages that matter.
    warnings_shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    # The metric is threaded on its own: the same films gave transforms 1.5 µm apart, and
    # once a refusal (correlation 0.25 instead of 0.87), with the method's threads at one
    # but the global default at the core count (SimpleITK's registration overview:
    # reproducibility needs one thread globally as well as a fixed sampling seed).
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        return _register(baseline, followup, config, baseline_deposits, followup_deposits)
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_shown)
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _register(baseline, followup, analysis: AnalysisConfig, baseline_deposits,
              followup_deposits) -> Registration:
    config = analysis.registration
    fixed = _prepare(baseline, baseline_deposits, analysis)
    moving = _prepare(followup, followup_deposits, analysis)
    if not fixed.bone_array.any() or not moving.bone_array.any():
        # Both films on the same (own) bone mask, so that the masks' overlap stays comparable.
        fixed = _prepare(baseline, baseline_deposits, analysis, own_bone=True)
        moving = _prepare(followup, followup_deposits, analysis, own_bone=True)
    if not fixed.bone_array.any() or not moving.bone_array.any():
        which = baseline if not fixed.bone_array.any() else followup
        raise RegistrationFailed(which.source_path, "no bone found to register on",
                                 "serial comparison needs films that show bone")
    initial = sitk.CenteredTransformInitializer(
        fixed.bone, moving.bone, sitk.Similarity2DTransform(),
        sitk.CenteredTransformInitializerFilter.MOMENTS)
    start = _coarse_search(fixed, moving, initial, config)
    # Optionally refine from several magnifications and keep the best alignment (with
    # Mattes MI and a rigid stage first, one start at 1.0 suffices on the phantom series).
    best = None
    for scale in config.start_scales:
        candidate = sitk.Similarity2DTransform(start)
        candidate.SetScale(scale)
        candidate = _optimise(fixed, moving, candidate, config)
        value = _metric_value(fixed, moving, candidate, config)
        if best is None or value < best[0]:
            best = (value, candidate)
    transform = best[1]
    return _checked(baseline, followup, fixed, moving, transform, config)


def _prepare(radiograph: Radiograph, deposits: np.ndarray | None, analysis: AnalysisConfig,
             own_bone: bool = False) -> _Prepared:
    config, anatomy_config = analysis.registration, analysis.anatomy
    body_part = radiograph.metadata.body_part
    grid = to_analysis_grid(radiograph, GridConfig(spacing_mm=config.spacing_mm))
    anatomy = find_anatomy(grid, anatomy_config, body_part)
    values = grid.values
    low, high = (s / config.spacing_mm for s in config.band_mm)
    band = (cv2.GaussianBlur(values, (0, 0), low) - cv2.GaussianBlur(values, (0, 0), high))
    field = (anatomy.body if anatomy.body.any() or not own_bone else True) & ~anatomy.excluded
    if deposits is not None:
        small = cv2.resize((np.asarray(deposits) > 0).astype(np.uint8),
                           (values.shape[1], values.shape[0]), interpolation=cv2.INTER_AREA) > 0
        grown = cv2.dilate(small.astype(np.uint8),
                           disk(2 * config.deposit_margin_mm / config.spacing_mm + 1)) > 0
        field &= ~grown
    if own_bone:
        bone = _bone_emphasis(values, field, config.spacing_mm,
                              bone_scale_mm(anatomy_config, body_part),
                              anatomy_config.bone_min_area_mm2) & field
    else:
        bone = anatomy.bone & field
    near_bone = cv2.dilate(bone.astype(np.uint8),
                           disk(2 * config.bone_margin_mm / config.spacing_mm + 1)) > 0
    mask = near_bone & field
    if bone.any():
        # Scale by the film's own bone contrast: correlation does not need it, but the
        # optimiser's step sizes then mean the same on every film.
        spread = float(np.std(band[mask])) or 1.0
        band = band / spread
    spacing, nominal = grid.source_spacing_mm, grid.nominal
    rows, cols = radiograph.shape
    # cv2.resize puts grid pixel i at source pixel (i + 0.5) * step - 0.5.
    step = (rows / values.shape[0], cols / values.shape[1])
    origin = ((0.5 * step[1] - 0.5) * spacing[1], (0.5 * step[0] - 0.5) * spacing[0])
    grid_spacing = (step[1] * spacing[1], step[0] * spacing[0])

    def image(array, pixel_type):
        img = sitk.GetImageFromArray(array)
        img = sitk.Cast(img, pixel_type)
        img.SetSpacing(grid_spacing)
        img.SetOrigin(origin)
        return img

    return _Prepared(image(band.astype(np.float32), sitk.sitkFloat32),
                     image(bone.astype(np.uint8), sitk.sitkUInt8),
                     image(mask.astype(np.uint8), sitk.sitkUInt8),
                     field, bone, spacing, nominal)


def _bone_emphasis(values: np.ndarray, field: np.ndarray, spacing_mm: float, scale_mm: float,
                   min_area_mm2: float) -> np.ndarray:
    """A bone mask of the registration's own, for films where the detector finds none.

    Bone is what stands above the local soft-tissue floor (a grey opening wider than the
    bones, on a 1 mm grid) by more than Otsu's threshold of that excess over the exposed
    field; components smaller than a bone's minimum area are dropped.
    """
    if field.sum() < 16:
        return np.zeros(values.shape, bool)
    factor = max(1, int(round(1.0 / spacing_mm)))
    coarse_mm = spacing_mm * factor
    size = (max(1, values.shape[1] // factor), max(1, values.shape[0] // factor))
    small = cv2.resize(values, size, interpolation=cv2.INTER_AREA)
    inside = cv2.resize(field.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    if inside.sum() < 16:
        return np.zeros(values.shape, bool)
    filled = np.where(inside, small, np.percentile(small[inside], 5)).astype(np.float32)
    floor = cv2.morphologyEx(filled, cv2.MORPH_OPEN, disk(scale_mm / coarse_mm))
    excess = filled - floor
    bone = inside & (excess > threshold_otsu(excess[inside]))
    bone = cv2.morphologyEx(bone.astype(np.uint8), cv2.MORPH_OPEN, disk(2.0 / coarse_mm + 1))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(bone, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] * coarse_mm ** 2 >= min_area_mm2
    keep[0] = False
    bone = fill_small_holes(keep[labels], 0.05 * inside.sum())
    return cv2.resize(bone.astype(np.uint8), (values.shape[1], values.shape[0]),
                      interpolation=cv2.INTER_NEAREST) > 0


def _coarse_search(fixed: _Prepared, moving: _Prepared, initial, config: RegistrationConfig
                   ) -> sitk.Similarity2DTransform:
    """Best start over a range of rotations, each with the shift found by cross-correlation.

    Long bones (forearm, leg) give a metric with a narrow basin that is nearly flat along the
    shaft, so a local optimiser alone can slide; the cross-correlation of the masked,
    smoothed band-passed films finds the shift globally for each candidate rotation (plain,
    not phase correlation: whitening would amplify the noise). The few best rotations are
    then ranked by the metric itself.
    """
    level = min(1, len(config.shrink_factors) - 1)
    factor, sigma = config.shrink_factors[level], config.smoothing_mm[level]
    feather = [sitk.SmoothingRecursiveGaussian(sitk.Cast(p.mask, sitk.sitkFloat32), 2.0)
               for p in (fixed, moving)]
    images = [sitk.Shrink(sitk.SmoothingRecursiveGaussian(p.image, max(sigma, 1e-3)) * f,
                          [factor, factor]) for p, f in zip((fixed, moving), feather)]
    fixed_array = sitk.GetArrayFromImage(images[0]).astype(np.float64)
    spacing = images[0].GetSpacing()
    step = config.start_rotation_step_deg
    angles = np.arange(-config.start_rotation_range_deg,
                       config.start_rotation_range_deg + step / 2, step)
    candidates = []
    for angle in angles:
        candidate = sitk.Similarity2DTransform(initial)
        candidate.SetAngle(math.radians(float(angle)))
        warped = sitk.GetArrayFromImage(sitk.Resample(images[1], images[0], candidate,
                                                      sitk.sitkLinear, 0.0)).astype(np.float64)
        (dx, dy), peak = _cross_correlation_shift(fixed_array, warped)
        c, s = math.cos(math.radians(float(angle))), math.sin(math.radians(float(angle)))
        px, py = dx * spacing[0], dy * spacing[1]
        tx, ty = candidate.GetTranslation()
        candidate.SetTranslation((tx + c * px - s * py, ty + s * px + c * py))
        candidates.append((peak, candidate))
    candidates.sort(key=lambda item: -item[0])
    ranked = [(_metric_value(fixed, moving, t, config), k, t)
              for k, (_, t) in enumerate(candidates[:3])]
    return min(ranked, key=lambda item: (item[0], item[1]))[2]


def _cross_correlation_shift(fixed: np.ndarray, warped: np.ndarray):
    """Shift (dx, dy) in pixels with ``warped(p + d) ~ fixed(p)``, and the normalised peak."""
    rows, cols = fixed.shape[0] * 2, fixed.shape[1] * 2   # zero-padded: no wrap-around
    a, b = fixed - fixed.mean(), warped - warped.mean()
    spectrum = np.conj(np.fft.rfft2(a, (rows, cols))) * np.fft.rfft2(b, (rows, cols))
    correlation = np.fft.irfft2(spectrum, (rows, cols))
    r, c = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
    norm = math.sqrt(float((a * a).sum() * (b * b).sum())) or 1.0
    dy = r if r < rows // 2 else r - rows
    dx = c if c < cols // 2 else c - cols
    return (float(dx), float(dy)), float(correlation[r, c]) / norm


def _method(fixed: _Prepared, moving: _Prepared, config: RegistrationConfig,
            levels) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(config.histogram_bins)
    method.SetMetricFixedMask(fixed.mask)
    method.SetMetricMovingMask(moving.mask)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(config.sampling_fraction, 20240115)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=config.learning_rate, minStep=config.min_step,
        numberOfIterations=config.iterations, relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    factors, sigmas = levels
    method.SetShrinkFactorsPerLevel(list(factors))
    method.SetSmoothingSigmasPerLevel(list(sigmas))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def _metric_value(fixed, moving, transform, config, coarse=False) -> float:
    levels = ((config.shrink_factors[0],), (config.smoothing_mm[0],)) if coarse else \
        ((1,), (0.0,))
    method = _method(fixed, moving, config, levels)
    method.SetInitialTransform(sitk.Similarity2DTransform(transform), inPlace=True)
    try:
        return float(method.MetricEvaluate(fixed.image, moving.image))
    except RuntimeError:   # no overlap at all: the worst possible value
        return math.inf


def _optimise(fixed, moving, start, config) -> sitk.Similarity2DTransform:
    """Rigid on the coarser levels (magnification held at the start's), then similarity on
    the two finest.

    Magnification is the loosest parameter on long bones; fitting rotation and shift first
    keeps the similarity stage from trading a shift along the shaft for a scale change. The
    similarity stage runs twice: along a shaft the metric is so flat that the optimiser's
    shrinking step can stop it part of the way (1.1 mm short on a phantom forearm), and a
    second run, from there with fresh steps, goes on to the minimum.
    """
    transform = sitk.Similarity2DTransform(start)
    n = len(config.shrink_factors)
    coarse, fine = slice(0, max(1, n - 1)), slice(max(0, n - 2), n)
    _execute(fixed, moving, transform, config,
             (config.shrink_factors[coarse], config.smoothing_mm[coarse]),
             weights=(0.0, 1.0, 1.0, 1.0))   # (scale, angle, shift x, shift y)
    for _ in range(2):
        _execute(fixed, moving, transform, config,
                 (config.shrink_factors[fine], config.smoothing_mm[fine]))
    return transform


def _execute(fixed, moving, transform, config, levels, weights=None) -> None:
    """Optimise `transform` in place (a weight of 0 holds that parameter)."""
    method = _method(fixed, moving, config, levels)
    if weights is not None:
        method.SetOptimizerWeights(list(weights))
    method.SetInitialTransform(transform, inPlace=True)
    try:
        method.Execute(fixed.image, moving.image)
    except RuntimeError as exc:   # ITK: too few samples overlap, the optimiser diverged...
        raise RegistrationFailed(None, f"the registration did not converge "
                                 f"({str(exc).strip().splitlines()[-1][:120]})",
                                 "check that both films show the same anatomy") from None


def _checked(baseline, followup, fixed, moving, transform, config) -> Registration:
    angle = math.degrees(transform.GetAngle())
    scale = float(transform.GetScale())
    where = f"aligning {followup.source_path} onto {baseline.source_path}"
    if abs(angle) > config.max_rotation_deg or abs(math.log(scale)) > math.log1p(
            config.max_scale_change):
        raise RegistrationFailed(
            None, f"{where} needs a rotation of {angle:.0f}° and a scale of {scale:.2f}, "
            "beyond any repositioning",
            "check that both films show the same body part in the same view")
    correlation, dice = _quality(fixed, moving, transform)
    if correlation < config.min_correlation or dice < config.min_bone_dice:
        raise RegistrationFailed(
            None, f"{where}: the bones do not match after alignment (correlation "
            f"{correlation:.2f}, minimum {config.min_correlation:g}; bone overlap {dice:.2f}, "
            f"minimum {config.min_bone_dice:g})",
            "check that both films show the same patient, side, body part and view")
    # The transform maps baseline to follow-up: its translation is in follow-up mm.
    tx, ty = transform.GetTranslation()
    return Registration(transform, fixed.spacing_mm, moving.spacing_mm,
                        fixed.nominal or moving.nominal, angle, scale, (ty, tx),
                        correlation, dice)


def _quality(fixed: _Prepared, moving: _Prepared, transform) -> tuple[float, float]:
    """Correlation over the fixed mask, and bone Dice within both fields of view."""
    warped = sitk.GetArrayFromImage(sitk.Resample(moving.image, fixed.image, transform,
                                                  sitk.sitkLinear, 0.0))
    moving_field = _sitk_like(moving.field, moving.image)
    in_view = sitk.GetArrayFromImage(sitk.Resample(moving_field, fixed.image, transform,
                                                   sitk.sitkNearestNeighbor, 0)) > 0
    fixed_values = sitk.GetArrayFromImage(fixed.image)
    region = sitk.GetArrayFromImage(fixed.mask).astype(bool) & in_view
    if region.sum() < 50:
        return 0.0, 0.0
    a = fixed_values[region] - fixed_values[region].mean()
    b = warped[region] - warped[region].mean()
    correlation = float((a * b).sum() / math.sqrt(float((a * a).sum() * (b * b).sum()) or 1.0))
    warped_bone = sitk.GetArrayFromImage(sitk.Resample(moving.bone, fixed.image, transform,
                                                       sitk.sitkNearestNeighbor, 0)) > 0
    both = fixed.field & in_view
    a_bone, b_bone = fixed.bone_array & both, warped_bone & both
    total = int(a_bone.sum() + b_bone.sum())
    dice = 2.0 * int((a_bone & b_bone).sum()) / total if total else 0.0
    return correlation, dice


def _sitk_like(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.CopyInformation(like)
    return image


def _warp_labels(labels: np.ndarray, spacing_mm: tuple[float, float], shape: tuple[int, int],
                 target_spacing_mm: tuple[float, float], transform: sitk.Transform) -> np.ndarray:
    """Labels resampled (nearest) onto a grid of `shape`, `transform` mapping its mm to theirs."""
    return _warp(np.asarray(labels).astype(np.int32), spacing_mm, shape, target_spacing_mm,
                 transform, sitk.sitkNearestNeighbor, 0, sitk.sitkInt32)


def _warp(image: np.ndarray, spacing_mm: tuple[float, float], shape: tuple[int, int],
          target_spacing_mm: tuple[float, float], transform: sitk.Transform, interpolator,
          outside, pixel_type) -> np.ndarray:
    """`image` resampled onto a grid of `shape`, `transform` mapping its mm to the image's."""
    moving = _sitk_image(image, spacing_mm)
    reference = sitk.Image(int(shape[1]), int(shape[0]), pixel_type)
    reference.SetSpacing((target_spacing_mm[1], target_spacing_mm[0]))
    warped = sitk.Resample(moving, reference, transform, interpolator, outside, pixel_type)
    return sitk.GetArrayFromImage(warped)


def _sitk_image(array: np.ndarray, spacing_mm: tuple[float, float]) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((spacing_mm[1], spacing_mm[0]))
    return image


def _apply(transform: sitk.Transform, x_mm, y_mm):
    x = np.asarray(x_mm, dtype=float)
    y = np.asarray(y_mm, dtype=float)
    points = [transform.TransformPoint((float(a), float(b))) for a, b in zip(x.ravel(), y.ravel())]
    out = np.array(points, dtype=float).reshape(*x.shape, 2) if points else np.zeros((*x.shape, 2))
    return out[..., 0], out[..., 1]
