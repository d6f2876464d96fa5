"""Exporting results: table rows, CSV files, label images and QC overlays.

Rows are plain ordered dicts built from a `Radiograph` and its `DepositFindings`; the column
lists below are the output contract of ``calcitrack analyze`` (see ``DESIGN.md``). CSV files are
written through `atomic_output`, and images are encoded to PNG bytes that the batch writes the
same way, so a crash never leaves a file half-written. Areas in mm² appear
only for calibrated films: an uncalibrated film has empty mm² cells, never a number resting on
an assumed spacing.
"""

from __future__ import annotations

import csv
import enum
import math
import os
from dataclasses import dataclass

import cv2
import numpy as np

from . import __version__
from .burden import BURDEN_COLUMNS, DepositInfo
from .config import AnalysisConfig
from .deposits import DepositFindings
from .files import atomic_output
from .measure import DepositMeasures
from .radiograph import Radiograph
from .regions import RegionMap

#: Significant digits of floats in CSV files (fixed, so reruns are byte-identical).
FLOAT_DIGITS = 6
#: Deposits a 16-bit label image can hold.
MAX_LABELS = 65535
#: Long side of a QC overlay, in display pixels (smaller films are enlarged to the minimum).
QC_LONG_SIDE_PX = (512, 1600)

IMAGE_COLUMNS = (
    "image_id", "source_path", "status", "error", "mask_path", "qc_path", "seg_path", "sr_path",
    "rows", "cols", "spacing_row_mm", "spacing_col_mm", "spacing_source", "nominal_spacing_mm",
    "patient_key", "study_date", "laterality", "body_part", "view_position", "modality",
    "sop_instance_uid", "n_deposits", "total_area_px", "total_area_mm2", "largest_area_px",
    "largest_area_mm2", "mean_relative_density", "density_score_mm2", "integrated_density_mm2",
    "severity", "region_scheme", "calcitrack_version", "config_hash", "notes",
)
"""Columns of ``images.csv``: one row per input file."""

DEPOSIT_COLUMNS = (
    "image_id", "deposit_id", "region", "fingertip", "periarticular", "joint_distance_mm",
    "morphology", "density_weight", "density_score_px", "density_score_mm2", "centroid_row",
    "centroid_col", "bbox_r0", "bbox_c0", "bbox_r1", "bbox_c1", "area_px", "area_mm2",
    "equivalent_diameter_px", "equivalent_diameter_mm", "major_axis_mm", "minor_axis_mm",
    "eccentricity", "solidity", "mean_contrast", "peak_contrast", "noise_sigma", "cnr",
    "rim_contrast", "rim_cnr", "relative_density", "peak_relative_density", "core_noise_ratio",
    "bone_contact", "skin_depth_mm", "skin_depth_change", "spacing_source",
    "calcitrack_version", "config_hash",
)
"""Columns of ``deposits.csv``: one row per deposit; ``deposit_id`` is its mask label."""

REGION_COLUMNS = ("image_id", *BURDEN_COLUMNS, "spacing_source", "calcitrack_version",
                  "config_hash")
"""Columns of ``regions.csv``: one row per film and region, then ``region = all``."""

_MM_MEASURES = ("area_mm2", "equivalent_diameter_mm", "major_axis_mm", "minor_axis_mm",
                "skin_depth_mm")


class Status(enum.StrEnum):
    """Outcome of one input file (the ``status`` column)."""

    OK = "ok"
    ERROR = "error"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Provenance:
    """What produced a result: recorded in every output row."""

    calcitrack_version: str
    config_hash: str

    @classmethod
    def of(cls, config: AnalysisConfig) -> Provenance:
        """Provenance of a run of this package with `config`."""
        return cls(__version__, config.config_hash)


