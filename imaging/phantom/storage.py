"""Writing phantom films as DICOM with their truth files, and reading the truth back.

For a film written as ``NAME`` in a folder:

- ``NAME.dcm`` — the film (CR or DX, MONOCHROME1 or MONOCHROME2, Pixel Spacing or Imager
  Pixel Spacing with Estimated Radiographic Magnification Factor, 12-16 bits stored);
- ``NAME.truth.png`` — 16-bit label image on the film's pixel grid (0 = no deposit, k =
  deposit k);
- ``NAME.anatomy.truth.png`` — 8-bit map: 0 background, 1 soft tissue, 2 bone, 3 lead or metal,
  4 unexposed (collimated);
- ``NAME.truth.csv`` — the deposit table (one row per label);
- ``NAME.truth.json`` — film-level truth: spacing, spec, totals, definitions.

A series adds ``NAME.series.json`` listing the visits and the true change category of each
consecutive pair.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.uid import PYDICOM_ROOT_UID, ExplicitVRLittleEndian, generate_uid

from ..dicom import write_dicom
from ..files import atomic_output
from .film import PhantomFilm, PhantomSpec
from .series import PhantomSeries
from .truth import DepositTruth

TRUTH_FORMAT = "calcitrack-phantom-truth/1"
ANATOMY_CODES = {"background": 0, "soft_tissue": 1, "bone": 2, "lead_or_metal": 3,
                 "unexposed": 4}
DEFINITIONS = {
    "contrast": "noiseless film value with the deposit minus without it (film value units, "
                "source grid, after detector blur and log mapping)",
    "truth_mask": "pixels where a component's own contrast >= 50% of its peak (FWHM extent), "
                  "united over the deposit's components (a net's specks), soft tissue only",
    "noise": "std of (film - noiseless film) over soft tissue 1-4 mm around the deposit "
             "(up to 8 mm if too few pixels), other deposits excluded",
    "cnr": "mean contrast over the truth mask / noise",
    "area_mm2": "area_px x pixel area (row spacing x column spacing)",
    "change_category": "progression if total area grows > 25%, improvement if it falls > 25%, "
                       "else stable; from zero: progression if any deposit appears, else stable",
}
FIELDS = tuple(f.name for f in dataclasses.fields(DepositTruth))


@dataclass(frozen=True)
class FilmFiles:
    """Paths of one written film and its truth files."""

    dicom: Path
    labels: Path
    anatomy: Path
    table: Path
    truth: Path


@dataclass(frozen=True, eq=False)
class FilmTruth:
    """Truth read back from disk."""

    labels: np.ndarray
    anatomy: np.ndarray
    deposits: tuple[DepositTruth, ...]
    info: dict

    @property
    def pixel_area_mm2(self) -> float:
        return float(self.info["pixel_area_mm2"])


def write_film(
    film: PhantomFilm,
    folder: str | os.PathLike,
    name: str,
    *,
    photometric: str = "MONOCHROME2",
    modality: str = "DX",
    spacing_attribute: str = "PixelSpacing",
    magnification: float = 1.1,
    transfer_syntax: str = ExplicitVRLittleEndian,
    study_instance_uid: str | None = None,
    uid_prefix: str | None = None,
    series_description: str = "calcitrack phantom",
) -> FilmFiles:
    """Write a film as DICOM plus its truth files, each atomically.

    Parameters
    ----------
    film : PhantomFilm
    folder : path
    name : str
        Base name of the files (letters, digits, ``-`` and ``_``).
    photometric : {"MONOCHROME2", "MONOCHROME1"}
        MONOCHROME1 stores ``2**bits - 1 - value`` (denser = lower stored value).
    modality : {"DX", "CR"}
    spacing_attribute : {"PixelSpacing", "ImagerPixelSpacing"}
        With Imager Pixel Spacing the file holds spacing x `magnification` and the
        Estimated Radiographic Magnification Factor, so readers recover the same spacing.
    magnification : float
        Used with Imager Pixel Spacing only.
    transfer_syntax : str
        Explicit VR Little Endian, RLE Lossless or JPEG 2000 Lossless.

    Returns
    -------
    FilmFiles
    """
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"name must be letters, digits, '-' or '_', got {name!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    radiograph = film.radiograph
    bits = film.bits_stored
    top = (1 << bits) - 1
    values = np.asarray(radiograph.pixels)
    if values.min() < 0 or values.max() > top or not np.array_equal(values, np.round(values)):
        raise ValueError(f"film values must be integers in 0..{top} to be stored in {bits} bits")
    stored = values.astype(np.uint16)
    window = radiograph.display_window
    if photometric == "MONOCHROME1":
        stored = (top - stored).astype(np.uint16)
        if window is not None:
            window = (top - window[0], window[1])
    spacing = radiograph.spacing_mm
    written_spacing, factor = spacing, None
    if spacing_attribute == "ImagerPixelSpacing":
        factor = float(magnification)
        written_spacing = tuple(s * factor for s in spacing)
    spec = film.spec
    meta = radiograph.metadata
    patient_id = spec.resolved_patient_id if isinstance(spec, PhantomSpec) else "PHANTOM-INSERT"
    date = (meta.study_date or "2024-01-01").replace("-", "")
    paths = FilmFiles(folder / f"{name}.dcm", folder / f"{name}.truth.png",
                      folder / f"{name}.anatomy.truth.png", folder / f"{name}.truth.csv",
                      folder / f"{name}.truth.json")
    write_dicom(
        paths.dicom, stored, spacing_mm=written_spacing, spacing_attribute=spacing_attribute,
        magnification=factor, photometric=photometric, bits_stored=bits, modality=modality,
        patient_id=patient_id, patient_name=f"PHANTOM^{patient_id.split('-')[-1]}",
        study_date=date, study_instance_uid=study_instance_uid,
        body_part=meta.body_part or "HAND", laterality=meta.laterality,
        view_position=meta.view_position or "PA", window=window, uid_prefix=uid_prefix,
        series_description=series_description, transfer_syntax=transfer_syntax,
        uid_seed=f"{patient_id}/{date}/{paths.dicom.name}")
    _write_png(paths.labels, film.truth_labels.astype(np.uint16))
    _write_png(paths.anatomy, anatomy_codes(film))
    _write_table(paths.table, film.deposits)
    info = {
        "format": TRUTH_FORMAT,
        "film": paths.dicom.name,
        "labels": paths.labels.name,
        "anatomy_mask": paths.anatomy.name,
        "deposits": paths.table.name,
        "rows": int(values.shape[0]),
        "cols": int(values.shape[1]),
        "spacing_mm": list(spacing),
        "pixel_area_mm2": spacing[0] * spacing[1],
        "bits_stored": bits,
        "photometric": photometric,
        "modality": modality,
        "spacing_attribute": spacing_attribute,
        "magnification": factor,
        "transfer_syntax": str(transfer_syntax),
        "patient_id": patient_id,
        "study_date": meta.study_date,
        "laterality": meta.laterality,
        "body_part": meta.body_part,
        "n_deposits": len(film.deposits),
        "total_area_mm2": film.total_area_mm2,
        "negative": film.is_negative,
        "spec": _jsonable(dataclasses.asdict(spec)),
        "pose": None if film.pose is None else _jsonable(dataclasses.asdict(film.pose)),
        "anatomy_codes": ANATOMY_CODES,
        "definitions": DEFINITIONS,
        "notes": list(film.notes),
    }
    _write_json(paths.truth, info)
    return paths


def write_series(series: PhantomSeries, folder: str | os.PathLike, name: str,
                 formats: list[dict] | None = None) -> list[FilmFiles]:
    """Write every visit (``NAME_v1`` ...) and ``NAME.series.json`` with the true changes.

    Parameters
    ----------
    series : PhantomSeries
    folder : path
    name : str
    formats : list of dict, optional
        Keyword arguments of `write_film` per visit (photometric, modality, ...).
    """
    folder = Path(folder)
    formats = formats or [{} for _ in series.visits]
    if len(formats) != len(series.visits):
        raise ValueError("give one format per visit")
    study_uids = [generate_uid(prefix=PYDICOM_ROOT_UID, entropy_srcs=[name, f"visit {i + 1}"])
                  for i in range(len(series.visits))]
    written = []
    for i, (film, fmt) in enumerate(zip(series.visits, formats)):
        fmt = dict(fmt)
        fmt.setdefault("study_instance_uid", study_uids[i])
        written.append(write_film(film, folder, f"{name}_v{i + 1}", **fmt))
    info = {
        "format": TRUTH_FORMAT,
        "visits": [{"visit": i + 1, "film": w.dicom.name, "truth": w.truth.name,
                    "study_date": film.radiograph.metadata.study_date,
                    "total_area_mm2": film.total_area_mm2, "n_deposits": len(film.deposits)}
                   for i, (w, film) in enumerate(zip(written, series.visits))],
        "changes": [{"baseline_visit": c.baseline_visit + 1, "followup_visit": c.followup_visit + 1,
                     "declared": c.declared, "category": c.category,
                     "baseline_area_mm2": c.baseline_area_mm2,
                     "followup_area_mm2": c.followup_area_mm2, "change_pct": c.change_pct}
                    for c in series.changes],
        "spec": _jsonable(dataclasses.asdict(series.spec)),
        "definitions": {"change_category": DEFINITIONS["change_category"]},
    }
    _write_json(folder / f"{name}.series.json", info)
    return written


def read_truth(path: str | os.PathLike) -> FilmTruth:
    """Read a film's truth, given its ``.truth.json``, its ``.dcm`` or its base path.

    Returns
    -------
    FilmTruth
    """
    path = Path(path)
    text = str(path)
    for suffix in (".truth.json", ".dcm", ".anatomy.truth.png", ".truth.png", ".truth.csv"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    json_path = Path(text + ".truth.json")
    info = json.loads(json_path.read_text())
    if info.get("format") != TRUTH_FORMAT:
        raise ValueError(f"{json_path}: not a {TRUTH_FORMAT} file")
    folder = json_path.parent
    with Image.open(folder / info["labels"]) as image:
        labels = np.asarray(image).astype(np.int32)
    with Image.open(folder / info["anatomy_mask"]) as image:
        anatomy = np.asarray(image).astype(np.uint8)
    with open(folder / info["deposits"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    types = {f.name: f.type for f in dataclasses.fields(DepositTruth)}
    deposits = tuple(DepositTruth(**{k: _parse(v, types[k]) for k, v in row.items()})
                     for row in rows)
    return FilmTruth(labels, anatomy, deposits, info)


def anatomy_codes(film: PhantomFilm) -> np.ndarray:
    """The 8-bit anatomy map of a film (see `ANATOMY_CODES`)."""
    codes = np.zeros(film.truth_labels.shape, dtype=np.uint8)
    codes[film.body_mask] = ANATOMY_CODES["soft_tissue"]
    codes[film.bone_mask] = ANATOMY_CODES["bone"]
    codes[film.object_mask] = ANATOMY_CODES["lead_or_metal"]
    codes[~film.field_mask] = ANATOMY_CODES["unexposed"]
    return codes


# --- helpers -------------------------------------------------------------------------------

def _write_png(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=True)
    with atomic_output(path) as tmp:
        Path(tmp).write_bytes(buffer.getvalue())


def _write_json(path: Path, info: dict) -> None:
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(info, indent=2, allow_nan=False) + "\n")


def _format(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def _write_table(path: Path, deposits) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FIELDS)
    for d in deposits:
        writer.writerow([_format(getattr(d, f)) for f in FIELDS])
    with atomic_output(path) as tmp:
        Path(tmp).write_text(buffer.getvalue())


def _parse(value: str, kind):
    kind = str(kind)
    if kind == "bool":
        return value == "true"
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    return value


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value
