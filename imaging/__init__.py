"""calcitrack's image-analysis library: radiographs in, calcified deposits and burden out."""

from .errors import (
    CalcitrackError,
    CalibrationError,
    ConfigError,
    NotARadiograph,
    UnreadableInput,
    UnsupportedEncoding,
)
from .io import read_radiograph
from .radiograph import Radiograph, RadiographMetadata, SpacingSource

__version__ = "0.1.0"

__all__ = [
    "CalcitrackError", "CalibrationError", "ConfigError", "NotARadiograph", "Radiograph",
    "RadiographMetadata", "SpacingSource", "UnreadableInput", "UnsupportedEncoding",
    "__version__", "read_radiograph",
]