def image_row(image_id: str, source_path: str, provenance: Provenance, *,
              status: Status = Status.OK, radiograph: Radiograph | None = None,
              findings: DepositFindings | None = None, mask_path: str | None = None,
              qc_path: str | None = None, seg_path: str | None = None,
              sr_path: str | None = None, error: str | None = None,
              notes: tuple[str, ...] = (), film_burden: dict | None = None,
              region_scheme: str | None = None) -> dict:
    """Build the ``images.csv`` row of one input file.

    Whatever is known is filled in: an error after reading still records the film's size,
    calibration and metadata; deposit columns need `findings`.

    Parameters
    ----------
    image_id : str
        Stable identifier of the input within the run.
    source_path : str
        The input file as given.
    provenance : Provenance
    status : Status
    radiograph : Radiograph, optional
    findings : DepositFindings, optional
    mask_path, qc_path, seg_path, sr_path : str, optional
        Output files, relative to the output folder.
    error : str, optional
        One-line message of a failed file.
    notes : tuple of str
        Extra remarks (e.g. why a file was skipped); the film's own reading notes are added.
    film_burden : dict, optional
        The ``region = all`` row of `imaging.burden.region_burden` (scores and severity).
    region_scheme : str, optional
        How the film was divided into regions (`RegionMap.kind`).
    """
    row = dict.fromkeys(IMAGE_COLUMNS)
    row.update(image_id=image_id, source_path=source_path, status=status, error=error,
               mask_path=mask_path, qc_path=qc_path, seg_path=seg_path, sr_path=sr_path,
               calcitrack_version=provenance.calcitrack_version,
               config_hash=provenance.config_hash)
    remarks = list(notes)
    if radiograph is not None:
        meta = radiograph.metadata
        spacing = radiograph.spacing_mm or (None, None)
        row.update(rows=radiograph.shape[0], cols=radiograph.shape[1],
                   spacing_row_mm=spacing[0], spacing_col_mm=spacing[1],
                   spacing_source=radiograph.spacing_source, patient_key=meta.patient_key,
                   study_date=meta.study_date, laterality=meta.laterality,
                   body_part=meta.body_part, view_position=meta.view_position,
                   modality=meta.modality, sop_instance_uid=meta.sop_instance_uid)
        remarks.extend(radiograph.notes)
    if findings is not None:
        row.update(_burden(radiograph, findings))
        if findings.grid.nominal:
            row["nominal_spacing_mm"] = findings.grid.source_spacing_mm[0]
            remarks.append("uncalibrated: analysed at an assumed spacing; areas in pixels only")
    if film_burden is not None:
        row.update(density_score_mm2=film_burden["density_score_mm2"],
                   integrated_density_mm2=film_burden["integrated_density_mm2"],
                   severity=film_burden["severity"], region_scheme=region_scheme)
    row["notes"] = "; ".join(remarks) or None
    return row


def _burden(radiograph: Radiograph, findings: DepositFindings) -> dict:
    deposits = findings.deposits
    areas = np.array([d.area_px for d in deposits], dtype=np.int64)
    pixel_area = radiograph.pixel_area_mm2
    total_px = int(areas.sum())
    largest_px = int(areas.max()) if deposits else None
    density = None
    if deposits and all(d.relative_density is not None for d in deposits):
        # Mean over every deposit pixel: each deposit weighs by its area.
        density = float(sum(d.relative_density * d.area_px for d in deposits) / total_px)
    return {
        "n_deposits": len(deposits),
        "total_area_px": total_px,
        "total_area_mm2": None if pixel_area is None else total_px * pixel_area,
        "largest_area_px": largest_px,
        "largest_area_mm2": None if pixel_area is None or largest_px is None
        else largest_px * pixel_area,
        "mean_relative_density": density,
    }


def deposit_rows(image_id: str, radiograph: Radiograph, findings: DepositFindings,
                 provenance: Provenance, infos: tuple[DepositInfo, ...]) -> list[dict]:
    """Build the ``deposits.csv`` rows of one film, in label order.

    `infos` (from `imaging.burden.assign_deposits`, one per deposit) give the region,
    morphology and density band. Physical sizes are left empty when the film is
    uncalibrated, whatever the detector's analysis grid assumed.
    """
    rows = []
    for deposit, info in zip(findings.deposits, infos, strict=True):
        row = dict.fromkeys(DEPOSIT_COLUMNS)
        r0, c0, r1, c1 = deposit.bbox
        row.update(
            image_id=image_id, deposit_id=deposit.label, region=info.region,
            fingertip=info.fingertip, periarticular=info.periarticular,
            joint_distance_mm=info.joint_distance_mm, morphology=info.morphology,
            density_weight=info.density_weight, density_score_px=info.density_score_px,
            density_score_mm2=(info.density_score_px * radiograph.pixel_area_mm2
                               if radiograph.is_calibrated and info.density_score_px is not None
                               else None),
            centroid_row=deposit.centroid_row, centroid_col=deposit.centroid_col,
            bbox_r0=r0, bbox_c0=c0, bbox_r1=r1, bbox_c1=c1, area_px=deposit.area_px,
            equivalent_diameter_px=deposit.equivalent_diameter_px,
            eccentricity=deposit.eccentricity, solidity=deposit.solidity,
            mean_contrast=deposit.mean_contrast, peak_contrast=deposit.peak_contrast,
            noise_sigma=deposit.noise_sigma, cnr=deposit.cnr,
            rim_contrast=deposit.rim_contrast, rim_cnr=deposit.rim_cnr,
            relative_density=deposit.relative_density,
            peak_relative_density=deposit.peak_relative_density,
            core_noise_ratio=deposit.core_noise_ratio, bone_contact=deposit.bone_contact,
            skin_depth_change=deposit.skin_depth_change,
            spacing_source=radiograph.spacing_source,
            calcitrack_version=provenance.calcitrack_version,
            config_hash=provenance.config_hash)
        for name in _MM_MEASURES:
            row[name] = getattr(deposit, name) if radiograph.is_calibrated else None
        rows.append(row)
    return rows


