"""Reading projection radiographs from DICOM, and writing them.

The reader is the one place that knows about DICOM: it decodes every transfer syntax that
pydicom and the pylibjpeg plugins support, applies the Modality LUT, turns MONOCHROME1 and
Presentation LUT Shape INVERSE into one attenuation-positive orientation, resolves the pixel
spacing and keeps pseudonymous metadata. Whatever a file holds, the reader returns a
`Radiograph` or raises a `CalcitrackError`.
"""

from __future__ import annotations

import datetime
import os
import re
import struct
import warnings

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    PYDICOM_ROOT_UID,
    RLELossless,
    generate_uid,
)

from .errors import CalcitrackError, NotARadiograph, UnreadableInput, UnsupportedEncoding
from .files import atomic_output
from .pseudonym import patient_key
from .radiograph import Radiograph, RadiographMetadata, resolve_spacing

#: Refuse films larger than this before allocating their pixels.
MAX_MEGAPIXELS = 400.0
#: Smaller images are icons or test objects, not radiographs.
MIN_SIDE_PIXELS = 16
_CROSS_SECTIONAL_MODALITIES = frozenset({"CT", "MR", "PT", "NM", "US", "RTIMAGE", "OCT", "OP"})
#: Words of a film's descriptions that name its body part when Body Part Examined is empty (a
#: panoramic dental film may say only "TEETH"), as the Body Part Examined term they stand for.
DESCRIBED_BODY_PARTS = {
    "HAND": "HAND", "FINGER": "FINGER", "FINGERS": "FINGER", "WRIST": "WRIST",
    "FOREARM": "FOREARM", "ELBOW": "ELBOW", "HIP": "HIP", "PELVIS": "PELVIS", "KNEE": "KNEE",
    "LEG": "LEG", "TIBIA": "TIBIA", "FEMUR": "FEMUR", "ANKLE": "ANKLE", "FOOT": "FOOT",
    "SHOULDER": "SHOULDER", "CHEST": "CHEST", "JAW": "JAW", "MANDIBLE": "JAW", "TEETH": "JAW",
    "TOOTH": "JAW", "DENTAL": "JAW", "PANORAMIC": "JAW", "OPG": "JAW",
}
#: Modalities that are dental films whatever their descriptions say: intra-oral, panoramic.
DENTAL_MODALITIES = frozenset({"IO", "PX"})

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_IMAGE_STORAGE_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"

_IDENTIFYING_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "Modality", "StudyInstanceUID",
                         "Rows", "Columns", "PixelData")
_CONVERT_REMEDY = ("convert it to an uncompressed single-frame greyscale DICOM "
                   "(e.g. `gdcmconv --raw in.dcm out.dcm`) and try again")


