"""DICOM outputs of an analysis: a Segmentation of the deposits and a TID 1500 SR report.

Pure functions returning pydicom Datasets (highdicom objects); the caller writes them. The
source must be the film's own DICOM dataset (``pydicom.dcmread(path)``): films read from
PNG/TIFF have no DICOM identity to reference and raise `NotADicomSource`.

- `deposit_segmentation`: a binary SEG on the source grid, referencing the source image; one
  segment "Calcinosis" (SNOMED CT 82650004 Calcinosis, category 49755003 Morphologically
  abnormal structure), or one per region with deposits (``per_region=True``).
- `measurement_report`: a Comprehensive SR (TID 1500 Measurement Report) with one
  measurement group per region row and one for the film (``all``): deposit count, total
  area, density-weighted score and integrated density, referencing the source image and
  the SEG. Uncalibrated films are reported in pixels: the areas and scores carry the UCUM
  unit ``{pixels}`` and the group's tracking identifier says "areas in pixels" — never mm²
  on a guessed spacing.

Their UIDs are derived (`derived_uid`) from the source film's SOP Instance UID, the calcitrack
version, the caller's `run_key` (the configuration hash) and the content itself: analysing a
film again gives the same SEG and SR instances, which an archive then stores once, and any
change to the result gives new ones.
"""

from __future__ import annotations

import hashlib
import json
import uuid

import highdicom as hd
import numpy as np
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from . import __version__
from .errors import CalcitrackError

MANUFACTURER = "calcitrack"
#: Namespace of the name-based UUIDs behind calcitrack's derived UIDs.
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:calcitrack:dicom-results")
CALCINOSIS = CodedConcept("82650004", "SCT", "Calcinosis")
ABNORMAL_STRUCTURE = CodedConcept("49755003", "SCT", "Morphologically abnormal structure")
#: Private codes (99 prefix: a local coding scheme) for the scores that have no standard code.
_SCHEME = "99CALCITRACK"
DEPOSIT_COUNT = CodedConcept("deposit-count", _SCHEME, "Number of calcified deposits")
DENSITY_SCORE = CodedConcept("density-score", _SCHEME, "Density-weighted calcinosis score")
INTEGRATED_DENSITY = CodedConcept("integrated-density", _SCHEME, "Integrated relative density")
PIXELS = CodedConcept("{pixels}", "UCUM", "pixels")
COUNT = CodedConcept("{count}", "UCUM", "count")
BODY_PART_CODES = {
    "HAND": CodedConcept("85562004", "SCT", "Hand"),
    "FOREARM": CodedConcept("14975008", "SCT", "Forearm"),
    "LEG": CodedConcept("30021000", "SCT", "Lower leg"),
}


class NotADicomSource(CalcitrackError):
    """DICOM SEG/SR need the source film's DICOM dataset."""


def _check_source(source, labels: np.ndarray | None = None) -> Dataset:
    if not isinstance(source, Dataset) or "SOPInstanceUID" not in source:
        raise NotADicomSource(None, "DICOM SEG and SR need the source film's DICOM dataset",
                              "pass pydicom.dcmread of a DICOM film; films read from PNG/TIFF "
                              "get no SEG or SR")
    if labels is not None and labels.shape != (int(source.Rows), int(source.Columns)):
        raise ValueError(f"the deposit labels ({labels.shape[0]} x {labels.shape[1]}) do not match "
                         f"the source film ({source.Rows} x {source.Columns}); pass the source "
                         "grid labels (DepositFindings.labels)")
    return source


def derived_uid(source: Dataset, *parts) -> str:
    """A UID that the same source film, calcitrack version and `parts` always give.

    A name-based (SHA-1) UUID in the 2.25 form of DICOM PS3.5 B.2.

    Examples
    --------
    >>> film = Dataset(); film.SOPInstanceUID = "1.2.3"
    >>> derived_uid(film, "seg", "a") == derived_uid(film, "seg", "a") != derived_uid(film, "sr")
    True
    """
    name = "\\".join([str(source.SOPInstanceUID), __version__, *(str(part) for part in parts)])
    return _uid_from_name(name)


def _uid_from_name(name: str) -> str:
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"


