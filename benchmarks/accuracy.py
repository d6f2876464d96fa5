"""Accuracy benchmark: a seeded suite of phantom films, a predictor, lesion-level scores.

    python benchmarks/accuracy.py                       # 60 films, all predictors
    python benchmarks/accuracy.py --n-films 12 --predictor oracle empty --jobs 2
    python benchmarks/accuracy.py --seed 0 1 2 3 4 --predictor pipeline --jobs 2

Several seeds pool their suites into one report (each film scored once, the figures over
all of them), with each seed's target cells, false deposits, Dice and area error listed
after it: the detector's parameters were chosen on seed 0, so the other seeds are the
figures it was not tuned on.

The suite mixes hand, forearm and lower-leg films at several doses, spacings and bit depths,
about 20 % negatives and serial sets (three visits of one phantom patient each). Predictors:

- ``pipeline`` — calcitrack's detector (`imaging.deposits.find_deposits`), scored by its
  deposits' CNR for the FROC;
- ``oracle`` — the ground truth itself (must score sensitivity 1, no false positives, Dice 1);
- ``empty`` — no deposits (must score sensitivity 0).

The figures (see `imaging.evaluation`) are printed as a table and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from imaging.evaluation import (TruthDeposit, format_report, format_target_line, score_film,
                                summarise)
from imaging.files import atomic_output
from imaging.phantom import PhantomSpec, SeriesSpec, make_film, make_series

PREDICTORS = ("pipeline", "oracle", "empty")
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "accuracy.json"
SERIES_CHANGES = (("progression", "improvement"), ("stable", "progression"),
                  ("improvement", "stable"), ("new", "progression"), ("progression", "resolution"))
ANATOMIES = ("hand", "hand", "forearm", "lower_leg")


class PredictorUnavailable(RuntimeError):
    """The predictor cannot run here (e.g. the detector is not implemented yet)."""


@dataclass(frozen=True)
class SuiteItem:
    """One generation job of the suite: a single film or a serial set."""

    kind: str                    # "film" or "series"
    ids: tuple[str, ...]
    spec: PhantomSpec | SeriesSpec


def build_suite(n_films: int = 60, seed: int = 0, *, spacing_mm: float | None = None
                ) -> list[SuiteItem]:
    """The suite's films, deterministic from `seed`.

    About 20 % of the films are negatives and about 20 % belong to three-visit serial sets;
    the rest are positive single films.

    Parameters
    ----------
    n_films : int
        Total films (at least 1).
    seed : int
    spacing_mm : float, optional
        Force one spacing (default: drawn from 0.15, 0.175 and 0.2 mm).
    """
    if n_films < 1:
        raise ValueError("n_films must be at least 1")
    rng = np.random.default_rng([seed, 2024])
    n_negative = int(round(0.2 * n_films)) if n_films >= 3 else 0
    n_series = max(1, int(round(0.2 * n_films / 3))) if n_films >= 6 else 0
    n_single = n_films - n_negative - 3 * n_series
    if n_single < 0:
        n_negative += n_single
        n_single = 0

    def common(i):
        anatomy = ANATOMIES[i % len(ANATOMIES)]
        spacing = spacing_mm or float(rng.choice([0.15, 0.175, 0.2]))
        if anatomy == "lower_leg" and spacing_mm is None:
            spacing = 0.2
        return dict(anatomy=anatomy, spacing_mm=spacing, laterality=str(rng.choice(["R", "L"])),
                    metal=(str(rng.choice(["wire", "screw"])) if rng.random() < 0.15 else None),
                    bits_stored=int(rng.choice([12, 12, 14, 16])),
                    dose=float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))))

    items = []
    for i in range(n_single):
        spec = PhantomSpec(seed=int(rng.integers(1 << 31)), **common(i))
        items.append(SuiteItem("film", (f"f{i:03d}-{spec.anatomy}",), spec))
    for i in range(n_negative):
        spec = PhantomSpec(seed=int(rng.integers(1 << 31)), n_deposits=0, **common(i + 1))
        items.append(SuiteItem("film", (f"n{i:03d}-{spec.anatomy}",), spec))
    for i in range(n_series):
        params = common(i)
        params.pop("dose")
        spec = SeriesSpec(seed=int(rng.integers(1 << 31)),
                          changes=SERIES_CHANGES[i % len(SERIES_CHANGES)], **params)
        items.append(SuiteItem("series", tuple(f"s{i:02d}-v{v + 1}-{spec.anatomy}"
                                                for v in range(spec.n_visits)), spec))
    return items


def pooled_suite(n_films: int, seeds, *, spacing_mm: float | None = None
                 ) -> list[tuple[int, SuiteItem]]:
    """(seed, item) for the suites of several seeds; with more than one seed every film id
    starts with its seed (``"3/f000-hand"``), so ids stay unique."""
    seeds = list(dict.fromkeys(seeds))
    return [(seed, item if len(seeds) == 1 else
             replace(item, ids=tuple(f"{seed}/{film_id}" for film_id in item.ids)))
            for seed in seeds for item in build_suite(n_films, seed, spacing_mm=spacing_mm)]


def serial_pairs(items: list[SuiteItem]) -> list[tuple[str, str]]:
    """Consecutive visit pairs of the suite's serial sets."""
    return [(item.ids[v], item.ids[v + 1]) for item in items if item.kind == "series"
            for v in range(len(item.ids) - 1)]