def read_dicom(
    path: str | os.PathLike,
    *,
    user_spacing=None,
    pseudonym_key: str | None = None,
    max_megapixels: float = MAX_MEGAPIXELS,
) -> Radiograph:
    """Read a single-frame greyscale DICOM radiograph.

    Parameters
    ----------
    path : str or os.PathLike
        The DICOM file (with or without preamble and file meta).
    user_spacing : float or (float, float), optional
        Spacing in mm given by the user; overrides the file's calibration.
    pseudonym_key : str, optional
        Secret for the pseudonymous patient key (see `imaging.pseudonym.patient_key`).
    max_megapixels : float
        Films declaring more pixels than this are refused before decoding.

    Returns
    -------
    Radiograph

    Raises
    ------
    UnreadableInput, NotARadiograph, UnsupportedEncoding
        With a one-line message naming the file, the problem and the remedy.
    """
    path = os.fspath(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = _read_dataset(path)
            _check_is_radiograph(ds, path, max_megapixels)
            pixels = _decode(ds, path)
            # Checked after decoding so that hostile pixel data is always exercised.
            modality = (_text(ds, "Modality") or "").upper()
            if modality in _CROSS_SECTIONAL_MODALITIES:
                raise NotARadiograph(path, f"is a {modality} image, not a projection "
                                     "radiograph", "give CR, DX or other plain-film radiographs")
            return _to_radiograph(ds, pixels, path, user_spacing, pseudonym_key)
    except CalcitrackError:
        raise
    except RecursionError:
        raise UnreadableInput(path, "DICOM structure nested too deeply to parse",
                              "the file is corrupt or hostile; re-export it from the "
                              "source") from None
    except MemoryError:
        raise UnreadableInput(path, "not enough memory to read the file",
                              "the header probably declares absurd sizes; re-export it") from None
    except Exception as exc:  # the reader's contract: nothing but our errors escape
        raise UnreadableInput(path, f"cannot be read as a DICOM image ({_short(exc)})",
                              "check that the file is a complete DICOM radiograph") from None


def _read_dataset(path: str) -> Dataset:
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise UnreadableInput(path, f"cannot open the file ({exc.strerror or exc})",
                              "check the path and its permissions") from None
    if size == 0:
        raise UnreadableInput(path, "the file is empty", "re-copy or re-export the file")
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        # No preamble or file meta: raw dataset written without the Part 10 header.
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception as exc:
            raise UnreadableInput(path, f"not a DICOM file ({_short(exc)})",
                                  "give a DICOM, PNG or TIFF radiograph") from None
        if not any(keyword in ds for keyword in _IDENTIFYING_KEYWORDS):
            raise UnreadableInput(path, "not a DICOM file (no DICM prefix and no recognisable "
                                  "DICOM elements)", "give a DICOM, PNG or TIFF radiograph")
    except (EOFError, OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise UnreadableInput(path, f"DICOM header is corrupt or truncated ({_short(exc)})",
                              "re-copy or re-export the file from the archive") from None
    if len(ds) == 0:
        raise UnreadableInput(path, "no DICOM elements could be read (truncated or corrupt)",
                              "re-copy or re-export the file from the archive")
    _ensure_transfer_syntax(ds)
    return ds


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """Give a file without (0002,0010) the transfer syntax its dataset was read with."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if meta.get("TransferSyntaxUID"):
        return
    implicit, little = ds.original_encoding
    if implicit is None:
        implicit, little = True, True
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _check_is_radiograph(ds: Dataset, path: str, max_megapixels: float) -> None:
    if "PixelData" not in ds:
        kind = _sop_class_name(ds)
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise NotARadiograph(path, "has float pixel data, not a projection radiograph",
                                 "give a CR/DX radiograph")
        raise NotARadiograph(path, f"has no pixel data ({kind})",
                             "give an image object (CR, DX or secondary capture radiograph)")
    rows, cols = _int(ds, "Rows"), _int(ds, "Columns")
    if rows is None or cols is None:
        raise UnreadableInput(path, "has pixel data but no valid Rows/Columns",
                              "re-export the image from its source")
    if not rows or not cols or rows < 0 or cols < 0:
        raise UnreadableInput(path, f"declares an empty image (Rows={rows}, Columns={cols})",
                              "re-export the image from its source")
    if rows < MIN_SIDE_PIXELS or cols < MIN_SIDE_PIXELS:
        raise NotARadiograph(path, f"is {rows}x{cols} pixels, too small to be a radiograph",
                             f"give a film of at least {MIN_SIDE_PIXELS}x{MIN_SIDE_PIXELS} pixels")
    frames = _int(ds, "NumberOfFrames") or 1
    if (rows * cols * max(frames, 1)) / 1e6 > max_megapixels:
        raise UnreadableInput(
            path, f"declares {rows}x{cols}x{frames} pixels, over the {max_megapixels:g} "
            "megapixel limit", "if the film is really that large, raise max_megapixels")
    if frames != 1:
        raise NotARadiograph(path, f"is a multi-frame object ({frames} frames)",
                             "extract the radiograph frame into a single-frame file")
    samples = _int(ds, "SamplesPerPixel") or 1
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise NotARadiograph(
            path, f"is a colour image ({photometric or 'no photometric interpretation'}, "
            f"{samples} samples per pixel)", "give the greyscale radiograph, not a colour export")
    allocated, stored = _int(ds, "BitsAllocated"), _int(ds, "BitsStored")
    if allocated not in (8, 16, 32) or not stored or not 1 <= stored <= allocated:
        raise UnreadableInput(
            path, f"has inconsistent bit depths (BitsAllocated={allocated}, BitsStored={stored})",
            "re-export the image from its source")
    if _int(ds, "PixelRepresentation") not in (0, 1, None):
        raise UnreadableInput(path, "has an invalid Pixel Representation",
                              "re-export the image from its source")


def _decode(ds: Dataset, path: str) -> np.ndarray:
    syntax = ds.file_meta.TransferSyntaxUID
    if not ds.PixelData:
        raise UnreadableInput(path, "pixel data is empty",
                              "re-copy the file; it was cut short in transfer or storage")
    if not syntax.is_compressed:
        expected = ds.Rows * ds.Columns * (ds.BitsAllocated // 8)
        actual = len(ds.PixelData)
        if actual < expected:
            raise UnreadableInput(
                path, f"pixel data is truncated ({actual} of {expected} bytes)",
                "re-copy the file; it was cut short in transfer or storage")
    try:
        pixels = ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        message = _short(exc)
        if "no" in message.lower() and ("plugin" in message.lower() or "decoder" in message.lower()
                                        or "available" in message.lower()):
            raise UnsupportedEncoding(
                path, f"no installed decoder for transfer syntax {syntax.name}",
                _CONVERT_REMEDY) from None
        raise UnsupportedEncoding(path, f"cannot decode {syntax.name} pixel data ({message})",
                                  _CONVERT_REMEDY) from None
    except Exception as exc:
        raise UnreadableInput(path, f"{syntax.name} pixel data is corrupt ({_short(exc)})",
                              "re-copy or re-export the file; the pixel data is damaged") from None
    if pixels.shape != (ds.Rows, ds.Columns):
        raise UnreadableInput(
            path, f"decoded to shape {pixels.shape}, not the declared {ds.Rows}x{ds.Columns}",
            "re-export the image from its source")
    return pixels


def _to_radiograph(ds: Dataset, stored: np.ndarray, path: str, user_spacing, key) -> Radiograph:
    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    if not np.all(np.isfinite(values)):
        raise UnreadableInput(path, "Modality LUT gives non-finite values",
                              "fix Rescale Slope/Intercept in the header")
    bits, signed = ds.BitsStored, ds.PixelRepresentation == 1
    extremes = (np.array([-(1 << (bits - 1)), (1 << (bits - 1)) - 1]) if signed
                else np.array([0, (1 << bits) - 1]))
    lut_extremes = np.asarray(apply_modality_lut(extremes.astype(stored.dtype), ds), float)
    lo, hi = float(lut_extremes.min()), float(lut_extremes.max())

    photometric = str(ds.PhotometricInterpretation).strip().upper()
    inverse_plut = str(ds.get("PresentationLUTShape", "") or "").strip().upper() == "INVERSE"
    # The DX module mandates Presentation LUT Shape INVERSE *with* MONOCHROME1: both describe
    # the same single inversion (real DX films store bone low and air high), so INVERSE adds
    # an inversion only to MONOCHROME2.
    invert = photometric == "MONOCHROME1" or inverse_plut
    handling = photometric + (" + INVERSE" if inverse_plut else "")
    handling += " inverted" if invert else " as stored"
    if invert:
        values = np.float32(lo + hi) - values

    window = _display_window(ds)
    if window is not None and invert:
        window = (lo + hi - window[0], window[1])

    spacing, source, notes = resolve_spacing(
        _floats(ds, "PixelSpacing"), _floats(ds, "ImagerPixelSpacing"),
        _float(ds, "EstimatedRadiographicMagnificationFactor"), user_spacing)
    body_part, body_part_note = _body_part(ds)
    notes += (body_part_note,) if body_part_note else ()
    metadata = RadiographMetadata(
        patient_key=patient_key(_text(ds, "PatientID"), _text(ds, "IssuerOfPatientID"), key),
        study_date=_date(ds),
        study_time=_text(ds, "StudyTime"),
        laterality=_laterality(ds),
        body_part=body_part,
        view_position=_text(ds, "ViewPosition"),
        modality=_text(ds, "Modality"),
        sop_instance_uid=_uid(ds, "SOPInstanceUID"),
        study_instance_uid=_uid(ds, "StudyInstanceUID"),
        series_instance_uid=_uid(ds, "SeriesInstanceUID"),
    )
    return Radiograph(values, spacing, source, path, metadata, handling, window, notes)


def write_dicom(
    path: str | os.PathLike,
    stored: np.ndarray,
    *,
    spacing_mm: tuple[float, float] | None,
    spacing_attribute: str = "PixelSpacing",
    magnification: float | None = None,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    modality: str = "DX",
    patient_id: str = "PHANTOM",
    patient_name: str = "Phantom^Patient",
    study_date: str = "20260101",
    study_instance_uid: str | None = None,
    body_part: str = "HAND",
    laterality: str | None = None,
    view_position: str = "PA",
    window: tuple[float, float] | None = None,
    uid_prefix: str | None = None,
    series_description: str = "calcitrack phantom",
    transfer_syntax: str = ExplicitVRLittleEndian,
    uid_seed: str | None = None,
) -> None:
    """Write a greyscale single-frame CR or DX file (Explicit VR Little Endian), atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; written to a temporary name and renamed, so never left half-written.
    stored : ndarray of uint16, shape (rows, cols)
        Stored pixel values in the orientation `photometric` says (for MONOCHROME1, brighter
        tissue has *lower* values).
    spacing_mm : (float, float) or None
        Pixel spacing; None writes no spacing attribute at all.
    spacing_attribute : {"PixelSpacing", "ImagerPixelSpacing"}
        Which attribute carries `spacing_mm`.
    magnification : float, optional
        Estimated Radiographic Magnification Factor to write beside Imager Pixel Spacing.
    photometric : {"MONOCHROME2", "MONOCHROME1"}
    bits_stored : int
        12 to 16.
    modality : {"DX", "CR"}
    transfer_syntax : str
        Transfer syntax UID; a lossless compressed one (RLE Lossless, JPEG 2000 Lossless)
        keeps shipped files small.
    uid_seed : str, optional
        Derive the UIDs from this text instead of drawing them at random, so that writing the
        same film again gives the same bytes.
    """
    stored = np.asarray(stored)
    if stored.ndim != 2 or stored.dtype != np.uint16:
        raise ValueError("stored must be a 2-D uint16 array")
    if not 8 <= bits_stored <= 16 or int(stored.max(initial=0)) >= (1 << bits_stored):
        raise ValueError(f"values do not fit in {bits_stored} bits")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric}")
    if spacing_attribute not in ("PixelSpacing", "ImagerPixelSpacing"):
        raise ValueError(f"unknown spacing attribute {spacing_attribute}")
    sop_class = {"CR": CR_IMAGE_STORAGE, "DX": DX_IMAGE_STORAGE_FOR_PRESENTATION}[modality]
    def uid(role: str) -> str:
        if uid_seed is None:
            return generate_uid(prefix=uid_prefix)
        return generate_uid(prefix=uid_prefix or PYDICOM_ROOT_UID, entropy_srcs=[uid_seed, role])

    sop_instance = uid("sop")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.StudyInstanceUID = study_instance_uid or uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.Modality = modality
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SeriesDescription = series_description
    ds.BodyPartExamined = body_part
    ds.ViewPosition = view_position
    ds.PatientOrientation = ""
    if laterality:
        ds.ImageLaterality = laterality
        ds.Laterality = laterality
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImageType = ["DERIVED", "PRIMARY"]
        ds.BurnedInAnnotation = "NO"
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    else:
        ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.Manufacturer = "calcitrack"
    ds.ConversionType = "SYN"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    if modality == "DX":
        # The DX module pairs INVERSE with MONOCHROME1 (one inversion, as the reader reads it).
        ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    if spacing_mm is not None:
        setattr(ds, spacing_attribute, [f"{s:.6g}" for s in spacing_mm])
        if magnification is not None:
            ds.EstimatedRadiographicMagnificationFactor = f"{magnification:.6g}"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = f"{window[0]:.6g}", f"{window[1]:.6g}"
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    if transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax, encoding_plugin="pylibjpeg" if transfer_syntax == RLELossless
                    else "", generate_instance_uid=False)
    with atomic_output(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


# --- small tolerant accessors: fuzzed headers hold anything in any attribute -------------

def _value(ds: Dataset, keyword: str):
    try:
        return ds.get(keyword)
    except Exception:
        return None


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = _value(ds, keyword)
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def _float(ds: Dataset, keyword: str) -> float | None:
    try:
        value = _value(ds, keyword)
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _floats(ds: Dataset, keyword: str) -> list[float] | None:
    value = _value(ds, keyword)
    if value is None or value == "":
        return None
    try:
        return [float(v) for v in (value if isinstance(value, (list, tuple)) or
                                   hasattr(value, "__iter__") and not isinstance(value, str)
                                   else [value])]
    except (TypeError, ValueError):
        return [float("nan")]


_UNSAFE = re.compile(r"[^\w .:+\-^/]")


def _text(ds: Dataset, keyword: str, limit: int = 64) -> str | None:
    value = _value(ds, keyword)
    if value is None:
        return None
    try:
        text = str(value)
    except Exception:
        return None
    text = _UNSAFE.sub("", text).strip()[:limit]
    return text or None


def _uid(ds: Dataset, keyword: str) -> str | None:
    text = _text(ds, keyword)
    return text if text and re.fullmatch(r"[0-9.]{1,64}", text) else None


def _date(ds: Dataset) -> str | None:
    for keyword in ("StudyDate", "AcquisitionDate", "ContentDate", "SeriesDate"):
        text = _text(ds, keyword)
        if text:
            try:
                return datetime.datetime.strptime(text[:8], "%Y%m%d").date().isoformat()
            except ValueError:
                continue
    return None


def _body_part(ds: Dataset) -> tuple[str | None, str | None]:
    """Body Part Examined, or when it is empty the body part that a dental modality names, or
    failing that the first description that names exactly one (`DESCRIBED_BODY_PARTS`); with
    a note saying where it came from."""
    stated = _text(ds, "BodyPartExamined")
    if stated:
        return stated, None
    modality = (_text(ds, "Modality") or "").upper()
    if modality in DENTAL_MODALITIES:
        return "JAW", f"body part JAW from Modality {modality} (Body Part Examined is empty)"
    for keyword in ("StudyDescription", "SeriesDescription", "ProtocolName"):
        text = _text(ds, keyword) or ""
        named = {DESCRIBED_BODY_PARTS[word] for word in re.findall(r"[A-Z]+", text.upper())
                 if word in DESCRIBED_BODY_PARTS}
        if len(named) == 1:
            part = named.pop()
            return part, (f"body part {part} from {keyword} {text!r} "
                          "(Body Part Examined is empty)")
    return None, None


def _laterality(ds: Dataset) -> str | None:
    for keyword in ("ImageLaterality", "Laterality"):
        text = (_text(ds, keyword) or "").upper()
        if text in ("L", "R", "B", "U"):
            return text
    return None


def _display_window(ds: Dataset) -> tuple[float, float] | None:
    centers, widths = _floats(ds, "WindowCenter"), _floats(ds, "WindowWidth")
    if not centers or not widths:
        return None
    center, width = centers[0], widths[0]
    if not (np.isfinite(center) and np.isfinite(width) and 0 < width < 1e9 and abs(center) < 1e9):
        return None
    return float(center), float(width)


def _sop_class_name(ds: Dataset) -> str:
    uid = _value(ds, "SOPClassUID")
    if not uid:
        return "no SOP Class UID"
    try:
        name = getattr(uid, "name", None) or str(uid)
    except Exception:
        name = None
    return name or "unknown SOP class"


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
