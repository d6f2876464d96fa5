"""The exceptions calcitrack raises for bad input.

Every message is one line that names the file, the problem and the remedy, so a batch can
record it in an error row and a user can act on it without a traceback.
"""

from __future__ import annotations

import os


class CalcitrackError(Exception):
    """Base class of every error calcitrack raises on purpose.

    Parameters
    ----------
    path : str or os.PathLike or None
        The file the problem is about (``None`` when it is not about a file).
    problem : str
        What is wrong, in a few words.
    remedy : str
        What the user can do about it.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str, remedy: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = " ".join(str(problem).split())
        self.remedy = " ".join(str(remedy).split())
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{self.problem} — {self.remedy}")


class UnreadableInput(CalcitrackError):
    """The file cannot be parsed: not DICOM or an image, truncated, or corrupt."""


class NotARadiograph(CalcitrackError):
    """The file is valid but is not a single-frame greyscale projection radiograph."""


class UnsupportedEncoding(CalcitrackError):
    """The pixel data uses an encoding no installed decoder handles, or is undecodable."""


class CalibrationError(CalcitrackError):
    """A measurement in physical units was asked for without a trustworthy pixel spacing."""


class ConfigError(CalcitrackError):
    """A configuration file or option is invalid."""