def region_rows(image_id: str, radiograph: Radiograph, burden_rows, provenance: Provenance
                ) -> list[dict]:
    """The ``regions.csv`` rows of one film from `imaging.burden.region_burden`'s rows."""
    return [{**row, "image_id": image_id, "spacing_source": radiograph.spacing_source,
             "calcitrack_version": provenance.calcitrack_version,
             "config_hash": provenance.config_hash} for row in burden_rows]


def format_cell(value) -> str:
    """Format one CSV cell: None and NaN empty, floats to `FLOAT_DIGITS` significant digits.

    Examples
    --------
    >>> [format_cell(v) for v in (None, float("nan"), 0.1 + 0.2, -0.0, 3, "a\\nb")]
    ['', '', '0.3', '0', '3', 'a b']
    """
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return ""
        return f"{value + 0.0:.{FLOAT_DIGITS}g}"  # + 0.0 turns -0.0 into 0.0
    return " ".join(str(value).split())


def write_csv(path: str | os.PathLike, rows, columns) -> None:
    """Write rows (dicts) as a CSV file with exactly `columns`, atomically.

    Keys missing from a row give empty cells; keys not in `columns` raise ``ValueError``.
    """
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: format_cell(value) for key, value in row.items()})


def label_image(labels: np.ndarray) -> np.ndarray:
    """Return deposit labels as uint16, refusing what a 16-bit image cannot hold."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 2-D integer image, got {labels.dtype} {labels.shape}")
    if labels.size and int(labels.min()) < 0:
        raise ValueError("labels must not be negative")
    count = int(labels.max(initial=0))
    if count > MAX_LABELS:
        raise ValueError(f"{count} deposits do not fit in a 16-bit label image (at most "
                         f"{MAX_LABELS}); the detection parameters are probably far too permissive")
    return labels.astype(np.uint16)


def encode_png(image: np.ndarray) -> bytes:
    """An 8/16-bit greyscale or 8-bit BGR image as PNG file bytes (lossless).

    Examples
    --------
    >>> import cv2
    >>> data = encode_png(label_image(np.array([[0, 1], [300, 2]])))
    >>> cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).tolist()
    [[0, 1], [300, 2]]
    """
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"cannot encode a {image.dtype} {image.shape} image as PNG")
    return encoded.tobytes()


# --- QC overlay ---------------------------------------------------------------------------

_BONE_BGR = (255, 150, 40)
_EXCLUDED_BGR = (0, 215, 255)
_DEPOSIT_BGR = (60, 40, 255)
_REGION_BGR = (80, 220, 80)
_TINT_ALPHA = 0.3
_HATCH_PERIOD_PX = 10
#: Deposits smaller than this on the overlay (display pixels) are ringed to stay visible.
_RING_BELOW_PX = 6


def qc_overlay(radiograph: Radiograph, findings: DepositFindings, image_id: str,
               regions: RegionMap | None = None) -> np.ndarray:
    """Draw a reader's check image of one film's findings (BGR, uint8).

    The film is shown display-windowed (its VOI window when it has one, else the 0.5-99.5th
    percentiles) with its long side scaled into `QC_LONG_SIDE_PX`; bone is tinted blue,
    excluded regions are hatched yellow, region boundaries are drawn in green with their
    names, and each deposit is outlined in red with its label number. A title band gives the
    image id, the deposit count, the burden and the spacing source.
    """
    rows, cols = radiograph.shape
    low, high = QC_LONG_SIDE_PX
    scale = min(max(max(rows, cols), low), high) / max(rows, cols)
    size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    film = cv2.resize(radiograph.pixels, size,
                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
    canvas = cv2.cvtColor(_windowed(film, radiograph.display_window), cv2.COLOR_GRAY2BGR)

    def on_canvas(mask):
        return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0

    anatomy = findings.anatomy
    _tint(canvas, on_canvas(anatomy.bone), _BONE_BGR)
    excluded = on_canvas(anatomy.excluded)
    _tint(canvas, excluded, _EXCLUDED_BGR)
    ys, xs = np.nonzero(excluded)
    hatch = (xs + ys) % _HATCH_PERIOD_PX < 2
    canvas[ys[hatch], xs[hatch]] = _EXCLUDED_BGR
    if regions is not None:
        _draw_regions(canvas, regions, size)
    for deposit in findings.deposits:
        _draw_deposit(canvas, findings.labels, deposit, scale)
    return _with_title(canvas, _title_lines(radiograph, findings, image_id))


def _draw_regions(canvas: np.ndarray, regions: RegionMap, size) -> None:
    labels = cv2.resize(regions.labels.astype(np.uint16), size, interpolation=cv2.INTER_NEAREST)
    grown = cv2.dilate(labels, np.ones((3, 3), np.uint8))
    boundary = (grown != labels) & (labels > 0)
    canvas[boundary] = _REGION_BGR
    font_scale = _font_scale(canvas.shape[1]) * 0.8
    for index, name in enumerate(regions.names, start=1):
        ys, xs = np.nonzero(labels == index)
        if len(xs):
            width = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][0]
            _text(canvas, name, (round(xs.mean() - width / 2), round(ys.mean())), font_scale,
                  _REGION_BGR)


def _windowed(film: np.ndarray, window) -> np.ndarray:
    if window is not None:
        center, width = window
        low, high = center - width / 2, center + width / 2
    else:
        low, high = np.percentile(film, (0.5, 99.5))
    span = max(float(high - low), 1e-6)
    return (np.clip((film - low) / span, 0, 1) * 255).round().astype(np.uint8)


def _tint(canvas: np.ndarray, mask: np.ndarray, colour) -> None:
    tinted = (1 - _TINT_ALPHA) * canvas[mask] + _TINT_ALPHA * np.array(colour)
    canvas[mask] = tinted.astype(np.uint8)


def _draw_deposit(canvas: np.ndarray, labels: np.ndarray, deposit: DepositMeasures,
                  scale: float) -> None:
    r0, c0, r1, c1 = deposit.bbox
    crop = np.pad(labels[r0:r1, c0:c1] == deposit.label, 1).astype(np.uint8)
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    # Pixel centres (contour coordinates) to display coordinates; the crop was padded by 1.
    offset = np.array([c0 - 1 + 0.5, r0 - 1 + 0.5])
    outlines = [np.round((c.reshape(-1, 2) + offset) * scale - 0.5).astype(np.int32)
                for c in contours]
    cv2.polylines(canvas, outlines, True, _DEPOSIT_BGR, 1, cv2.LINE_AA)
    centre = (round((deposit.centroid_col + 0.5) * scale - 0.5),
              round((deposit.centroid_row + 0.5) * scale - 0.5))
    if max(r1 - r0, c1 - c0) * scale < _RING_BELOW_PX:
        cv2.circle(canvas, centre, _RING_BELOW_PX, _DEPOSIT_BGR, 1, cv2.LINE_AA)
    font_scale = _font_scale(canvas.shape[1]) * 0.8
    anchor = (round(c1 * scale) + 2, round(r0 * scale) + round(20 * font_scale))
    _text(canvas, str(deposit.label), anchor, font_scale, _DEPOSIT_BGR)


def _title_lines(radiograph: Radiograph, findings: DepositFindings, image_id: str) -> list[str]:
    area_px = sum(d.area_px for d in findings.deposits)
    if radiograph.pixel_area_mm2 is None:
        burden = f"total {area_px} px (uncalibrated: no mm2)"
    else:
        burden = f"total {area_px * radiograph.pixel_area_mm2:.1f} mm2"
    return [f"{image_id}   {len(findings.deposits)} deposits   {burden}   "
            f"spacing: {radiograph.spacing_source}",
            "red: deposit outline + label   green: regions   blue: bone   "
            "yellow hatch: excluded"]


def _with_title(canvas: np.ndarray, lines: list[str]) -> np.ndarray:
    width = canvas.shape[1]
    font = cv2.FONT_HERSHEY_SIMPLEX
    widest = max(cv2.getTextSize(line, font, 1.0, 1)[0][0] for line in lines)
    font_scale = min(_font_scale(width), 0.97 * width / widest)
    line_height = max(8, round(28 * font_scale))
    band = np.zeros((line_height * len(lines) + 6, width, 3), np.uint8)
    for index, line in enumerate(lines):
        _text(band, line, (4, line_height * (index + 1)), font_scale, (255, 255, 255))
    return np.vstack([band, canvas])


def _font_scale(width: int) -> float:
    """Text size for an overlay this wide: legible without covering the film."""
    return min(max(width / 2000, 0.4), 0.7)


def _text(image: np.ndarray, text: str, origin, font_scale: float, colour) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, text, origin, font, font_scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, font, font_scale, colour, 1, cv2.LINE_AA)
