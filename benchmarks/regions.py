"""Regions, per-region burden and density scores measured against phantom truth.

Prints a table. For each anatomy (hand, forearm, lower leg) and seed:

- region assignment: the region `assign_deposits` gives each deposit against the truth
  deposit's ``region``, (a) with the truth mask as the "detection" (isolates the region
  logic; the film's anatomy still comes from the detector) and (b) for the real detector's
  deposits matched to a truth deposit;
- per-region area: the summed area per region against the truth's, (a) and (b);
- density scores under a change of exposure only: the same scene and deposits re-exposed
  (new noise) at dose 0.8 and 1.2 (the +-20 % of the serial-film targets) and, as a harder
  check, at 0.5 and 2; film-level density-weighted score and integrated density against
  dose 1, with the truth mask (a), with the detector (b) and, at +-20 %, with the detector
  compared as a follow-up is (c: registered, deposits found again in the pair,
  `imaging.paired`; the scores of ``changes.csv``);
- morphology (stone/mousse/plate/net truth deposits, truth mask and matched detections)
  and periarticular flags.

Run: ``.venv/bin/python benchmarks/regions.py [--films N] [--first SEED]`` (default 8 films
per anatomy from seed 0; the morphology thresholds were chosen on seeds 0-7).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imaging.burden import MORPHOLOGY_CLASSES, assign_deposits, region_burden  # noqa: E402
from imaging.compare import FilmDeposits, compare_registered  # noqa: E402
from imaging.config import AnalysisConfig  # noqa: E402
from imaging.deposits import DepositFindings, find_deposits, measure_on_film  # noqa: E402
from imaging.evaluation import match_deposits  # noqa: E402
from imaging.export import Provenance, deposit_rows  # noqa: E402
from imaging.phantom import PhantomSpec, make_film, reexpose  # noqa: E402
from imaging.config import RegionConfig  # noqa: E402
from imaging.paired import compared_deposits  # noqa: E402
from imaging.regions import region_map  # noqa: E402
from imaging.register import register_films  # noqa: E402

ANATOMIES = ("hand", "forearm", "lower_leg")
#: Re-exposures: the serial targets' +-20 % and a harder halving and doubling.
DOSE_PAIRS = {"+-20%": (0.8, 1.2), "x0.5,x2": (0.5, 2.0)}


def truth_findings(film, findings: DepositFindings) -> DepositFindings:
    """The detector's search (grid, anatomy, background) with the truth label image as the
    deposits."""
    labels = film.truth_labels.astype(np.int32)
    deposits = measure_on_film(film.radiograph, findings.search, labels)
    return dataclasses.replace(findings, labels=labels, deposits=deposits)


def analyse(film, findings, config):
    regions = region_map(film.radiograph, findings, RegionConfig())
    infos = assign_deposits(regions, findings, film.radiograph)
    rows = region_burden(regions, findings, infos, calibrated=True)
    return regions, infos, rows


def film_scores(rows):
    total = rows[-1]
    return total["density_score_mm2"] or 0.0, total["integrated_density_mm2"] or 0.0


def compared_scores(film, findings, infos, other, other_findings, other_infos, config):
    """Both films' density-weighted score and integrated density (mm²) as ``calcitrack
    track`` compares them: registered, deposits found again in the pair."""
    provenance = Provenance.of(config)

    def deposits(f, found, infos_):
        rows = deposit_rows("film", f.radiograph, found, provenance, infos_)
        return FilmDeposits(found.labels, tuple(rows), f.pixel_area_mm2)

    own, others = deposits(film, findings, infos), deposits(other, other_findings, other_infos)
    registration = register_films(film.radiograph, other.radiograph, config,
                                  baseline_deposits=own.labels, followup_deposits=others.labels)
    own, others = compared_deposits(film.radiograph, findings.search, own, other.radiograph,
                                    other_findings.search, others, registration, config)
    whole = compare_registered(own, others, registration, config.compare)[1][0]
    return ((whole.baseline_density_score or 0.0, whole.baseline_integrated_density or 0.0),
            (whole.followup_density_score or 0.0, whole.followup_integrated_density or 0.0))


def rel(a, b):
    return abs(a - b) / b if b else (0.0 if a == 0 else float("inf"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=8, help="films per anatomy")
    parser.add_argument("--first", type=int, default=0,
                        help="seed of the first film (8 and up: films the rules were not "
                             "chosen on)")
    args = parser.parse_args(argv)
    config = AnalysisConfig()
    print(f"{'anatomy':10} {'assign(a)':>10} {'assign(b)':>10} {'area<=10%(a)':>13} "
          f"{'area<=10%(b)':>13} {'s/film':>7}")
    overall = collections.Counter()
    confusion = {"truth mask": collections.Counter(), "detector": collections.Counter()}
    periarticular = collections.Counter()
    failures = []
    for anatomy in ANATOMIES:
        c = collections.Counter()
        # dose pair -> score ("dS" density-weighted, "dI" integrated) and mask -> changes
        dose_change = {pair: collections.defaultdict(list) for pair in DOSE_PAIRS}
        region_err_a, region_err_b = [], []
        seconds = []
        for seed in range(args.first, args.first + args.films):
            film = make_film(PhantomSpec(anatomy=anatomy, seed=seed, spacing_mm=0.2,
                                         laterality="L" if seed % 2 else "R"))
            findings = find_deposits(film.radiograph, config)
            if not findings.anatomy.body.any():
                failures.append(f"{anatomy} seed {seed}: detector found no body (skipped)")
                continue
            truth = truth_findings(film, findings)
            start = time.perf_counter()
            regions, infos_a, rows_a = analyse(film, truth, config)
            seconds.append(time.perf_counter() - start)
            _, infos_b, rows_b = analyse(film, findings, config)
            by_label = {d.deposit_id: d for d in film.deposits}
            # (a) truth mask as detection
            for info in infos_a:
                t = by_label[info.label]
                c["a_total"] += 1
                c["a_ok"] += info.region == t.region
                if t.morphology in MORPHOLOGY_CLASSES:
                    confusion["truth mask"][t.morphology, info.morphology] += 1
                periarticular[(t.periarticular, info.periarticular)] += 1
            # (b) detector deposits matched to truth
            pairs, _, _ = match_deposits(film.truth_labels, findings.labels)
            info_of = {i.label: i for i in infos_b}
            for truth_label, predicted in _pairs(pairs):
                t = by_label[truth_label]
                c["b_total"] += 1
                c["b_ok"] += info_of[predicted].region == t.region
                if t.morphology in MORPHOLOGY_CLASSES:
                    confusion["detector"][t.morphology, info_of[predicted].morphology] += 1
            true_area = collections.Counter()
            for d in film.deposits:
                true_area[d.region] += d.area_mm2
            for rows, errors in ((rows_a, region_err_a), (rows_b, region_err_b)):
                got = {r["region"]: r["area_mm2"] for r in rows[:-1]}
                for name, area in true_area.items():
                    errors.append(rel(got.get(name, 0.0), area))
            # dose change only
            base_a, base_b = film_scores(rows_a), film_scores(rows_b)
            for pair, doses in DOSE_PAIRS.items():
                for dose in doses:
                    other = reexpose(film, dose)
                    other_findings = find_deposits(other.radiograph, config)
                    if not other_findings.anatomy.body.any():
                        continue
                    other_truth = truth_findings(other, other_findings)
                    _, other_infos, other_rows = analyse(other, other_findings, config)
                    changes = [("a", base_a, film_scores(analyse(other, other_truth, config)[2])),
                               ("b", base_b, film_scores(other_rows))]
                    if pair == "+-20%":
                        changes.append(("c", *compared_scores(film, findings, infos_b, other,
                                                              other_findings, other_infos,
                                                              config)))
                    for mask, base, scores in changes:
                        dose_change[pair]["dS", mask].append(rel(scores[0], base[0]))
                        dose_change[pair]["dI", mask].append(rel(scores[1], base[1]))
        overall.update(c)
        print(f"{anatomy:10} {c['a_ok']:>4}/{c['a_total']:<5} {c['b_ok']:>4}/{c['b_total']:<5} "
              f"{np.mean(np.array(region_err_a) <= 0.1):>13.0%} "
              f"{np.mean(np.array(region_err_b) <= 0.1):>13.0%} {np.mean(seconds):>7.2f}")
        print(f"{'':10} median region area error (a) {np.median(region_err_a):.1%}, "
              f"(b) {np.median(region_err_b):.1%}")
        for pair, changes in dose_change.items():
            print(f"{'':10} dose {pair:8} score change median (max): " + ", ".join(
                f"{score}({mask}) {np.median(v):.1%} ({max(v):.1%})"
                for (score, mask), v in sorted(changes.items(), key=lambda kv: kv[0][::-1])))
    print(f"\nregion assignment: truth mask {overall['a_ok']}/{overall['a_total']} = "
          f"{overall['a_ok'] / max(overall['a_total'], 1):.1%}; detector (matched) "
          f"{overall['b_ok']}/{overall['b_total']} = {overall['b_ok'] / max(overall['b_total'], 1):.1%}")
    for masks, counts in confusion.items():
        print(f"morphology (truth -> assigned, {masks}):")
        for truth in MORPHOLOGY_CLASSES:
            row = {m: counts[truth, m] for m in MORPHOLOGY_CLASSES}
            n = sum(row.values())
            print(f"  {truth:7} n={n:3}  " + "  ".join(f"{m} {v:3}" for m, v in row.items())
                  + (f"   correct {row[truth] / n:.0%}" if n else ""))
    print("periarticular (truth, flagged): " + ", ".join(
        f"{k}: {v}" for k, v in sorted(periarticular.items())))
    for failure in failures:
        print("note:", failure)
    return 0


def _pairs(pairs):
    """(truth label, predicted label) pairs from `match_deposits`, best overlap per truth."""
    out = {}
    for item in pairs:
        t, p = item[0], item[1]
        out.setdefault(t, p)
    return list(out.items())


if __name__ == "__main__":
    raise SystemExit(main())
