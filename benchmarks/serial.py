"""Serial-film benchmark: registration error, change-category agreement, repeatability.

    python benchmarks/serial.py                          # 12 series + 12 re-acquired pairs
    python benchmarks/serial.py --n-series 4 --n-repeats 4
    python benchmarks/serial.py --n-series 0 --n-repeats 0 --suite-seeds 0 1 2 3 4 5 6 7 8 9 --jobs 2

Phantom series (`imaging.phantom.make_series`) of hand, forearm and lower-leg films, right and
left, follow-ups repositioned up to ±10° and 10 mm with a new dose (0.6-1.6x) and noise, with
declared changes between consecutive visits. For every consecutive pair:

- **registration error**: the joint centres of the phantom patient (patient space) mapped
  through both films' true poses and through the found transform; the largest distance in
  mm, over joints inside both exposed fields (and over all joints, off-film ones extrapolated);
- **category agreement**: the whole-film change category from calcitrack's detector
  (`imaging.deposits.find_deposits`) registered, matched and compared (`imaging.compare`)
  against the true category (``series.changes``); the same with the truth labels as the
  detections (``oracle``: isolates registration + matching + rules from detection).

Both the categories and the repeatability compare a pair as a follow-up is compared:
registered, with the deposits found again in the pair (`imaging.paired`).

Suite pairs (``--suite-seeds``): the three-visit serial sets of the accuracy suites
(`benchmarks/accuracy.py`, which scores them without registration) compared as follow-ups are,
consecutive visits, the category against the truth's, with the films' own totals beside.

Repeatability: ``stable`` pairs (deposits kept, ±2 % size drift that the truth records) are
films of the same deposits re-acquired in a new position, dose and noise. The error of a
pair is its detected area ratio over its true area ratio, minus 1 (printed beside: the same
from the films' own totals, ``films alone``). The smallest detectable difference
(Bland-Altman repeatability coefficient) is SDD = 1.96 x SD of that error (relative), and
1.96 x SD of the absolute area error (mm²), printed plain and robust (SD from the median
absolute deviation, so that one film where the detector fails outright does not set the
constant); `imaging.config.RepeatabilityConfig` says which give its defaults.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imaging.compare import FilmDeposits, compare_registered
from imaging.config import AnalysisConfig
from imaging.deposits import DepositFindings, find_deposits
from imaging.evaluation import change_category
from imaging.files import atomic_output
from imaging.paired import compared_deposits
from imaging.phantom import FilmGrid, SeriesSpec, build_anatomy, make_series
from imaging.preprocess import robust_sd
from imaging.register import ComparisonRefused, register_films

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "serial.json"
ANATOMIES = ("hand", "forearm", "lower_leg")
CHANGES = (("progression", "improvement"), ("stable", "progression"), ("improvement", "stable"),
           ("new", "resolution"), ("progression", "stable"), ("improvement", "progression"))


@dataclass(frozen=True)
class Detected:
    """calcitrack's findings on a phantom film and its deposits as the comparison takes them."""

    findings: DepositFindings
    deposits: FilmDeposits


def detected(film, config: AnalysisConfig) -> Detected:
    """calcitrack's deposits on a phantom film."""
    findings = find_deposits(film.radiograph, config)
    rows = tuple({"deposit_id": d.label, "area_px": d.area_px, "region": None,
                  "relative_density": d.relative_density} for d in findings.deposits)
    return Detected(findings, FilmDeposits(findings.labels, rows,
                                           film.radiograph.pixel_area_mm2))


def oracle(film) -> FilmDeposits:
    """The truth as if it were the detector's output."""
    rows = tuple({"deposit_id": d.deposit_id, "area_px": d.area_px, "region": None,
                  "relative_density": None} for d in film.deposits)
    return FilmDeposits(film.truth_labels, rows, film.radiograph.pixel_area_mm2)


def _grid(film) -> FilmGrid:
    return FilmGrid(film.radiograph.shape, film.radiograph.spacing_mm[0], film.pose,
                    mirror=film.spec.laterality == "L")


