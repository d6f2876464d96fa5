"""Lesion-level scoring of deposit detections against ground truth (pure functions).

Matching rule
-------------
A predicted deposit (a label of the prediction's label image) *matches* a truth deposit when
their overlap is at least `MIN_OVERLAP` (20 %) of the smaller of the two areas. A truth
deposit is *detected* when any prediction matches it; a prediction that matches no truth
deposit is a *false positive*. The scorer sees labels, not connected components: a deposit
split into two labels gives two predictions.

Report
------
- sensitivity overall, by CNR band ([2,3), [3,5), [5,8), [8,15), [15,inf), plus [0,2) when
  present) and by area band (<1, 1-4, 4-20, >20 mm²), and the target cells (area >= 1 mm²
  with CNR >= 5, and with 3 <= CNR < 5);
- false-positive deposits per film (all films, negatives only) and the fraction of negative
  films with none;
- FROC points: sensitivity against false positives per film as the score threshold sweeps
  over the predictions' scores (a prediction is kept when its score >= the threshold);
- pixel Dice pooled over all films, and the mean over films with truth deposits;
- median absolute relative area error over detected deposits (the summed area of the
  predictions matched to a deposit against its true area);
- for serial pairs, agreement of the change category computed from the predicted total areas
  with the category from the true total areas (see `change_category`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

MIN_OVERLAP = 0.2
CNR_BANDS = ((0.0, 2.0), (2.0, 3.0), (3.0, 5.0), (5.0, 8.0), (8.0, 15.0), (15.0, math.inf))
AREA_BANDS_MM2 = ((0.0, 1.0), (1.0, 4.0), (4.0, 20.0), (20.0, math.inf))
#: Relative change of total area beyond which a follow-up is progression or improvement.
CHANGE_THRESHOLD = 0.25
CATEGORIES = ("progression", "stable", "improvement")


def change_category(baseline_mm2: float, followup_mm2: float,
                    threshold: float = CHANGE_THRESHOLD) -> str:
    """Change category between two visits from their total deposit areas.

    Progression when the area grows by more than `threshold` (25 %), improvement when it
    falls by more than `threshold`, stable otherwise. With no deposits at baseline, any
    deposit at follow-up is progression and none is stable.

    Examples
    --------
    >>> change_category(10.0, 13.0), change_category(10.0, 7.0), change_category(10.0, 12.0)
    ('progression', 'improvement', 'stable')
    >>> change_category(0.0, 0.0), change_category(0.0, 0.5)
    ('stable', 'progression')
    """
    if baseline_mm2 < 0 or followup_mm2 < 0:
        raise ValueError("areas must not be negative")
    if baseline_mm2 == 0:
        return "progression" if followup_mm2 > 0 else "stable"
    change = (followup_mm2 - baseline_mm2) / baseline_mm2
    if change > threshold:
        return "progression"
    if change < -threshold:
        return "improvement"
    return "stable"


def _band_name(band: tuple[float, float], unit: str = "") -> str:
    lo, hi = band
    if math.isinf(hi):
        return f">={lo:g}{unit}"
    return f"[{lo:g},{hi:g}){unit}"


def band_of(value: float, bands) -> int:
    """Index of the half-open band [lo, hi) holding `value`."""
    for i, (lo, hi) in enumerate(bands):
        if lo <= value < hi:
            return i
    return len(bands) - 1


# --- per film ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TruthDeposit:
    """What the scorer needs of a truth deposit."""

    label: int
    area_mm2: float
    cnr: float


@dataclass(frozen=True)
class DepositOutcome:
    """A truth deposit after matching: detection score and the matched predicted area."""

    label: int
    area_mm2: float
    cnr: float
    detected: bool
    score: float
    """Highest score among matching predictions (-inf when undetected)."""
    predicted_area_mm2: float


@dataclass(frozen=True)
class PredictionOutcome:
    """A predicted deposit after matching."""

    label: int
    area_mm2: float
    score: float
    matched: bool


@dataclass(frozen=True)
class FilmScore:
    """Everything the summary needs from one film (small: no arrays)."""

    film_id: str
    truths: tuple[DepositOutcome, ...]
    predictions: tuple[PredictionOutcome, ...]
    intersection_px: int
    truth_px: int
    predicted_px: int
    truth_area_mm2: float
    predicted_area_mm2: float

    @property
    def is_negative(self) -> bool:
        return not self.truths

    @property
    def false_positives(self) -> int:
        return sum(not p.matched for p in self.predictions)

    @property
    def dice(self) -> float | None:
        total = self.truth_px + self.predicted_px
        return None if total == 0 else 2.0 * self.intersection_px / total


def match_deposits(truth_labels: np.ndarray, predicted_labels: np.ndarray,
                   min_overlap: float = MIN_OVERLAP):
    """Pair truth and predicted labels whose overlap is at least `min_overlap` of the smaller.

    Returns
    -------
    pairs : list of (truth_label, predicted_label)
    truth_px : dict of label → pixel count
    predicted_px : dict of label → pixel count
    """
    truth_labels = np.asarray(truth_labels)
    predicted_labels = np.asarray(predicted_labels)
    if truth_labels.shape != predicted_labels.shape:
        raise ValueError(f"label images differ in shape: {truth_labels.shape} vs "
                         f"{predicted_labels.shape}")
    t_ids, t_counts = np.unique(truth_labels[truth_labels > 0], return_counts=True)
    p_ids, p_counts = np.unique(predicted_labels[predicted_labels > 0], return_counts=True)
    truth_px = dict(zip(t_ids.tolist(), t_counts.tolist()))
    predicted_px = dict(zip(p_ids.tolist(), p_counts.tolist()))
    both = (truth_labels > 0) & (predicted_labels > 0)
    pairs = []
    if both.any():
        t = truth_labels[both].astype(np.int64)
        p = predicted_labels[both].astype(np.int64)
        keys, counts = np.unique(t * (int(p.max()) + 1) + p, return_counts=True)
        for key, overlap in zip(keys.tolist(), counts.tolist()):
            tl, pl = divmod(key, int(p.max()) + 1)
            if overlap >= min_overlap * min(truth_px[tl], predicted_px[pl]):
                pairs.append((tl, pl))
    return pairs, truth_px, predicted_px


def score_film(
    truth_labels: np.ndarray,
    truth: Sequence[TruthDeposit],
    predicted_labels: np.ndarray,
    scores: Mapping[int, float] | None,
    pixel_area_mm2: float,
    *,
    film_id: str = "",
    min_overlap: float = MIN_OVERLAP,
) -> FilmScore:
    """Match one film's predictions to its truth.

    Parameters
    ----------
    truth_labels : ndarray of int
        Truth label image (0 = background).
    truth : sequence of TruthDeposit
        One entry per truth label (CNR and area for the band tables).
    predicted_labels : ndarray of int
        Prediction label image on the same grid.
    scores : mapping of label → float, optional
        Confidence of each predicted label (e.g. its CNR), for the FROC; missing labels
        score +inf (kept at every threshold).
    pixel_area_mm2 : float
    film_id : str
    min_overlap : float
    """
    pairs, truth_px, predicted_px = match_deposits(truth_labels, predicted_labels, min_overlap)
    scores = dict(scores or {})
    matched_preds: dict[int, list[int]] = {}
    for tl, pl in pairs:
        matched_preds.setdefault(tl, []).append(pl)
    matched_set = {pl for _, pl in pairs}
    truths = []
    known = {d.label: d for d in truth}
    missing = set(truth_px) - set(known)
    if missing:
        raise ValueError(f"truth labels {sorted(missing)} have no truth table entry")
    for d in truth:
        preds = matched_preds.get(d.label, [])
        score = max((float(scores.get(p, math.inf)) for p in preds), default=-math.inf)
        area = sum(predicted_px[p] for p in preds) * pixel_area_mm2
        truths.append(DepositOutcome(d.label, float(d.area_mm2), float(d.cnr), bool(preds),
                                     score, area))
    predictions = tuple(
        PredictionOutcome(pl, n * pixel_area_mm2, float(scores.get(pl, math.inf)),
                          pl in matched_set)
        for pl, n in sorted(predicted_px.items()))
    t_mask = np.asarray(truth_labels) > 0
    p_mask = np.asarray(predicted_labels) > 0
    return FilmScore(
        film_id=film_id, truths=tuple(truths), predictions=predictions,
        intersection_px=int(np.count_nonzero(t_mask & p_mask)),
        truth_px=int(np.count_nonzero(t_mask)), predicted_px=int(np.count_nonzero(p_mask)),
        truth_area_mm2=float(sum(d.area_mm2 for d in truth)),
        predicted_area_mm2=float(np.count_nonzero(p_mask) * pixel_area_mm2))


# --- summary -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sensitivity:
    """Detected / total truth deposits in one cell (sensitivity None when empty)."""

    detected: int
    total: int

    @property
    def value(self) -> float | None:
        return None if self.total == 0 else self.detected / self.total

    def to_dict(self) -> dict:
        return {"sensitivity": self.value, "detected": self.detected, "total": self.total}


@dataclass(frozen=True)
class AccuracyReport:
    """The accuracy figures of a set of films (see the module docstring)."""

    n_films: int
    n_negative_films: int
    n_truth_deposits: int
    n_predictions: int
    sensitivity: Sensitivity
    by_cnr: dict
    by_area: dict
    target_cells: dict
    fp_per_film: float
    fp_per_negative_film: float | None
    negatives_without_fp: float | None
    froc: tuple[tuple[float, float, float], ...]
    dice_pooled: float | None
    dice_mean_positive: float | None
    median_abs_area_error: float | None
    serial: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-ready dictionary."""
        d = asdict(self)
        d["sensitivity"] = self.sensitivity.to_dict()
        d["by_cnr"] = {k: v.to_dict() for k, v in self.by_cnr.items()}
        d["by_area"] = {k: v.to_dict() for k, v in self.by_area.items()}
        d["target_cells"] = {k: v.to_dict() for k, v in self.target_cells.items()}
        d["froc"] = [{"threshold": _json_float(t), "sensitivity": s, "fp_per_film": f}
                     for t, s, f in self.froc]
        return d


