"""Synthetic radiographs of calcinosis with exact ground truth.

There is no public set of radiographs of calcinosis with ground truth, so calcitrack makes its
own: phantom films of a hand (PA), forearm or lower leg with bones (cortical shell, trabecular
texture, joint spaces), a soft-tissue envelope (skin, fat, muscle), acquisition physics in the
log domain (dose-dependent Poisson-Gaussian noise, detector blur, anode heel, collimation,
lead markers, optional metal) and calcified deposits of seven morphologies (stone, mousse,
plate, net, periarticular, acral, universalis). Everything is deterministic from a seed.

Truth
-----
Each film comes with a label image on its own pixel grid and a table of deposits
(`DepositTruth`). The definitions (also written into every truth file):

- *contrast* of a deposit: noiseless film value with it minus without it, in film value
  units on the source grid (after blur and the log mapping);
- *truth mask*: pixels where a component's own contrast is >= 50 % of its peak (FWHM
  extent), united over the deposit's components (a net's specks), soft tissue only;
- *noise*: standard deviation of the film's pixel noise over soft tissue 1-4 mm around the
  deposit;
- **CNR** = mean contrast over the truth mask / noise. The generator chooses each deposit's
  mineral thickness so that the requested CNR is hit, and records the achieved one;
- ``area_mm2`` = ``area_px`` x pixel area, exactly.

Entry points
------------
`make_film` (one film from a `PhantomSpec`), `make_series` (serial visits from a
`SeriesSpec`), `insert_deposits` (deposits in a real film), `write_film` / `write_series` /
`read_truth` (DICOM and truth files).
"""

from .acquisition import Acquisition, Marker, MetalPart, Scene, render_scene
from .anatomy import AnatomyKind, build_anatomy
from .film import (CNR_BANDS, InsertionSpec, PhantomFilm, PhantomSpec, make_film, reexpose,
                   sample_cnr)
from .insertion import estimate_noise_sd, insert_deposits
from .morphology import MORPHOLOGIES, DepositShape
from .series import CHANGES, PhantomSeries, SeriesSpec, VisitChange, make_series
from .shapes import FilmGrid, Pose
from .storage import FilmFiles, FilmTruth, anatomy_codes, read_truth, write_film, write_series
from .truth import DepositTruth

__all__ = [
    "Acquisition", "AnatomyKind", "CHANGES", "CNR_BANDS", "DepositShape", "DepositTruth",
    "FilmFiles", "FilmGrid", "FilmTruth", "InsertionSpec", "MORPHOLOGIES", "Marker", "MetalPart",
    "PhantomFilm", "PhantomSeries", "PhantomSpec", "Pose", "Scene", "SeriesSpec", "VisitChange",
    "anatomy_codes", "build_anatomy", "estimate_noise_sd", "insert_deposits", "make_film",
    "make_series", "read_truth", "reexpose", "render_scene", "sample_cnr", "write_film",
    "write_series",
]