def deposit_segmentation(source: Dataset, labels: np.ndarray, *, infos=None,
                         per_region: bool = False, series_number: int = 901,
                         instance_number: int = 1, run_key: str = "") -> hd.seg.Segmentation:
    """A binary DICOM SEG of the deposits on the source film.

    Parameters
    ----------
    source : pydicom.Dataset
        The film's DICOM dataset.
    labels : ndarray of int
        Deposit labels on the source grid (`DepositFindings.labels`).
    infos : sequence of DepositInfo, optional
        Needed with ``per_region=True`` (region of each deposit).
    per_region : bool
        One segment per region holding deposits, instead of a single "Calcinosis" segment.
    series_number, instance_number : int
    run_key : str
        Identifies the analysis (its configuration hash); with the source and the labels it
        derives the SEG's UIDs.

    Returns
    -------
    highdicom.seg.Segmentation
        A pydicom Dataset. A film without deposits gives a SEG with one empty segment.
    """
    _check_source(source, labels)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="calcitrack", version=__version__, family=codes.cid7162.ArtificialIntelligence)
    groups: list[tuple[str, np.ndarray]] = []
    if per_region:
        if infos is None:
            raise ValueError("per_region=True needs the deposits' infos (assign_deposits)")
        by_region: dict[str, list[int]] = {}
        for info in infos:
            by_region.setdefault(info.region, []).append(info.label)
        for region, members in by_region.items():
            groups.append((f"Calcinosis {region}", np.isin(labels, members)))
    if not groups:
        groups = [("Calcinosis", labels > 0)]
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=label,
            segmented_property_category=ABNORMAL_STRUCTURE,
            segmented_property_type=CALCINOSIS,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            anatomic_regions=_anatomy(source))
        for number, (label, _) in enumerate(groups, start=1)]
    pixels = np.stack([mask for _, mask in groups], axis=-1)[None].astype(np.uint8)
    content = hashlib.sha256(np.ascontiguousarray(pixels).tobytes())
    content.update(json.dumps([label for label, _ in groups]).encode())
    identity = (run_key, content.hexdigest(), series_number, instance_number)
    seg = hd.seg.Segmentation(
        source_images=[source], pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=derived_uid(source, "seg series", *identity),
        series_number=series_number, sop_instance_uid=derived_uid(source, "seg", *identity),
        instance_number=instance_number,
        manufacturer=MANUFACTURER, manufacturer_model_name="calcitrack",
        software_versions=__version__, device_serial_number="0",
        series_description="calcitrack deposits", omit_empty_frames=False)
    shared = seg.SharedFunctionalGroupsSequence[0]
    if ("PixelMeasuresSequence" in shared
            and "SliceThickness" not in shared.PixelMeasuresSequence[0]):
        # A projection film has a spacing but no slice thickness; highdicom copies the spacing
        # into an incomplete Pixel Measures item that its own reader then rejects. Without a
        # frame of reference the item is optional: drop it (spacing stays on the source film).
        del shared.PixelMeasuresSequence
    return seg


def _segment_number(segmentation: Dataset, region: str) -> int:
    for item in segmentation.SegmentSequence:
        if item.SegmentLabel == f"Calcinosis {region}":
            return int(item.SegmentNumber)
    return 1


def _anatomy(source: Dataset):
    code = BODY_PART_CODES.get(str(getattr(source, "BodyPartExamined", "")).upper())
    return [code] if code is not None else None


def measurement_report(source: Dataset, rows: list[dict], *, segmentation: Dataset | None = None,
                       series_number: int = 902, instance_number: int = 1, run_key: str = ""
                       ) -> hd.sr.Comprehensive3DSR:
    """A TID 1500 measurement report of the per-region burden.

    Parameters
    ----------
    source : pydicom.Dataset
        The film's DICOM dataset.
    rows : list of dict
        `imaging.burden.region_burden` rows (the last one is ``all``).
    segmentation : pydicom.Dataset, optional
        The SEG from `deposit_segmentation`: each group then references its region's
        segment (segment 1 when the SEG has a single one) instead of the source image.
    series_number, instance_number : int
    run_key : str
        Identifies the analysis (its configuration hash); with the source, the rows and the
        SEG it derives the report's UIDs.

    Returns
    -------
    highdicom.sr.Comprehensive3DSR
        Measurements in mm² when the rows carry mm² values (calibrated film), else in pixels.
    """
    _check_source(source)
    if not rows:
        raise ValueError("no burden rows to report")
    calibrated = rows[-1].get("area_mm2") is not None
    source_image = hd.sr.SourceImageForMeasurementGroup.from_source_image(source)
    area_unit = codes.UCUM.SquareMillimeter if calibrated else PIXELS
    suffix = "mm2" if calibrated else "px"
    identity = (run_key, json.dumps(rows, sort_keys=True, default=str),
                "" if segmentation is None else segmentation.SOPInstanceUID,
                series_number, instance_number)
    groups = []
    for index, row in enumerate(rows, start=1):
        measurements = [hd.sr.Measurement(name=DEPOSIT_COUNT, value=float(row["n_deposits"]),
                                          unit=COUNT),
                        hd.sr.Measurement(name=codes.SCT.Area, value=float(row[f"area_{suffix}"]),
                                          unit=area_unit)]
        for code, key in ((DENSITY_SCORE, "density_score"),
                          (INTEGRATED_DENSITY, "integrated_density")):
            value = row.get(f"{key}_{suffix}")
            if value is not None:
                measurements.append(hd.sr.Measurement(name=code, value=float(value),
                                                      unit=area_unit))
        label = f"region {row['region']}" + ("" if calibrated else " (areas in pixels)")
        tracking = hd.sr.TrackingIdentifier(uid=derived_uid(source, "group", index, *identity),
                                            identifier=label[:64])
        if segmentation is not None:
            # The deposits of this region are (part of) segment 1, or the region's segment.
            number = _segment_number(segmentation, row["region"])
            groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking, finding_type=CALCINOSIS, measurements=measurements,
                referenced_segment=hd.sr.ReferencedSegmentationFrame(
                    sop_class_uid=segmentation.SOPClassUID,
                    sop_instance_uid=segmentation.SOPInstanceUID,
                    # one frame per segment, in segment order (omit_empty_frames=False)
                    frame_number=number, segment_number=number,
                    source_image=hd.sr.SourceImageForSegmentation.from_source_image(source))))
        else:
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking, finding_type=CALCINOSIS, measurements=measurements,
                source_images=[source_image]))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=_uid_from_name("observer device"), name="calcitrack",
            manufacturer_name=MANUFACTURER))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=CodedConcept("363680008", "SCT", "Radiographic imaging procedure"),
        imaging_measurements=groups)
    evidence = [source] + ([segmentation] if segmentation is not None else [])
    return hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report,
        series_instance_uid=derived_uid(source, "sr series", *identity),
        series_number=series_number, sop_instance_uid=derived_uid(source, "sr", *identity),
        instance_number=instance_number,
        manufacturer=MANUFACTURER, is_complete=True, series_description="calcitrack burden")