def _json_float(x: float):
    return None if math.isinf(x) or math.isnan(x) else x


def _sens(outcomes) -> Sensitivity:
    outcomes = list(outcomes)
    return Sensitivity(sum(o.detected for o in outcomes), len(outcomes))


def summarise(
    films: Sequence[FilmScore],
    serial_pairs: Sequence[tuple[str, str]] = (),
    *,
    threshold: float = CHANGE_THRESHOLD,
) -> AccuracyReport:
    """Accuracy figures over a set of scored films.

    Parameters
    ----------
    films : sequence of FilmScore
    serial_pairs : sequence of (baseline film_id, follow-up film_id)
        Visit pairs whose change category is compared.
    threshold : float
        Relative change of total area that separates stable from progression/improvement.
    """
    truths = [t for f in films for t in f.truths]
    n_films = len(films)
    negatives = [f for f in films if f.is_negative]
    by_cnr = {_band_name(b): _sens(t for t in truths if band_of(t.cnr, CNR_BANDS) == i)
              for i, b in enumerate(CNR_BANDS)}
    by_area = {_band_name(b, " mm2"): _sens(t for t in truths
                                            if band_of(t.area_mm2, AREA_BANDS_MM2) == i)
               for i, b in enumerate(AREA_BANDS_MM2)}
    target_cells = {
        "area>=1mm2 & cnr>=5": _sens(t for t in truths if t.area_mm2 >= 1 and t.cnr >= 5),
        "area>=1mm2 & 3<=cnr<5": _sens(t for t in truths if t.area_mm2 >= 1 and 3 <= t.cnr < 5),
    }
    n_fp = sum(f.false_positives for f in films)
    fp_neg = [f.false_positives for f in negatives]
    intersection = sum(f.intersection_px for f in films)
    denominator = sum(f.truth_px + f.predicted_px for f in films)
    positive_dice = [f.dice for f in films if not f.is_negative and f.dice is not None]
    errors = [abs(t.predicted_area_mm2 - t.area_mm2) / t.area_mm2
              for t in truths if t.detected and t.area_mm2 > 0]
    return AccuracyReport(
        n_films=n_films,
        n_negative_films=len(negatives),
        n_truth_deposits=len(truths),
        n_predictions=sum(len(f.predictions) for f in films),
        sensitivity=_sens(truths),
        by_cnr=by_cnr,
        by_area=by_area,
        target_cells=target_cells,
        fp_per_film=n_fp / n_films if n_films else 0.0,
        fp_per_negative_film=(sum(fp_neg) / len(fp_neg)) if fp_neg else None,
        negatives_without_fp=(sum(n == 0 for n in fp_neg) / len(fp_neg)) if fp_neg else None,
        froc=froc_points(films),
        dice_pooled=(2.0 * intersection / denominator) if denominator else None,
        dice_mean_positive=float(np.mean(positive_dice)) if positive_dice else None,
        median_abs_area_error=float(np.median(errors)) if errors else None,
        serial=serial_agreement(films, serial_pairs, threshold=threshold),
    )