def landmark_errors(series, registration, b: int, f: int) -> tuple[float, float]:
    """Largest joint-centre error (mm) inside both fields, and over all joints."""
    anatomy = build_anatomy(series.spec.anatomy, series.spec.patient_seed)
    joints = np.array([j.centre for j in anatomy.joints])
    base, follow = series.visits[b], series.visits[f]
    rows_b, cols_b = _grid(base).to_film(joints[:, 0], joints[:, 1])
    rows_f, cols_f = _grid(follow).to_film(joints[:, 0], joints[:, 1])
    rows, cols = registration.followup_to_baseline(rows_f, cols_f)
    error = np.hypot(rows - rows_b, cols - cols_b) * base.radiograph.spacing_mm[0]

    def inside(film, r, c):
        ri, ci = np.round(r).astype(int), np.round(c).astype(int)
        ok = (ri >= 0) & (ci >= 0) & (ri < film.field_mask.shape[0]) & (
            ci < film.field_mask.shape[1])
        out = np.zeros(len(r), bool)
        out[ok] = film.field_mask[ri[ok], ci[ok]]
        return out

    seen = inside(base, rows_b, cols_b) & inside(follow, rows_f, cols_f)
    return (float(error[seen].max()) if seen.any() else math.nan), float(error.max())


def compare(base, follow, b_dep, f_dep, registration, config: AnalysisConfig, *,
            found_again: tuple[Detected, Detected] | None = None) -> dict:
    """Whole-film change of a registered pair; with both films' detector findings, on the
    deposits the pair compares (`imaging.paired`: found again, unseen left out)."""
    if found_again is not None:
        b_dep, f_dep = compared_deposits(
            base.radiograph, found_again[0].findings.search, b_dep,
            follow.radiograph, found_again[1].findings.search, f_dep, registration, config)
    whole = compare_registered(b_dep, f_dep, registration, config.compare)[1][0]
    return {"category": whole.category, "baseline_mm2": whole.baseline_area_mm2,
            "followup_mm2": whole.followup_area_mm2, "change_pct": whole.change_pct,
            "n_matched": whole.n_matched, "n_new": whole.n_new, "n_resolved": whole.n_resolved}


def run_series(n_series: int, seed: int, config: AnalysisConfig, report=print) -> list[dict]:
    pairs = []
    for i in range(n_series):
        spec = SeriesSpec(ANATOMIES[i % len(ANATOMIES)], seed=seed * 1000 + i,
                          changes=CHANGES[i % len(CHANGES)],
                          laterality="L" if i % 4 == 3 else "R")
        series = make_series(spec)
        pipeline = [detected(v, config) for v in series.visits]
        for change in series.changes:
            b, f = change.baseline_visit, change.followup_visit
            base, follow = series.visits[b], series.visits[f]
            record = {"anatomy": spec.anatomy, "seed": spec.seed, "laterality": spec.laterality,
                      "pair": [b + 1, f + 1], "declared": change.declared,
                      "truth": change.category, "truth_change_pct": change.change_pct,
                      "true_rotation_deg": follow.pose.rotation_deg - base.pose.rotation_deg}
            start = time.perf_counter()
            try:
                registration = register_films(base.radiograph, follow.radiograph, config,
                                              baseline_deposits=pipeline[b].deposits.labels,
                                              followup_deposits=pipeline[f].deposits.labels)
            except ComparisonRefused as exc:
                record.update(refused=str(exc))
                pairs.append(record)
                report(f"{spec.anatomy:<9} seed {spec.seed} {b + 1}->{f + 1}: REFUSED {exc}")
                continue
            record["registration_s"] = time.perf_counter() - start
            in_field, every = landmark_errors(series, registration, b, f)
            record.update(landmark_error_mm=in_field, landmark_error_all_mm=every,
                          correlation=registration.correlation,
                          bone_dice=registration.bone_dice,
                          pipeline=compare(base, follow, pipeline[b].deposits,
                                           pipeline[f].deposits, registration, config,
                                           found_again=(pipeline[b], pipeline[f])),
                          oracle=compare(base, follow, oracle(base), oracle(follow),
                                         registration, config))
            pairs.append(record)
            report(f"{spec.anatomy:<9} seed {spec.seed} {b + 1}->{f + 1} {change.declared:<11} "
                   f"truth {change.category:<11} pipeline {record['pipeline']['category']:<11} "
                   f"oracle {record['oracle']['category']:<11} landmark {in_field:.2f} mm "
                   f"(all {every:.2f}) corr {registration.correlation:.2f} "
                   f"dice {registration.bone_dice:.2f}")
    return pairs


