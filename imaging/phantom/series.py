"""Serial phantom films: one patient filmed at several visits with known burden changes.

The deposits are physical objects in patient space: between visits they grow or shrink,
change density, resolve, or new ones appear, as each declared change says. Every visit is
a new exposure: the patient is repositioned (rotation up to ±10°, shift up to 10 mm, a small
magnification change) and the dose differs, so the same deposit has a different CNR and
a different pixel footprint on each film. The truth of each visit is measured on its own film,
and the change category of each consecutive pair is computed from the true total areas with
the ±25 % rule (`imaging.evaluation.change_category`); generation retries until it equals the
declared one.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass

import numpy as np

from ..evaluation import change_category
from .acquisition import make_hardware, render_scene
from .anatomy import build_anatomy, patient_texture
from .film import (PhantomFilm, PhantomSpec, acquisition_for, assemble_film, canvas_of,
                   scale_shapes)
from .morphology import MORPHOLOGIES, DepositShape
from .placement import check_fit, mark_occupied, place_deposits
from .shapes import Pose
from .truth import render_film

#: Declared changes between consecutive visits, and the category each must produce.
CHANGES = {
    "progression": "progression",
    "new": "progression",
    "stable": "stable",
    "improvement": "improvement",
    "resolution": "improvement",
}
#: Largest linear growth of a deposit over one visit (room is kept for it at placement).
MAX_GROWTH = 1.5


@dataclass(frozen=True)
class SeriesSpec:
    """A phantom patient's serial films.

    Attributes
    ----------
    anatomy : str
    seed : int
    changes : tuple of str
        One per visit after the first: progression, stable, improvement, resolution
        (every deposit gone) or new (new deposits appear).
    n_deposits : int or None
        Deposits at baseline (None: 2 to 8; 0 starts from a clean film).
    spacing_mm, dose, morphologies, cnr_range, size_range_mm, laterality, marker, metal,
    blur_mm, bits_stored
        As in `PhantomSpec` (the dose is the baseline's; follow-ups vary it by 0.6-1.6x).
    max_rotation_deg, max_shift_mm, max_scale_change : float
        Repositioning limits of follow-up visits.
    first_study_date : str
        ISO date of the baseline.
    interval_days : int
        Days between visits.
    patient_seed : int or None
        Seeds the anatomy (None: `seed`).
    patient_id : str or None
    """

    anatomy: str = "hand"
    seed: int = 0
    changes: tuple[str, ...] = ("progression", "improvement")
    n_deposits: int | None = None
    spacing_mm: float | None = None
    dose: float = 1.0
    morphologies: tuple[str, ...] = MORPHOLOGIES
    cnr_range: tuple[float, float] = (2.0, 120.0)
    size_range_mm: tuple[float, float] = (0.5, 30.0)
    laterality: str = "R"
    marker: bool = True
    metal: str | None = None
    blur_mm: float = 0.1
    bits_stored: int = 12
    max_rotation_deg: float = 10.0
    max_shift_mm: float = 10.0
    max_scale_change: float = 0.03
    first_study_date: str = "2024-01-15"
    interval_days: int = 182
    patient_seed: int | None = None
    patient_id: str | None = None

    def __post_init__(self):
        changes = tuple(self.changes)
        object.__setattr__(self, "changes", changes)
        if not changes:
            raise ValueError("a series needs at least one change (two visits)")
        unknown = [c for c in changes if c not in CHANGES]
        if unknown:
            raise ValueError(f"unknown changes {unknown}; use {tuple(CHANGES)}")
        empty = self.n_deposits == 0
        for change in changes:
            if empty and change in ("improvement", "resolution"):
                raise ValueError(f"cannot have {change!r} when there are no deposits left")
            if change == "resolution":
                empty = True
            elif change in ("progression", "new"):
                empty = False
        if not 0 <= self.max_rotation_deg <= 15 or not 0 <= self.max_shift_mm <= 20:
            raise ValueError("repositioning limits: rotation <= 15°, shift <= 20 mm")
        if not 0 <= self.max_scale_change <= 0.05:
            raise ValueError("max_scale_change must be between 0 and 0.05 (the ±25 % rule "
                             "must not be driven by magnification alone)")
        if self.patient_seed is None:
            object.__setattr__(self, "patient_seed", int(self.seed))
        self.visit_spec(0)   # validates the shared film parameters

    @property
    def n_visits(self) -> int:
        return len(self.changes) + 1

    def visit_spec(self, visit: int, dose: float | None = None) -> PhantomSpec:
        """The `PhantomSpec` of one visit (0 = baseline)."""
        date = (datetime.date.fromisoformat(self.first_study_date)
                + datetime.timedelta(days=self.interval_days * visit))
        return PhantomSpec(
            anatomy=self.anatomy, seed=int(np.random.default_rng([self.seed, 5, visit])
                                           .integers(1 << 31)),
            spacing_mm=self.spacing_mm, dose=self.dose if dose is None else dose,
            n_deposits=self.n_deposits, morphologies=self.morphologies,
            cnr_range=self.cnr_range, size_range_mm=self.size_range_mm,
            laterality=self.laterality, marker=self.marker, metal=self.metal,
            blur_mm=self.blur_mm, bits_stored=self.bits_stored,
            patient_seed=self.patient_seed, patient_id=self.patient_id,
            study_date=date.isoformat())


@dataclass(frozen=True)
class VisitChange:
    """The true change between two visits."""

    baseline_visit: int
    followup_visit: int
    declared: str
    category: str
    baseline_area_mm2: float
    followup_area_mm2: float

    @property
    def change_pct(self) -> float | None:
        if self.baseline_area_mm2 == 0:
            return None
        return 100.0 * (self.followup_area_mm2 - self.baseline_area_mm2) / self.baseline_area_mm2


@dataclass(frozen=True, eq=False)
class PhantomSeries:
    """The visits of a phantom patient and the true change between consecutive visits."""

    spec: SeriesSpec
    visits: tuple[PhantomFilm, ...]
    changes: tuple[VisitChange, ...]


def make_series(spec: SeriesSpec) -> PhantomSeries:
    """Generate serial films of one phantom patient with known burden changes.

    Parameters
    ----------
    spec : SeriesSpec

    Returns
    -------
    PhantomSeries

    Raises
    ------
    RuntimeError
        If a declared change cannot be produced (not expected with the default limits).
    """
    anatomy = build_anatomy(spec.anatomy, spec.patient_seed)
    texture = patient_texture(anatomy)
    rng = np.random.default_rng([spec.seed, 17])
    metal = (make_hardware(spec.metal, anatomy, np.random.default_rng([spec.patient_seed, 11]))
             if spec.metal else ())
    scenes, specs = [], []
    for visit in range(spec.n_visits):
        if visit == 0:
            pose = Pose(float(rng.uniform(-3, 3)), (float(rng.uniform(-3, 3)),
                                                    float(rng.uniform(-3, 3))), 1.0)
            dose = spec.dose
        else:
            pose = Pose(float(rng.uniform(-1, 1)) * spec.max_rotation_deg,
                        tuple(float(v) for v in rng.uniform(-1, 1, size=2) * spec.max_shift_mm
                              / np.sqrt(2)),
                        1.0 + float(rng.uniform(-1, 1)) * spec.max_scale_change)
            dose = spec.dose * float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
        visit_spec = spec.visit_spec(visit, dose)
        acquisition = acquisition_for(visit_spec, np.random.default_rng([visit_spec.seed, 7]),
                                      pose=pose)
        scenes.append(render_scene(anatomy, acquisition, metal=metal, texture=texture))
        specs.append(visit_spec)
    canvases = [canvas_of(scene) for scene in scenes]

    def fits_later(first_visit):
        def accept(shape):
            return all(check_fit(canvases[v], shape.resized(g)) is not None
                       for v in range(first_visit + 1, spec.n_visits)
                       for g in (1.0, MAX_GROWTH))
        return accept

    n = int(rng.integers(2, 9)) if spec.n_deposits is None else spec.n_deposits
    morphologies = specs[0].usable_morphologies
    shapes = place_deposits(canvases[0], rng, n, morphologies, spec.size_range_mm,
                            accept=fits_later(0), growth=MAX_GROWTH) if n else []
    shapes = scale_shapes(scenes[0], shapes, rng, spec.cnr_range)
    notes = scenes[0].notes
    if len(shapes) < n:
        notes += (f"placed {len(shapes)} of {n} deposits (no room left)",)
    films = [assemble_film(specs[0], scenes[0], render_film(scenes[0], shapes), shapes, notes)]
    changes = []
    next_track = max((s.track_id for s in shapes), default=0) + 1
    for visit, declared in enumerate(spec.changes, start=1):
        previous = films[-1]
        for attempt in range(8):
            change_rng = np.random.default_rng([spec.seed, 23, visit, attempt])
            new_shapes = _apply_change(declared, list(shapes), change_rng, scenes[visit],
                                       canvases[visit], morphologies, spec, next_track,
                                       fits_later(visit), attempt)
            render = render_film(scenes[visit], new_shapes)
            area = float(sum(d.area_mm2 for d in render.deposits))
            category = change_category(previous.total_area_mm2, area)
            if category == CHANGES[declared]:
                break
        else:
            raise RuntimeError(f"could not produce a {declared!r} change at visit {visit + 1}")
        shapes = new_shapes
        next_track = max([s.track_id for s in shapes] + [next_track - 1]) + 1
        films.append(assemble_film(specs[visit], scenes[visit], render, shapes,
                                   scenes[visit].notes))
        changes.append(VisitChange(visit - 1, visit, declared, category,
                                   previous.total_area_mm2, area))
    return PhantomSeries(spec, tuple(films), tuple(changes))


def _apply_change(declared, shapes: list[DepositShape], rng, scene, canvas, morphologies, spec,
                  next_track, accept, attempt) -> list[DepositShape]:
    """The deposits after one declared change (shapes of the previous visit in, new out)."""

    def evolve(shape, size_range, density_range):
        grown = shape.resized(float(rng.uniform(*size_range)))
        return dataclasses.replace(grown, scale=shape.scale * float(rng.uniform(*density_range)),
                                   requested_cnr=None)

    if declared == "resolution":
        return []
    if declared == "stable":
        return [evolve(s, (0.98, 1.02), (0.97, 1.03)) for s in shapes]
    if declared == "improvement":
        kept = [evolve(s, (0.55, 0.72), (0.7, 1.0)) for s in shapes]
        if len(kept) >= 2 and rng.random() < 0.35:
            kept.pop(int(rng.integers(len(kept))))
        return kept
    if declared == "progression" and shapes:
        grown = _grow(shapes, rng, canvas)
        extra = 1 if rng.random() < 0.5 else 0
    else:   # "new", or progression from a clean film
        grown = [evolve(s, (0.99, 1.01), (0.99, 1.01)) for s in shapes]
        extra = int(rng.integers(1, 3)) + attempt
    if extra:
        occupied = np.zeros(canvas.grid.shape, dtype=bool)
        for shape in grown:
            box = check_fit(canvas, shape)
            big = shape.resized(MAX_GROWTH)
            big_box = canvas.grid.box_of(big.bounds(), margin_px=1)
            mark_occupied(canvas, big, big_box or box, occupied)
        size_range = spec.size_range_mm
        if declared == "new" and shapes:
            # new deposits must add at least a quarter of the burden to count as progression
            size_range = (max(size_range[0], min(3.0 + attempt, size_range[1])), size_range[1])
        new = place_deposits(canvas, rng, extra, morphologies, size_range, occupied=occupied,
                             accept=accept, first_track_id=next_track, growth=MAX_GROWTH)
        grown += scale_shapes(scene, new, rng, spec.cnr_range)
    return grown


def _grow(shapes, rng, canvas) -> list[DepositShape]:
    """Grow every deposit by 1.3-1.45x (less where the room runs out), denser by up to 25 %."""
    occupied = np.zeros(canvas.grid.shape, dtype=bool)
    grown = []
    for shape in shapes:
        density = float(rng.uniform(1.0, 1.25))
        for factor in (float(rng.uniform(1.3, 1.45)), 1.2, 1.1, 1.0):
            candidate = shape.resized(factor)
            box = check_fit(canvas, candidate, occupied)
            if box is not None or factor == 1.0:
                break
        if box is not None:
            mark_occupied(canvas, candidate, box, occupied, gap_mm=0.5)
        grown.append(dataclasses.replace(candidate, scale=shape.scale * density,
                                         requested_cnr=None))
    return grown
