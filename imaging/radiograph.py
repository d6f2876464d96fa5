"""The `Radiograph` value: calibrated, attenuation-positive pixels and the facts about them.

Everything downstream of the readers works on this value only; nothing past this point looks
at DICOM tags.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np

#: Spacings outside this range (mm) are not believable for a projection radiograph.
PLAUSIBLE_SPACING_MM = (0.01, 5.0)


class SpacingSource(enum.StrEnum):
    """Where a radiograph's pixel spacing came from (recorded in every output row)."""

    PIXEL_SPACING = "pixel_spacing"
    """Pixel Spacing (0028,0030): calibrated to the patient plane by the modality."""
    DETECTOR_ERMF = "detector_ermf"
    """Imager Pixel Spacing (0018,1164) divided by Estimated Radiographic Magnification Factor."""
    DETECTOR = "detector"
    """Imager Pixel Spacing alone: at the detector plane, magnification not corrected."""
    USER = "user"
    """Given by the user (``--spacing-mm``), e.g. from a calibration ruler."""
    NONE = "none"
    """No trustworthy spacing: areas are reported in pixels only."""


@dataclass(frozen=True)
class RadiographMetadata:
    """Pseudonymous facts about a film (never names or birth dates)."""

    patient_key: str | None = None
    study_date: str | None = None
    study_time: str | None = None
    laterality: str | None = None
    body_part: str | None = None
    view_position: str | None = None
    modality: str | None = None
    sop_instance_uid: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None


@dataclass(frozen=True, eq=False)
class Radiograph:
    """A projection radiograph ready for analysis.

    Attributes
    ----------
    pixels : ndarray of float32, shape (rows, cols)
        Attenuation-positive values (brighter = denser) after the Modality LUT, whatever the
        photometric interpretation of the source. Read-only.
    spacing_mm : tuple of float or None
        (row, col) pixel spacing in mm, or None when unknown.
    spacing_source : SpacingSource
        Where `spacing_mm` came from.
    source_path : str
        The file the film was read from.
    metadata : RadiographMetadata
        Pseudonymous patient key, study date, laterality, body part, view, UIDs.
    photometric : str
        How the source orientation was handled, e.g. ``"MONOCHROME1 inverted"``.
    display_window : tuple of float or None
        (center, width) VOI window in the orientation of `pixels`, for display only.
    notes : tuple of str
        Warnings raised while reading (e.g. an implausible spacing that was ignored).
    """

    pixels: np.ndarray
    spacing_mm: tuple[float, float] | None
    spacing_source: SpacingSource
    source_path: str
    metadata: RadiographMetadata = field(default_factory=RadiographMetadata)
    photometric: str = "MONOCHROME2"
    display_window: tuple[float, float] | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        pixels = np.asarray(self.pixels, dtype=np.float32)
        if pixels.ndim != 2:
            raise ValueError(f"pixels must be 2-D, got shape {pixels.shape}")
        if pixels is self.pixels:
            pixels = pixels.copy()
        pixels.flags.writeable = False
        object.__setattr__(self, "pixels", pixels)
        if (self.spacing_mm is None) != (self.spacing_source is SpacingSource.NONE):
            raise ValueError("spacing_mm must be None exactly when spacing_source is NONE")
        if self.spacing_mm is not None:
            object.__setattr__(self, "spacing_mm", tuple(float(s) for s in self.spacing_mm))

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the source pixel grid."""
        return self.pixels.shape

    @property
    def is_calibrated(self) -> bool:
        """True when areas can be reported in mm²."""
        return self.spacing_mm is not None

    @property
    def pixel_area_mm2(self) -> float | None:
        """Area of one source pixel in mm², or None when uncalibrated."""
        if self.spacing_mm is None:
            return None
        return self.spacing_mm[0] * self.spacing_mm[1]


def plausible_spacing(value) -> tuple[float, float] | None:
    """Return a (row, col) spacing in mm if `value` is a believable spacing, else None.

    Accepts one number (isotropic) or a pair. Zero, negative, NaN, infinite values and values
    outside `PLAUSIBLE_SPACING_MM` are rejected.

    Examples
    --------
    >>> plausible_spacing([0.1, 0.1])
    (0.1, 0.1)
    >>> plausible_spacing(0) is None
    True
    """
    if value is None:
        return None
    try:
        values = [float(v) for v in (value if np.ndim(value) else [value, value])]
    except (TypeError, ValueError):
        return None
    if len(values) != 2:
        return None
    lo, hi = PLAUSIBLE_SPACING_MM
    if not all(math.isfinite(v) and lo <= v <= hi for v in values):
        return None
    return values[0], values[1]


def resolve_spacing(
    pixel_spacing=None,
    imager_pixel_spacing=None,
    magnification=None,
    user_spacing=None,
) -> tuple[tuple[float, float] | None, SpacingSource, tuple[str, ...]]:
    """Choose a film's pixel spacing by the calibration rules.

    A user spacing, when given, overrides the file. Otherwise Pixel Spacing; otherwise Imager
    Pixel Spacing divided by the Estimated Radiographic Magnification Factor (or alone, at the
    detector plane, when there is no factor); otherwise none. Implausible values are treated as
    missing and produce a note.

    Parameters
    ----------
    pixel_spacing, imager_pixel_spacing : sequence of float or None
        The (row, col) values of the DICOM attributes.
    magnification : float or None
        Estimated Radiographic Magnification Factor (>= 1 for a real geometry).
    user_spacing : float or sequence of float or None
        Spacing given by the user, in mm.

    Returns
    -------
    spacing : tuple of float or None
    source : SpacingSource
    notes : tuple of str
    """
    notes = []

    def checked(name, value):
        if value is None or (np.ndim(value) and len(value) == 0):
            return None
        spacing = plausible_spacing(value)
        if spacing is None:
            notes.append(f"{name} {value!r} is not a plausible spacing in mm; ignored")
        return spacing

    user = checked("user spacing", user_spacing)
    if user is not None:
        return user, SpacingSource.USER, tuple(notes)
    patient = checked("PixelSpacing", pixel_spacing)
    if patient is not None:
        return patient, SpacingSource.PIXEL_SPACING, tuple(notes)
    detector = checked("ImagerPixelSpacing", imager_pixel_spacing)
    if detector is not None:
        factor = _magnification(magnification)
        if factor is None:
            if magnification is not None:
                notes.append(f"EstimatedRadiographicMagnificationFactor {magnification!r} "
                             "is not plausible; ignored")
            return detector, SpacingSource.DETECTOR, tuple(notes)
        corrected = plausible_spacing([s / factor for s in detector])
        if corrected is not None:
            return corrected, SpacingSource.DETECTOR_ERMF, tuple(notes)
    return None, SpacingSource.NONE, tuple(notes)


def _magnification(value) -> float | None:
    try:
        factor = float(value)
    except (TypeError, ValueError):
        return None
    # Geometric magnification of a projection film lies between 1 and about 3.
    return factor if math.isfinite(factor) and 0.5 <= factor <= 5.0 else None