def run_repeats(n_repeats: int, seed: int, config: AnalysisConfig, report=print) -> list[dict]:
    """Stable pairs: the same deposits re-acquired (new position, dose and noise), compared
    as a follow-up is (registered, deposits found again in the pair); the films' own totals
    are kept beside (``alone``)."""
    repeats = []
    for i in range(n_repeats):
        spec = SeriesSpec(ANATOMIES[i % len(ANATOMIES)], seed=seed * 1000 + 500 + i,
                          changes=("stable",), laterality="L" if i % 4 == 3 else "R")
        series = make_series(spec)
        base, follow = series.visits
        b_det, f_det = detected(base, config), detected(follow, config)
        alone = [sum(r["area_px"] for r in d.deposits.rows) * v.pixel_area_mm2
                 for d, v in ((b_det, base), (f_det, follow))]
        try:
            registration = register_films(base.radiograph, follow.radiograph, config,
                                          baseline_deposits=b_det.deposits.labels,
                                          followup_deposits=f_det.deposits.labels)
            pair = compare(base, follow, b_det.deposits, f_det.deposits, registration, config,
                           found_again=(b_det, f_det))
            b_area, f_area = pair["baseline_mm2"], pair["followup_mm2"]
        except ComparisonRefused as exc:
            report(f"repeat {spec.anatomy:<9} seed {spec.seed}: REFUSED {exc}")
            b_area, f_area = alone
        true_ratio = follow.total_area_mm2 / base.total_area_mm2 if base.total_area_mm2 else 1.0

        def error(b, f):
            return (f / b / true_ratio - 1) if b else None

        record = {"anatomy": spec.anatomy, "seed": spec.seed, "baseline_mm2": b_area,
                  "followup_mm2": f_area, "true_baseline_mm2": base.total_area_mm2,
                  "true_followup_mm2": follow.total_area_mm2,
                  "relative_error": error(b_area, f_area),
                  "absolute_error_mm2": f_area - b_area * true_ratio,
                  "alone_mm2": alone, "alone_relative_error": error(*alone)}
        repeats.append(record)
        alone_error = record["alone_relative_error"]
        report(f"repeat {spec.anatomy:<9} seed {spec.seed}: {b_area:.1f} -> {f_area:.1f} mm² "
               f"(truth {base.total_area_mm2:.1f} -> {follow.total_area_mm2:.1f}); error "
               f"{record['relative_error'] if record['relative_error'] is not None else math.nan:+.1%}"
               f" (films alone {alone[0]:.1f} -> {alone[1]:.1f}, "
               f"{alone_error if alone_error is not None else math.nan:+.1%})")
    return repeats


def run_suite_pairs(seeds, config: AnalysisConfig, *, jobs: int = 1, report=print
                    ) -> list[dict]:
    """Consecutive visits of the accuracy suites' serial sets (of `seeds`), compared as
    follow-ups are; a pair that does not register is recorded as refused."""
    import accuracy

    items = [(seed, item) for seed in seeds for item in accuracy.build_suite(60, seed)
             if item.kind == "series"]
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            done = list(pool.map(_suite_set_pairs, items, [config] * len(items)))
    else:
        done = [_suite_set_pairs(item, config) for item in items]
    pairs = [pair for set_pairs in done for pair in set_pairs]
    for pair in pairs:
        report(f"suite {pair['pair']}: truth {pair['truth']:<11} pipeline {pair['pipeline']:<11}"
               f" films alone {pair['alone']}")
    return pairs


def _suite_set_pairs(seed_item, config: AnalysisConfig) -> list[dict]:
    """The consecutive pairs of one accuracy-suite serial set (a worker's job)."""
    import accuracy

    seed, item = seed_item
    films = [film for _, film in accuracy.generate(item)]
    found = [detected(film, config) for film in films]
    pairs = []
    for v in range(len(films) - 1):
        base, follow = films[v], films[v + 1]
        alone = [sum(r["area_px"] for r in d.deposits.rows) * f.pixel_area_mm2
                 for d, f in ((found[v], base), (found[v + 1], follow))]
        try:
            registration = register_films(base.radiograph, follow.radiograph, config,
                                          baseline_deposits=found[v].deposits.labels,
                                          followup_deposits=found[v + 1].deposits.labels)
            category = compare(base, follow, found[v].deposits, found[v + 1].deposits,
                               registration, config,
                               found_again=(found[v], found[v + 1]))["category"]
        except ComparisonRefused:
            category = "refused"
        pairs.append({"pair": f"{seed}/{item.ids[v]}",
                      "truth": change_category(base.total_area_mm2, follow.total_area_mm2),
                      "pipeline": category, "alone": change_category(*alone)})
    return pairs