def generate(item: SuiteItem):
    """The films of one suite item as (film id, PhantomFilm) pairs."""
    if item.kind == "film":
        return [(item.ids[0], make_film(item.spec))]
    return list(zip(item.ids, make_series(item.spec).visits))


# --- predictors ----------------------------------------------------------------------------

def predict(name: str, film):
    """(labels, scores by label) of predictor `name` on a phantom film."""
    if name == "oracle":
        return film.truth_labels, {d.deposit_id: d.cnr for d in film.deposits}
    if name == "empty":
        return np.zeros(film.truth_labels.shape, dtype=np.int32), {}
    if name == "pipeline":
        detector = _detector()
        findings = detector[0](film.radiograph, detector[1]())
        labels = np.asarray(findings.labels)
        return labels, {int(d.label): float(d.cnr) for d in findings.deposits}
    raise ValueError(f"unknown predictor {name!r}")


def _detector():
    try:
        from imaging.config import AnalysisConfig
        from imaging.deposits import find_deposits
    except ImportError as exc:
        raise PredictorUnavailable(
            "the detector is not available (imaging.deposits.find_deposits and "
            f"imaging.config.AnalysisConfig cannot be imported: {exc})") from None
    return find_deposits, AnalysisConfig


def check_predictor(name: str) -> None:
    """Raise PredictorUnavailable when `name` cannot run here."""
    if name == "pipeline":
        _detector()
    elif name not in PREDICTORS:
        raise ValueError(f"unknown predictor {name!r}")


def score_item(item: SuiteItem, predictors: tuple[str, ...]):
    """Generate one suite item and score every predictor on its films (a worker's job)."""
    scores = {name: [] for name in predictors}
    for film_id, film in generate(item):
        truth = [TruthDeposit(d.deposit_id, d.area_mm2, d.cnr) for d in film.deposits]
        for name in predictors:
            labels, film_scores = predict(name, film)
            scores[name].append(score_film(film.truth_labels, truth, labels, film_scores,
                                           film.pixel_area_mm2, film_id=film_id))
    return scores


