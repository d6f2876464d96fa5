"""One film's analysis: read it, find its deposits, build every row and image to write.

`analyze_film` is pure (it writes nothing), so it runs anywhere: in the writer process, in a
local worker or on a Dask cluster (`pipelines.batch`). One bad film gives an error row,
never an exception.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from imaging import CalcitrackError, read_radiograph
from imaging.config import AnalysisConfig
from imaging.deposits import find_deposits
from imaging.export import (Provenance, Status, deposit_rows, image_row, label_image,
                            qc_overlay)


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
    """

    image: dict
    deposits: tuple[dict, ...] = ()
    labels: np.ndarray | None = None
    overlay: np.ndarray | None = None
    study_instance_uid: str | None = None

    @property
    def status(self) -> Status:
        return self.image["status"]


def analyze_film(path: str | os.PathLike, image_id: str, config: AnalysisConfig, *,
                 user_spacing=None, pseudonym_key: str | None = None,
                 qc: bool = True) -> FilmResult:
    """Read one film, find its deposits and build everything to write (writes nothing).

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
    """
    source = os.fspath(path)
    provenance = Provenance.of(config)
    radiograph = None
    try:
        radiograph = read_radiograph(path, user_spacing=user_spacing, pseudonym_key=pseudonym_key,
                                     max_megapixels=config.max_megapixels)
        findings = find_deposits(radiograph, config)
        labels = label_image(findings.labels)
        overlay = qc_overlay(radiograph, findings, image_id) if qc else None
    except CalcitrackError as exc:
        error = str(exc)
    except MemoryError:
        error = (f"{source}: not enough memory to analyse this film — raise the worker memory "
                 "limit (--memory-limit-mb) or run fewer --jobs")
    except Exception as exc:  # one film's unexpected failure must not stop the run
        error = (f"{source}: unexpected {type(exc).__name__} ({str(exc)[:200]}) — please "
                 "report it with this file to the calcitrack developers")
    else:
        row = image_row(image_id, source, provenance, radiograph=radiograph, findings=findings,
                        mask_path=f"masks/{image_id}.png",
                        qc_path=f"qc/{image_id}.png" if qc else None)
        return FilmResult(row, tuple(deposit_rows(image_id, radiograph, findings, provenance)),
                          labels, overlay, radiograph.metadata.study_instance_uid)
    return FilmResult(image_row(image_id, source, provenance, status=Status.ERROR,
                                radiograph=radiograph, error=error),
                      study_instance_uid=None if radiograph is None
                      else radiograph.metadata.study_instance_uid)
