"""One entry point for reading a radiograph from any supported file, recognised by content."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from .dicom import MAX_MEGAPIXELS, read_dicom
from .errors import NotARadiograph, UnreadableInput
from .radiograph import Radiograph, SpacingSource, resolve_spacing

_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"\xff\xd8\xff")


def sniff(path: str | os.PathLike) -> str:
    """What a file holds, by content only: ``"dicom"`` (DICM prefix), ``"image"``
    (PNG/TIFF/JPEG), ``"empty"``, or ``"unknown"`` (perhaps DICOM without file meta).

    A DICM prefix wins: DICOM preambles may hold a TIFF header (dual-personality files).
    """
    with open(path, "rb") as handle:
        head = handle.read(132)
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(_IMAGE_MAGIC):
        return "image"
    return "unknown" if head else "empty"


def read_radiograph(
    path: str | os.PathLike,
    *,
    user_spacing=None,
    pseudonym_key: str | None = None,
    max_megapixels: float = MAX_MEGAPIXELS,
) -> Radiograph:
    """Read a radiograph from a DICOM file or a plain PNG/TIFF/JPEG image.

    The file type is recognised by content, not by extension. Plain images carry no
    calibration: their spacing is `user_spacing` (source ``user``) or none.

    Parameters
    ----------
    path : str or os.PathLike
    user_spacing : float or (float, float), optional
        Spacing in mm; overrides a DICOM file's own calibration.
    pseudonym_key : str, optional
        Secret for pseudonymous patient keys.
    max_megapixels : float
        Larger films are refused before their pixels are allocated.

    Raises
    ------
    UnreadableInput, NotARadiograph, UnsupportedEncoding
    """
    path = os.fspath(path)
    try:
        kind = sniff(path)
    except OSError as exc:
        raise UnreadableInput(path, f"cannot open the file ({exc.strerror or exc})",
                              "check the path and its permissions") from None
    if kind == "image":
        return read_image_file(path, user_spacing=user_spacing, max_megapixels=max_megapixels)
    return read_dicom(path, user_spacing=user_spacing, pseudonym_key=pseudonym_key,
                      max_megapixels=max_megapixels)


def read_image_file(path: str | os.PathLike, *, user_spacing=None,
                    max_megapixels: float = MAX_MEGAPIXELS) -> Radiograph:
    """Read an 8- or 16-bit greyscale PNG, TIFF or JPEG as an attenuation-positive film.

    Plain image exports show bone bright, so values are taken as they are.
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            cols, rows = image.size
            if rows * cols / 1e6 > max_megapixels:
                raise UnreadableInput(path, f"is {rows}x{cols} pixels, over the "
                                      f"{max_megapixels:g} megapixel limit",
                                      "if the film is really that large, raise max_megapixels")
            if getattr(image, "n_frames", 1) > 1:
                raise NotARadiograph(path, f"has {image.n_frames} frames",
                                     "save the radiograph as a single-page image")
            mode = image.mode
            pixels = np.asarray(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UnreadableInput(path, f"image file is corrupt or truncated ({exc})",
                              "re-export the image") from None
    if pixels.ndim == 3:
        channels = pixels[..., :3].astype(np.int32)
        if not (np.array_equal(channels[..., 0], channels[..., 1])
                and np.array_equal(channels[..., 0], channels[..., 2])):
            raise NotARadiograph(path, f"is a colour image (mode {mode})",
                                 "export the radiograph as greyscale")
        pixels = pixels[..., 0]
    if pixels.ndim != 2 or pixels.dtype.kind not in "uif":
        raise NotARadiograph(path, f"is not a greyscale image (mode {mode})",
                             "export the radiograph as 8- or 16-bit greyscale")
    spacing, source, notes = resolve_spacing(user_spacing=user_spacing)
    if source is SpacingSource.NONE:
        notes += ("plain image without --spacing-mm: areas will be in pixels only",)
    return Radiograph(pixels.astype(np.float32), spacing, source, path,
                      photometric=f"{mode} image as stored", notes=notes)
