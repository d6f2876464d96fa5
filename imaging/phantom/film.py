"""Single phantom films: the spec, the film with its truth, and `make_film`."""

from __future__ import annotations

import dataclasses
import datetime
import math
from dataclasses import dataclass, field

import numpy as np

from ..pseudonym import patient_key
from ..radiograph import Radiograph, RadiographMetadata, SpacingSource
from .acquisition import Acquisition, Marker, Scene, make_hardware, render_scene
from .anatomy import DEFAULT_SPACING_MM, FIELD_MM, AnatomyKind, build_anatomy
from .morphology import MORPHOLOGIES, DepositShape
from .placement import Canvas, place_deposits
from .shapes import FilmGrid, Pose
from .truth import DepositTruth, FilmRender, render_film, solve_scale

#: CNR bands of the accuracy report; requested CNRs are drawn evenly across them.
CNR_BANDS = ((2.0, 3.0), (3.0, 5.0), (5.0, 8.0), (8.0, 15.0), (15.0, math.inf))


@dataclass(frozen=True)
class PhantomSpec:
    """Everything that defines one phantom film (deterministic from `seed`).

    Attributes
    ----------
    anatomy : str
        ``"hand"`` (PA), ``"forearm"`` or ``"lower_leg"`` (AP).
    seed : int
        Seeds the deposits, the positioning, the exposure and the noise.
    spacing_mm : float or None
        Isotropic pixel spacing (None: 0.15 mm, or 0.2 mm for a lower leg).
    dose : float
        Relative exposure; noise variance in the log domain scales as 1 / dose.
    n_deposits : int or None
        Number of deposits; 0 makes a negative film; None draws 1 to 12.
    morphologies : tuple of str
        Morphologies to draw from (acral deposits only occur on a hand).
    cnr_range : (float, float)
        Range of requested contrast-to-noise ratios (drawn evenly over the CNR bands).
    size_range_mm : (float, float)
        Range of deposit sizes (largest dimension).
    laterality : {"R", "L"}
    marker : bool
        Put a lead letter in a ring on the film.
    metal : {None, "wire", "screw"}
    collimation : bool
        Collimate to the body, leaving unexposed (bright) borders.
    heel_effect : float or None
        Fractional exposure fall across the field (None: drawn from 0.05-0.15).
    blur_mm : float
        Detector blur (Gaussian sigma).
    bits_stored : int
        12 to 16.
    pose : Pose or None
        Patient position; None draws a small random one (within ±5°, ±5 mm).
    patient_seed : int or None
        Seeds the patient's anatomy and hardware (None: `seed`).
    patient_id : str or None
        Pseudonymous Patient ID (None: ``PHANTOM-<patient_seed>``).
    study_date : str
        ISO date of the study.
    """

    anatomy: str = "hand"
    seed: int = 0
    spacing_mm: float | None = None
    dose: float = 1.0
    n_deposits: int | None = None
    morphologies: tuple[str, ...] = MORPHOLOGIES
    cnr_range: tuple[float, float] = (2.0, 120.0)
    size_range_mm: tuple[float, float] = (0.5, 30.0)
    laterality: str = "R"
    marker: bool = True
    metal: str | None = None
    collimation: bool = True
    heel_effect: float | None = None
    blur_mm: float = 0.1
    bits_stored: int = 12
    pose: Pose | None = None
    patient_seed: int | None = None
    patient_id: str | None = None
    study_date: str = "2024-01-15"

    def __post_init__(self):
        kind = AnatomyKind(self.anatomy)
        object.__setattr__(self, "anatomy", kind.value)
        if self.spacing_mm is None:
            object.__setattr__(self, "spacing_mm", DEFAULT_SPACING_MM[kind])
        if not 0.05 <= float(self.spacing_mm) <= 0.5:
            raise ValueError(f"spacing_mm must be between 0.05 and 0.5 mm, got {self.spacing_mm}")
        if not 0.05 <= self.dose <= 20:
            raise ValueError(f"dose must be between 0.05 and 20, got {self.dose}")
        if self.n_deposits is not None and not 0 <= self.n_deposits <= 40:
            raise ValueError(f"n_deposits must be between 0 and 40, got {self.n_deposits}")
        morphologies = tuple(self.morphologies)
        unknown = set(morphologies) - set(MORPHOLOGIES)
        if unknown or not morphologies:
            raise ValueError(f"morphologies must be a non-empty subset of {MORPHOLOGIES}, "
                             f"got {morphologies}")
        object.__setattr__(self, "morphologies", morphologies)
        if not self.usable_morphologies and self.n_deposits != 0:
            raise ValueError(f"none of {morphologies} can occur on a {self.anatomy} film")
        lo, hi = self.cnr_range
        if not 0.5 <= lo <= hi:
            raise ValueError(f"cnr_range must satisfy 0.5 <= low <= high, got {self.cnr_range}")
        lo, hi = self.size_range_mm
        if not 0.2 <= lo <= hi <= 60:
            raise ValueError(f"size_range_mm must satisfy 0.2 <= low <= high <= 60, "
                             f"got {self.size_range_mm}")
        if self.laterality not in ("R", "L"):
            raise ValueError(f"laterality must be 'R' or 'L', got {self.laterality!r}")
        if self.metal not in (None, "wire", "screw"):
            raise ValueError(f"metal must be None, 'wire' or 'screw', got {self.metal!r}")
        if self.heel_effect is not None and not 0 <= self.heel_effect <= 0.4:
            raise ValueError(f"heel_effect must be between 0 and 0.4, got {self.heel_effect}")
        if not 0.0 < self.blur_mm <= 0.5:
            raise ValueError(f"blur_mm must be in (0, 0.5], got {self.blur_mm}")
        if not 12 <= self.bits_stored <= 16:
            raise ValueError(f"bits_stored must be 12 to 16, got {self.bits_stored}")
        datetime.date.fromisoformat(self.study_date)
        if self.patient_seed is None:
            object.__setattr__(self, "patient_seed", int(self.seed))

    @property
    def usable_morphologies(self) -> tuple[str, ...]:
        """The requested morphologies that can occur on this anatomy."""
        if self.anatomy == "hand":
            return self.morphologies
        return tuple(m for m in self.morphologies if m != "acral")

    @property
    def resolved_patient_id(self) -> str:
        return self.patient_id or f"PHANTOM-{self.patient_seed:04d}"


