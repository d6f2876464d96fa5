"""One film's analysis: read it, find its deposits, build every row and image to write.

`analyze_film` is pure (it writes nothing), so it runs anywhere: in the writer process, in a
local worker or on a Dask cluster (`pipelines.batch`). One bad film gives an error row,
never an exception.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

import pydicom

from imaging import CalcitrackError, read_radiograph
from imaging.burden import assign_deposits, region_burden
from imaging.config import AnalysisConfig
from imaging.deposits import find_deposits
from imaging.dicom_results import deposit_segmentation, measurement_report
from imaging.export import (Provenance, Status, deposit_rows, image_row, label_image,
                            qc_overlay, region_rows)
from imaging.regions import UserRegions, region_map


@dataclass(frozen=True, eq=False)
class FilmResult:
    """Everything to write for one input.

    Attributes
    ----------
    image : dict
        Its ``images.csv`` row; ``mask_path`` and ``qc_path`` say where `labels` and `overlay`
        are to be written, relative to the output folder.
    deposits : tuple of dict
        Its ``deposits.csv`` rows.
    labels : ndarray of uint16 or None
        Deposit labels in the source pixel grid (None unless the film was analysed).
    overlay : ndarray of uint8 or None
        The QC overlay (BGR), when asked for.
    study_instance_uid : str or None
        The film's study, for the results store.
    regions : tuple of dict
        Its ``regions.csv`` rows (one per region, then ``all``).
    segmentation, report : pydicom.Dataset or None
        DICOM SEG of the deposits and SR of the burden, when asked for and the film is DICOM.
    """

    image: dict
    deposits: tuple[dict, ...] = ()
    labels: np.ndarray | None = None
    overlay: np.ndarray | None = None
    study_instance_uid: str | None = None
    regions: tuple[dict, ...] = ()
    segmentation: pydicom.Dataset | None = None
    report: pydicom.Dataset | None = None

    @property
    def status(self) -> Status:
        return self.image["status"]


def analyze_film(path: str | os.PathLike, image_id: str, config: AnalysisConfig, *,
                 user_spacing=None, pseudonym_key: str | None = None,
                 qc: bool = True, user_regions: UserRegions | None = None,
                 dicom_results: bool = False) -> FilmResult:
    """Read one film, find its deposits, measure the burden per region (writes nothing).

    Any failure becomes an error row: a `CalcitrackError` gives its one-line message with the
    remedy, any other exception its type and message.

    Parameters
    ----------
    path : str or os.PathLike
    image_id : str
    config : AnalysisConfig
    user_spacing : (float, float), optional
        Spacing in mm that overrides the file's calibration.
    pseudonym_key : str, optional
        Secret for patient keys (default: ``$CALCITRACK_PSEUDONYM_KEY``).
    qc : bool
        Draw the QC overlay.
    user_regions : UserRegions, optional
        The study's own scoring zones, instead of the automatic anatomical regions.
    dicom_results : bool
        Build a DICOM SEG and SR too (DICOM films only; others get a note why not).
    """
    source = os.fspath(path)
    provenance = Provenance.of(config)
    radiograph = None
    try:
        radiograph = read_radiograph(path, user_spacing=user_spacing, pseudonym_key=pseudonym_key,
                                     max_megapixels=config.max_megapixels)
        findings = find_deposits(radiograph, config)
        labels = label_image(findings.labels)
        regions = region_map(radiograph, findings, config.regions, user_regions)
        infos = assign_deposits(regions, findings, radiograph, config.burden,
                                periarticular_mm=config.regions.periarticular_mm)
        burden = region_burden(regions, findings, infos, calibrated=radiograph.is_calibrated,
                               config=config.burden)
        overlay = qc_overlay(radiograph, findings, image_id, regions) if qc else None
        segmentation = report = None
        notes = list(regions.notes)
        if dicom_results:
            if radiograph.metadata.sop_instance_uid is None:
                notes.append("no DICOM SEG/SR: the film is not a DICOM file")
            else:
                source_dataset = pydicom.dcmread(path, stop_before_pixels=True)
                segmentation = deposit_segmentation(source_dataset, labels,
                                                    run_key=provenance.config_hash)
                report = measurement_report(source_dataset, burden, segmentation=segmentation,
                                            run_key=provenance.config_hash)
    except CalcitrackError as exc:
        error = str(exc)
    except Exception as exc:  # one film's unexpected failure must not stop the run
        if _out_of_memory(exc):
            error = (f"{source}: not enough memory to analyse this film — raise the worker "
                     "memory limit (--memory-limit-mb) or run fewer --jobs")
        else:
            error = (f"{source}: unexpected {type(exc).__name__} ({str(exc)[:200]}) — please "
                     "report it with this file to the calcitrack developers")
    else:
        row = image_row(image_id, source, provenance, radiograph=radiograph, findings=findings,
                        mask_path=f"masks/{image_id}.png",
                        qc_path=f"qc/{image_id}.png" if qc else None,
                        seg_path=None if segmentation is None else f"dicom/{image_id}.seg.dcm",
                        sr_path=None if report is None else f"dicom/{image_id}.sr.dcm",
                        notes=tuple(notes), film_burden=burden[-1],
                        region_scheme=regions.kind)
        return FilmResult(
            row, tuple(deposit_rows(image_id, radiograph, findings, provenance, infos)), labels,
            overlay, radiograph.metadata.study_instance_uid,
            tuple(region_rows(image_id, radiograph, burden, provenance)), segmentation, report)
    return FilmResult(image_row(image_id, source, provenance, status=Status.ERROR,
                                radiograph=radiograph, error=error),
                      study_instance_uid=None if radiograph is None
                      else radiograph.metadata.study_instance_uid)


def _out_of_memory(exc: Exception) -> bool:
    """Whether an analysis failed for want of memory: numpy raises MemoryError, OpenCV its
    own error with the StsNoMem code (OpenCV 5 allocates first where numpy used to)."""
    return isinstance(exc, MemoryError) or (isinstance(exc, cv2.error)
                                            and exc.code == cv2.Error.StsNoMem)