def froc_points(films: Sequence[FilmScore], max_points: int = 40
                ) -> tuple[tuple[float, float, float], ...]:
    """(threshold, sensitivity, false positives per film) as the score threshold sweeps.

    The first point keeps every prediction; later points raise the threshold through the
    observed scores (at most `max_points`, evenly spread over them).
    """
    n_films = len(films)
    truths = [t for f in films for t in f.truths]
    fp_scores = np.array([p.score for f in films for p in f.predictions if not p.matched])
    det_scores = np.array([t.score for t in truths])
    detected = np.array([t.detected for t in truths], dtype=bool)
    candidates = np.concatenate([fp_scores, det_scores[detected]])
    finite = np.unique(candidates[np.isfinite(candidates)])
    if finite.size > max_points:
        finite = np.unique(np.quantile(finite, np.linspace(0, 1, max_points)))
    thresholds = [-math.inf] + [float(s) for s in finite]
    points = []
    for thr in thresholds:
        sens = (float(np.count_nonzero(detected & (det_scores >= thr))) / len(truths)
                if truths else None)
        fppf = float(np.count_nonzero(fp_scores >= thr)) / n_films if n_films else 0.0
        points.append((thr, sens, fppf))
    return tuple(points)


def serial_agreement(films: Sequence[FilmScore], pairs: Sequence[tuple[str, str]], *,
                     threshold: float = CHANGE_THRESHOLD) -> dict:
    """Agreement of predicted with true change categories over visit pairs."""
    by_id = {f.film_id: f for f in films}
    rows = []
    for base_id, follow_id in pairs:
        base, follow = by_id[base_id], by_id[follow_id]
        truth = change_category(base.truth_area_mm2, follow.truth_area_mm2, threshold)
        predicted = change_category(base.predicted_area_mm2, follow.predicted_area_mm2, threshold)
        rows.append({"baseline": base_id, "followup": follow_id, "truth": truth,
                     "predicted": predicted, "truth_area_mm2": [base.truth_area_mm2,
                                                                follow.truth_area_mm2],
                     "predicted_area_mm2": [base.predicted_area_mm2, follow.predicted_area_mm2]})
    confusion = {t: {p: sum(r["truth"] == t and r["predicted"] == p for r in rows)
                     for p in CATEGORIES} for t in CATEGORIES}
    agree = sum(r["truth"] == r["predicted"] for r in rows)
    return {"n_pairs": len(rows), "agreement": (agree / len(rows)) if rows else None,
            "confusion": confusion, "pairs": rows}