@dataclass(frozen=True)
class InsertionSpec:
    """How deposits were inserted into a real film (the `spec` of an inserted film)."""

    source_path: str
    seed: int
    n_deposits: int
    morphologies: tuple[str, ...]
    cnr_range: tuple[float, float]
    size_range_mm: tuple[float, float]
    blur_mm: float


@dataclass(frozen=True, eq=False)
class PhantomFilm:
    """A film with exact ground truth.

    Attributes
    ----------
    radiograph : Radiograph
        Attenuation-positive film values on the source grid (as the reader returns them).
    truth_labels : ndarray of int32
        0 = no deposit; deposit ``k`` has label ``k`` (its `deposit_id`).
    deposits : tuple of DepositTruth
        One row per label, in label order.
    bone_mask, body_mask : ndarray of bool
        Exposed bone; exposed body (soft tissue or bone).
    field_mask, object_mask : ndarray of bool
        Exposed (collimated) field; lead markers and metal.
    spec : PhantomSpec or InsertionSpec
    bits_stored : int
        Stored bit depth the values fit in.
    notes : tuple of str
    shapes : tuple of DepositShape
        The deposits as patient-space shapes (serial films evolve them).
    pose : Pose or None
        The patient's true position on this film (for registration tests).
    """

    radiograph: Radiograph
    truth_labels: np.ndarray
    deposits: tuple[DepositTruth, ...]
    bone_mask: np.ndarray
    body_mask: np.ndarray
    field_mask: np.ndarray
    object_mask: np.ndarray
    spec: PhantomSpec | InsertionSpec
    bits_stored: int = 12
    notes: tuple[str, ...] = ()
    shapes: tuple[DepositShape, ...] = field(default=(), repr=False)
    pose: Pose | None = None

    @property
    def pixel_area_mm2(self) -> float:
        return self.radiograph.pixel_area_mm2

    @property
    def total_area_mm2(self) -> float:
        """Total truth deposit area (mm²)."""
        return float(sum(d.area_mm2 for d in self.deposits))

    @property
    def is_negative(self) -> bool:
        return not self.deposits


def sample_cnr(rng: np.random.Generator, cnr_range: tuple[float, float]) -> float:
    """Draw a requested CNR: a band chosen evenly, then log-uniform within it."""
    lo, hi = cnr_range
    bands = [(lo, min(2.0, hi))] if lo < 2.0 else []
    bands += [(max(a, lo), min(b, hi)) for a, b in CNR_BANDS if max(a, lo) < min(b, hi)]
    if not bands:
        return float(lo)
    a, b = bands[int(rng.integers(len(bands)))]
    return float(math.exp(rng.uniform(math.log(a), math.log(b))))


def acquisition_for(spec: PhantomSpec, rng: np.random.Generator, *, pose: Pose | None = None,
                    dose: float | None = None) -> Acquisition:
    """The film's exposure and recording, drawn from the spec and its seed."""
    kind = AnatomyKind(spec.anatomy)
    height, width = FIELD_MM[kind]
    shape = (int(round(height / spec.spacing_mm)), int(round(width / spec.spacing_mm)))
    if pose is None:
        pose = spec.pose or Pose(float(rng.uniform(-5, 5)),
                                 (float(rng.uniform(-5, 5)), float(rng.uniform(-5, 5))), 1.0)
    grid = FilmGrid(shape, float(spec.spacing_mm), pose, mirror=spec.laterality == "L")
    axes = ((1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0))
    heel_axis = axes[int(rng.integers(4))]
    heel = spec.heel_effect if spec.heel_effect is not None else float(rng.uniform(0.05, 0.15))
    collimation = tuple(float(m) for m in rng.uniform(5, 20, size=4)) if spec.collimation else None
    tilt = float(rng.uniform(-2, 2))
    marker = Marker(spec.laterality, corner=int(rng.integers(4))) if spec.marker else None
    return Acquisition(grid, dose=float(spec.dose if dose is None else dose),
                       blur_mm=spec.blur_mm, heel_effect=heel, heel_axis=heel_axis,
                       collimation_mm=collimation, collimation_tilt_deg=tilt, marker=marker,
                       bits_stored=spec.bits_stored, noise_seed=int(rng.integers(1 << 62)))