def summarise(pairs, repeats) -> dict:
    done = [p for p in pairs if "refused" not in p]
    in_field = [p["landmark_error_mm"] for p in done if not math.isnan(p["landmark_error_mm"])]
    every = [p["landmark_error_all_mm"] for p in done]
    relative = [r["relative_error"] for r in repeats if r["relative_error"] is not None]
    alone = [r["alone_relative_error"] for r in repeats if r["alone_relative_error"] is not None]
    absolute = [r["absolute_error_mm2"] for r in repeats]

    def agreement(key):
        return sum(p[key]["category"] == p["truth"] for p in done) / len(pairs) if pairs else None

    return {
        "n_pairs": len(pairs), "n_refused": len(pairs) - len(done),
        "category_agreement_pipeline": agreement("pipeline"),
        "category_agreement_oracle": agreement("oracle"),
        "landmark_error_mm_in_field_max": max(in_field, default=None),
        "landmark_error_mm_in_field_median": float(np.median(in_field)) if in_field else None,
        "landmark_error_mm_in_field_within_1mm": (sum(e <= 1.0 for e in in_field) / len(in_field)
                                                  if in_field else None),
        "landmark_error_mm_all_max": max(every, default=None),
        "registration_s_median": float(np.median([p["registration_s"] for p in done]))
        if done else None,
        **{f"landmark_error_mm_in_field_max_{anatomy}": max(
            (p["landmark_error_mm"] for p in done if p["anatomy"] == anatomy
             and not math.isnan(p["landmark_error_mm"])), default=None)
           for anatomy in ANATOMIES},
        "registration_s_max": max((p["registration_s"] for p in done), default=None),
        "n_repeats": len(repeats),
        "repeat_area_within_10pct": (sum(abs(e) <= 0.10 for e in relative) / len(relative)
                                     if relative else None),
        "repeat_area_within_10pct_films_alone": (
            sum(abs(e) <= 0.10 for e in alone) / len(alone) if alone else None),
        "repeat_relative_error_sd": float(np.std(relative, ddof=1)) if len(relative) > 1 else None,
        "sdd_relative": 1.96 * float(np.std(relative, ddof=1)) if len(relative) > 1 else None,
        "sdd_absolute_mm2": 1.96 * float(np.std(absolute, ddof=1)) if len(absolute) > 1 else None,
        # robust to the odd film where the detector fails outright (MAD x 1.4826 for the SD)
        "sdd_relative_robust": 1.96 * robust_sd(relative) if len(relative) > 1 else None,
        "sdd_absolute_mm2_robust": 1.96 * robust_sd(absolute) if len(absolute) > 1 else None,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-series", type=int, default=12)
    parser.add_argument("--n-repeats", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--suite-seeds", type=int, nargs="*", default=[],
                        help="also compare the serial sets of these accuracy suites")
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes for the suite pairs")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    config = AnalysisConfig()
    start = time.perf_counter()
    pairs = run_series(args.n_series, args.seed, config)
    repeats = run_repeats(args.n_repeats, args.seed, config)
    suite = run_suite_pairs(args.suite_seeds, config, jobs=args.jobs)
    summary = summarise(pairs, repeats)
    if suite:
        summary.update(
            n_suite_pairs=len(suite),
            suite_category_agreement=sum(p["pipeline"] == p["truth"] for p in suite) / len(suite),
            suite_category_agreement_films_alone=sum(p["alone"] == p["truth"] for p in suite)
            / len(suite),
            n_suite_refused=sum(p["pipeline"] == "refused" for p in suite))
    summary["seconds"] = time.perf_counter() - start
    print()
    targets = {"category_agreement_pipeline": ">= 0.95", "landmark_error_mm_in_field_max": "<= 1",
               "repeat_area_within_10pct": "1.0 (every re-acquisition within ±10 %)"}
    print(f"{'measure':<42} {'value':>10}  target")
    for key, value in summary.items():
        shown = "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else value)
        print(f"{key:<42} {shown:>10}  {targets.get(key, '')}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.json) as tmp:
        Path(tmp).write_text(json.dumps({"summary": summary, "pairs": pairs,
                                         "repeats": repeats, "suite_pairs": suite},
                                        indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