def format_report(report: AccuracyReport, title: str = "") -> str:
    """A readable table of an accuracy report."""

    def pct(x):
        return "  n/a " if x is None else f"{100 * x:5.1f}%"

    def num(x, fmt="{:.3f}"):
        return "n/a" if x is None else fmt.format(x)

    lines = []
    if title:
        lines += [title, "=" * len(title)]
    lines.append(f"films {report.n_films} (negative {report.n_negative_films}), truth deposits "
                 f"{report.n_truth_deposits}, predictions {report.n_predictions}")
    s = report.sensitivity
    lines.append(f"sensitivity            {pct(s.value)}  ({s.detected}/{s.total})")
    for name, cells in (("by CNR", report.by_cnr), ("by area", report.by_area),
                        ("target cells", report.target_cells)):
        lines.append(f"{name}:")
        for band, cell in cells.items():
            lines.append(f"  {band:<22} {pct(cell.value)}  ({cell.detected}/{cell.total})")
    lines.append(f"false positives/film   {report.fp_per_film:.3f}   negatives: "
                 f"{num(report.fp_per_negative_film)} per film, "
                 f"{pct(report.negatives_without_fp)} with none")
    lines.append(f"pixel Dice             pooled {num(report.dice_pooled)}, mean over positive "
                 f"films {num(report.dice_mean_positive)}")
    lines.append(f"median |area error|    {pct(report.median_abs_area_error)}")
    if report.serial.get("n_pairs"):
        lines.append(f"serial change category agreement {pct(report.serial['agreement'])} over "
                     f"{report.serial['n_pairs']} pairs")
    lines.append("FROC (threshold: sensitivity @ FP/film):")
    shown = report.froc if len(report.froc) <= 8 else [report.froc[i] for i in np.linspace(
        0, len(report.froc) - 1, 8).astype(int)]
    for thr, sens, fp in shown:
        lines.append(f"  {'all' if math.isinf(thr) else f'{thr:.3g}':>8}: {pct(sens)} @ {fp:.3f}")
    return "\n".join(lines)


def format_target_line(report: AccuracyReport, label: str) -> str:
    """A report's target figures on one line, after `label` (one seed's, say)."""
    cells = "  ".join(f"{band} {cell.detected}/{cell.total}"
                      for band, cell in report.target_cells.items())
    dice = "n/a" if report.dice_pooled is None else f"{report.dice_pooled:.3f}"
    error = ("n/a" if report.median_abs_area_error is None
             else f"{100 * report.median_abs_area_error:.1f} %")
    clean = ("n/a" if report.negatives_without_fp is None
             else f"{100 * report.negatives_without_fp:.0f} %")
    return (f"  {label}: {cells}  false/film {report.fp_per_film:.3f}  negatives clean "
            f"{clean}  Dice {dice}  median |area error| {error}")