def canvas_of(scene: Scene) -> Canvas:
    """The placement canvas of a phantom scene."""
    return Canvas(scene.grid, scene.body_mask, scene.bone_mask, scene.field_mask,
                  scene.object_mask, scene.acquisition.blur_px, scene.anatomy)


def scale_shapes(scene: Scene, shapes, rng: np.random.Generator,
                 cnr_range: tuple[float, float]) -> list[DepositShape]:
    """Give each shape the mineral density that shows its requested CNR on this film."""
    scaled = []
    for shape in shapes:
        target = sample_cnr(rng, cnr_range)
        scale, achieved = solve_scale(scene, shape, target)
        if achieved < min(target, cnr_range[0]) * 0.999:
            # too faint even at the densest plausible mineral: make it just visible
            target = cnr_range[0]
            scale, achieved = solve_scale(scene, shape, target, cap=math.inf)
        requested = target if achieved >= target * 0.999 else achieved
        scaled.append(dataclasses.replace(shape, scale=scale, requested_cnr=requested))
    return scaled


def make_film(spec: PhantomSpec) -> PhantomFilm:
    """Generate a phantom film and its exact truth.

    Parameters
    ----------
    spec : PhantomSpec

    Returns
    -------
    PhantomFilm

    Examples
    --------
    >>> film = make_film(PhantomSpec("hand", seed=1, spacing_mm=0.4, n_deposits=2))
    >>> sorted(set(film.truth_labels.ravel().tolist())) == [0, 1, 2]
    True
    """
    rng = np.random.default_rng([spec.seed, 7])
    scene = _patient_scene(spec, rng)
    n = int(rng.integers(1, 13)) if spec.n_deposits is None else spec.n_deposits
    shapes = place_deposits(canvas_of(scene), rng, n, spec.usable_morphologies,
                            spec.size_range_mm) if n else []
    shapes = scale_shapes(scene, shapes, rng, spec.cnr_range)
    notes = scene.notes
    if len(shapes) < n:
        notes += (f"placed {len(shapes)} of {n} deposits (no room left)",)
    return assemble_film(spec, scene, render_film(scene, shapes), shapes, notes)


def reexpose(film: PhantomFilm, dose: float) -> PhantomFilm:
    """The same patient, pose and deposits (same mineral), exposed at another dose.

    Only the exposure changes: noise (new draw), quantum level and therefore each deposit's
    CNR; the truth masks and calcium thicknesses stay those of `film`.
    """
    spec = dataclasses.replace(film.spec, dose=dose)
    scene = _patient_scene(spec, np.random.default_rng([spec.seed, 7]),
                           noise_offset=round(dose * 1000))
    return assemble_film(spec, scene, render_film(scene, film.shapes), film.shapes)


def _patient_scene(spec: PhantomSpec, rng: np.random.Generator, *, noise_offset: int = 0):
    """The patient of `spec` (anatomy, hardware) under its acquisition, drawn from `rng`,
    with the noise seed moved by `noise_offset` (a new noise draw)."""
    anatomy = build_anatomy(spec.anatomy, spec.patient_seed)
    acquisition = acquisition_for(spec, rng)
    if noise_offset:
        acquisition = dataclasses.replace(acquisition,
                                          noise_seed=acquisition.noise_seed + noise_offset)
    metal = (make_hardware(spec.metal, anatomy, np.random.default_rng([spec.patient_seed, 11]))
             if spec.metal else ())
    return render_scene(anatomy, acquisition, metal=metal)


def assemble_film(spec: PhantomSpec, scene: Scene, render: FilmRender, shapes,
                  notes: tuple[str, ...] = ()) -> PhantomFilm:
    """Wrap a rendered scene as a `PhantomFilm` with its `Radiograph`."""
    s = spec.spacing_mm
    scale = scene.scale
    window = (scale.offset + scale.gain * 1.6, scale.gain * 3.6)
    metadata = RadiographMetadata(
        patient_key=patient_key(spec.resolved_patient_id),
        study_date=spec.study_date,
        laterality=spec.laterality,
        body_part=scene.anatomy.body_part,
        view_position="PA" if spec.anatomy == "hand" else "AP",
        modality="DX",
    )
    radiograph = Radiograph(render.values, (s, s), SpacingSource.PIXEL_SPACING,
                            f"phantom:{spec.anatomy}:seed={spec.seed}", metadata,
                            "MONOCHROME2 as stored", window)
    return PhantomFilm(radiograph, render.labels, render.deposits, scene.bone_mask,
                       scene.body_mask, scene.field_mask, scene.object_mask, spec,
                       spec.bits_stored, tuple(notes), tuple(shapes), scene.grid.pose)