def run(n_films: int = 60, seeds=(0,), predictors=("oracle", "empty"), *, jobs: int = 1,
        spacing_mm: float | None = None, log=None) -> dict:
    """Run the benchmark and return the JSON-ready results.

    Parameters
    ----------
    n_films, spacing_mm
        The suite of each seed (see `build_suite`).
    seeds : sequence of int
        Suite seeds; several are pooled (`pooled_suite`), and each seed's own figures are
        under ``per_seed``.
    predictors : sequence of str
        Any of ``pipeline``, ``oracle``, ``empty``; unavailable ones are reported, not run.
    jobs : int
        Worker processes (1 = in this process).
    log : callable, optional
        Called with progress messages.
    """
    log = log or (lambda message: None)
    started = time.perf_counter()
    available, errors = [], {}
    for name in dict.fromkeys(predictors):
        try:
            check_predictor(name)
            available.append(name)
        except PredictorUnavailable as exc:
            errors[name] = str(exc)
            log(f"{name}: {exc}")
    suite = pooled_suite(n_films, seeds, spacing_mm=spacing_mm)
    items = [item for _, item in suite]
    # Film scores per seed and predictor.
    scored = {seed: {name: [] for name in available} for seed, _ in suite}
    if available:
        if jobs > 1:
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(score_item, item, tuple(available)) for item in items]
                outcomes = [f.result() for f in futures]
        else:
            outcomes = []
            for i, item in enumerate(items, 1):
                outcomes.append(score_item(item, tuple(available)))
                log(f"[{i}/{len(items)}] {', '.join(item.ids)}")
        for (seed, _), outcome in zip(suite, outcomes):
            for name in available:
                scored[seed][name].extend(outcome[name])
    pairs = serial_pairs(items)
    results = {name: summarise([f for films in scored.values() for f in films[name]], pairs)
               for name in available}
    per_seed = {}
    if len(scored) > 1:
        for seed, films in scored.items():
            own_pairs = serial_pairs([item for item_seed, item in suite if item_seed == seed])
            per_seed[seed] = {name: summarise(films[name], own_pairs) for name in available}
    return {
        "suite": {"n_films": sum(len(item.ids) for item in items), "seeds": list(scored),
                  "spacing_mm": spacing_mm, "n_serial_pairs": len(pairs),
                  "n_negative_films": sum(item.kind == "film" and item.spec.n_deposits == 0
                                          for item in items)},
        "results": {name: report.to_dict() for name, report in results.items()},
        "per_seed": {seed: {name: report.to_dict() for name, report in reports.items()}
                     for seed, reports in per_seed.items()},
        "unavailable": errors,
        "seconds": round(time.perf_counter() - started, 1),
        "_reports": results,
        "_per_seed": per_seed,
    }


def write_json(results: dict, path: str | Path) -> None:
    """Write the results (without the report objects) atomically."""
    data = {k: v for k, v in results.items() if not k.startswith("_")}
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(_clean(data), indent=2) + "\n")


def _clean(value):
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-films", type=int, default=60, help="films in the suite (default 60)")
    parser.add_argument("--seed", type=int, nargs="+", default=[0],
                        help="suite seed, or several to pool (default 0)")
    parser.add_argument("--predictor", nargs="+", choices=PREDICTORS, default=list(PREDICTORS),
                        help="predictors to score (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--spacing-mm", type=float, default=None,
                        help="force one pixel spacing (default: 0.15-0.2 mm)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help=f"results file (default {DEFAULT_JSON})")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    results = run(args.n_films, args.seed, tuple(args.predictor), jobs=args.jobs,
                  spacing_mm=args.spacing_mm, log=log)
    seeds = ", ".join(map(str, results["suite"]["seeds"]))
    for name, report in results["_reports"].items():
        print(format_report(report, f"predictor: {name} (seed {seeds})"))
        for seed, reports in results["_per_seed"].items():
            print(format_target_line(reports[name], f"seed {seed}"))
        print()
    for name, error in results["unavailable"].items():
        print(f"predictor {name}: not run — {error}")
    write_json(results, args.json)
    print(f"results written to {args.json} ({results['seconds']} s)")
    return 0 if results["_reports"] else 1


if __name__ == "__main__":
    sys.exit(main())
