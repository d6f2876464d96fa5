"""The inputs of a run: files below the given paths, their image ids, and what to skip.

Films are recognised by content, not by extension: DICOM by its DICM prefix or a readable
header with image attributes, PNG/TIFF/JPEG by their signatures (`imaging.io.sniff`).
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pydicom

from imaging.io import sniff

#: Extensions dropped from file names to make image ids (other suffixes, e.g. of UID-named
#: DICOM files, are kept).
_FILM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima", ".png", ".tif", ".tiff", ".jpg",
                            ".jpeg"})
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})
#: A file without the DICM prefix is a DICOM candidate when its dataset holds one of these.
_DICOM_IMAGE_KEYWORDS = ("SOPClassUID", "Rows", "Columns", "Modality")
_MAX_ID_LENGTH = 100


@dataclass(frozen=True)
class InputFile:
    """One input file of a run.

    Attributes
    ----------
    path : Path
        The file as found.
    image_id : str
        Its stable identifier in the outputs.
    skip_reason : str or None
        Why it is not a film to analyse (None for a candidate film).
    """

    path: Path
    image_id: str
    skip_reason: str | None = None


def iter_input_files(paths) -> list[Path]:
    """Return every file named or found (recursively) below the given paths, sorted.

    Hidden files and folders (names starting with a dot) are skipped. A path that does not
    exist is returned as is, so the caller reports it like any other unreadable input.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(Path(root) / name for name in sorted(files)
                             if not name.startswith("."))
        else:
            found.append(path)
    return found


def plan_inputs(paths) -> list[InputFile]:
    """List the input files below `paths` in a stable order, with ids and skip reasons.

    A file named twice is listed once. Files are ordered by path, whatever the order of
    `paths`, so the outputs do not depend on how the command was typed.
    """
    unique = {os.path.abspath(path): path for path in iter_input_files(paths)}
    files = [unique[key] for key in sorted(unique, key=lambda key: Path(key).parts)]
    return [InputFile(path, image_id, skip_reason(path))
            for path, image_id in zip(files, image_ids(files))]


def image_ids(paths) -> list[str]:
    """Stable, unique ids from the paths relative to their common folder.

    Folder names and the file name (without a film extension) are joined by ``__`` and
    characters outside ``[A-Za-z0-9._-]`` become ``_``. Ids that would collide (ignoring case,
    as some file systems do) get a short hash of their relative path. Never built from DICOM
    tags.

    Examples
    --------
    >>> image_ids(["/data/visit1/hand.dcm", "/data/visit2/hand.dcm"])
    ['visit1__hand', 'visit2__hand']
    >>> image_ids(["/data/a b.dcm", "/data/a_b.png"])
    ['a_b-9d471a26', 'a_b-d3cddaad']
    """
    absolute = [Path(os.path.abspath(path)) for path in paths]
    if not absolute:
        return []
    root = os.path.commonpath([path.parent for path in absolute])
    relative = [path.relative_to(root) for path in absolute]
    ids = [_sanitised(path) for path in relative]
    counts = Counter(image_id.lower() for image_id in ids)
    return [f"{image_id}-{_short_hash(path)}" if counts[image_id.lower()] > 1 else image_id
            for image_id, path in zip(ids, relative)]


def _sanitised(relative: Path) -> str:
    name = relative.stem if relative.suffix.lower() in _FILM_SUFFIXES else relative.name
    text = "__".join((*relative.parent.parts, name))
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip(".-") or "image"
    if len(text) > _MAX_ID_LENGTH:
        text = f"{text[:_MAX_ID_LENGTH - 9]}-{_short_hash(relative)}"
    return text


def _short_hash(relative: Path) -> str:
    return hashlib.sha1(relative.as_posix().encode("utf-8", "surrogateescape")).hexdigest()[:8]


def skip_reason(path: str | os.PathLike) -> str | None:
    """Return why a file is not a film to analyse, or None for a candidate film.

    Candidates, by content: DICOM (DICM prefix, or a dataset without preamble that holds image
    attributes) and PNG/TIFF/JPEG. Files named ``.dcm``/``.dicom`` are candidates whatever they
    hold, so a broken one is reported as an error. Phantom ground-truth images
    (``<name>.truth.png``) are skipped. A file that cannot be opened is a candidate: the
    reader reports why.
    """
    path = Path(path)
    if path.name.lower().endswith(".truth.png"):
        return "phantom ground-truth label image, not a film"
    try:
        kind = sniff(path)
    except OSError:
        return None
    if kind in ("dicom", "image") or path.suffix.lower() in _DICOM_SUFFIXES:
        return None
    if kind == "empty":
        return "empty file"
    if _is_raw_dicom_image(path):
        return None
    return "neither DICOM nor a PNG/TIFF/JPEG image"


def _is_raw_dicom_image(path: Path) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(path, force=True, stop_before_pixels=True, defer_size=1024)
            return any(keyword in dataset for keyword in _DICOM_IMAGE_KEYWORDS)
    except Exception:  # anything unparsable is simply not DICOM
        return False
