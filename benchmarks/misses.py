"""Why the detector misses deposits and where its false ones lie, on the accuracy suite.

Each missed deposit is put in the first class that explains it: small or faint (outside the
issue's targets), outside the body mask, inside the bone mask (over the phantom's true bone, or
off it: soft tissue the bone mask took in), in an excluded region, in the band kept clear
beside bone, within `NEAR_MM` of an excluded region (whose candidates are dropped), or missed
in soft tissue. Those of the last three classes are told apart by the detector's stage that
lost them: no candidate reached them, a candidate outlined too little of them, or a named
test of the selection dropped it (`imaging.deposits.rejection`). Each false deposit is
near bone, near the skin, or in soft tissue. The bone mask's own errors, behind both (deposits
taken in, bone left out in the soft tissue), are summed per anatomy. Run:
`python benchmarks/misses.py [--n-films 60] [--seed 0]`.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import build_suite, generate  # noqa: E402

from imaging.anatomy import disk  # noqa: E402
from imaging.config import AnalysisConfig  # noqa: E402
from imaging.deposits import (detection_rules, keep_deposits, outline_candidates,  # noqa: E402
                              prepare_deposit_search, rejection)
from imaging.evaluation import match_deposits  # noqa: E402

NEAR_MM = 2.0
#: Bone-mask errors count only this far (mm) beyond the other outline (edge blur is no error).
OUTLINE_TOLERANCE_MM = 0.5
#: Miss classes in the searched soft tissue or its margins, explained by `lost_at`.
SEARCHED_CLASSES = ("beside bone", "beside excluded", "missed in soft tissue")


def lost_at(inside: np.ndarray, hits: list[int], candidates, detection,
            pixel_area_mm2: float) -> str:
    """The stage at which the detector lost a deposit whose truth is `inside`; `hits` are
    the candidates that match it (`imaging.evaluation.match_deposits`)."""
    if not hits:
        return "outlined too little" if (candidates.labels[inside] > 0).any() else "no candidate"
    overlap = np.bincount(candidates.labels[inside], minlength=max(hits) + 1)
    label = max(hits, key=lambda h: (overlap[h], h))
    deposit = next(d for d in candidates.deposits if d.label == label)
    why = rejection(deposit, candidates.labels, detection, pixel_area_mm2=pixel_area_mm2)
    return f"dropped: {why}" if why else "kept, then outlined off it"


def classify_film(film, findings, candidates, config: AnalysisConfig):
    """(misses, false-deposit classes, bone-mask errors) of one phantom film analysed with
    `config`; `candidates` are the detector's before its selection. A miss is (its class,
    the stage that lost it, `lost_at`, for the classes in searched tissue or else None, the
    deposit)."""
    search = findings.search
    detection = detection_rules(config, film.radiograph.metadata.body_part)
    body, bone, searched = search.source_body, search.source_bone, search.source_region
    excluded = search.grid.mask_to_source(search.anatomy.excluded)
    truth, predicted = film.truth_labels, findings.labels
    pairs, _, _ = match_deposits(truth, predicted)
    found, matched = {t for t, _ in pairs}, {p for _, p in pairs}
    candidate_hits = collections.defaultdict(list)
    for t, c in match_deposits(truth, candidates.labels)[0]:
        candidate_hits[t].append(c)
    near = disk(2 * NEAR_MM / film.radiograph.spacing_mm[0] + 1)
    near_bone = cv2.dilate(bone.astype(np.uint8), near) > 0
    near_skin = cv2.dilate((~body).astype(np.uint8), near) > 0
    beside_excluded = cv2.dilate(excluded.astype(np.uint8), near) > 0
    misses = []
    for deposit in film.deposits:
        if deposit.deposit_id in found:
            continue
        inside = truth == deposit.deposit_id
        if deposit.area_mm2 < 1 or deposit.cnr < 3:
            why = "small or faint"
        elif not body[inside].any():
            why = "outside body"
        elif bone[inside].mean() > 0.5:
            # On the phantom's true bone, or soft tissue the bone mask took in?
            why = ("in bone mask, on bone" if film.bone_mask[inside].mean() > 0.5
                   else "in bone mask, off bone")
        elif excluded[inside].mean() > 0.5:
            why = "excluded"
        elif searched[inside].mean() < 0.5:
            why = "beside bone"
        elif beside_excluded[inside].any():
            # Candidates reaching an exclusion band are dropped as artefacts (on the
            # phantoms, e.g. where two dense deposits overlap beyond the metal level).
            why = "beside excluded"
        else:
            why = "missed in soft tissue"
        lost = (lost_at(inside, candidate_hits[deposit.deposit_id], candidates, detection,
                        search.grid.source_pixel_area_mm2)
                if why in SEARCHED_CLASSES else None)
        misses.append((why, lost, deposit))
    false = []
    for deposit in findings.deposits:
        if deposit.label in matched or (truth[predicted == deposit.label] > 0).any():
            continue
        inside = predicted == deposit.label
        where = ("near bone" if near_bone[inside].mean() > 0.5 else
                 "near skin" if near_skin[inside].mean() > 0.5 else "soft tissue")
        false.append((where, deposit))
    return misses, false, bone_mask_errors(film, bone, excluded, config.anatomy.joint_space_mm)


def bone_mask_errors(film, bone: np.ndarray, excluded: np.ndarray, joint_space_mm: float
                     ) -> tuple[float, float]:
    """(soft tissue the bone mask takes in, true bone it leaves out), mm², in the exposed
    field outside the `excluded` regions and farther than `OUTLINE_TOLERANCE_MM` from the
    other outline. Joint spaces, which the mask bridges by design, do not count: gaps between
    true bones up to twice `joint_space_mm` (the mask's closing acts on its own outline, a
    little wider than the true one)."""
    spacing = film.radiograph.spacing_mm[0]
    tolerance = disk(2 * OUTLINE_TOLERANCE_MM / spacing + 1)
    truth = (film.bone_mask & film.field_mask & ~excluded).astype(np.uint8)
    bridged = cv2.morphologyEx(truth, cv2.MORPH_CLOSE, disk(2 * joint_space_mm / spacing))
    taken_in = bone & film.field_mask & ~excluded & ~(cv2.dilate(bridged, tolerance) > 0)
    left_out = (truth > 0) & ~(cv2.dilate(bone.astype(np.uint8), tolerance) > 0)
    return (float(taken_in.sum() * film.pixel_area_mm2),
            float(left_out.sum() * film.pixel_area_mm2))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-films", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    miss_counts, false_counts = collections.Counter(), collections.Counter()
    by_morphology, target_cell = collections.Counter(), collections.Counter()
    bone_errors = collections.defaultdict(list)
    config = AnalysisConfig()
    for item in build_suite(args.n_films, args.seed):
        for film_id, film in generate(item):
            search = prepare_deposit_search(film.radiograph, config)
            candidates = outline_candidates(film.radiograph, search, config)
            findings = keep_deposits(film.radiograph, search, candidates, config)
            misses, false, errors = classify_film(film, findings, candidates, config)
            bone_errors[film.spec.anatomy].append(errors)
            for cause, lost, deposit in misses:
                why = f"{cause} ({lost})" if lost else cause
                miss_counts[why] += 1
                if cause != "small or faint":
                    by_morphology[cause, deposit.morphology] += 1
                    if deposit.cnr >= 5:
                        target_cell[why] += 1
                    print(f"miss  {film_id:<16} {deposit.morphology:<13} "
                          f"{deposit.area_mm2:6.1f} mm²  CNR {deposit.cnr:5.1f}  {why}")
            for where, deposit in false:
                false_counts[where] += 1
                print(f"false {film_id:<16} deposit {deposit.label:<3} "
                      f"{deposit.area_px} px  CNR {deposit.cnr:5.1f}  {where}")
    print("\nmissed deposits by cause:", dict(miss_counts.most_common()))
    print("of them, CNR >= 5 and 1 mm² or more:", dict(target_cell.most_common()))
    print("missed by cause and morphology:",
          {f"{why}/{kind}": n for (why, kind), n in by_morphology.most_common()})
    print("false deposits by place:", dict(false_counts.most_common()))
    print(f"bone mask (more than {OUTLINE_TOLERANCE_MM} mm off the true outline), per film:")
    for anatomy, rows in sorted(bone_errors.items()):
        taken_in, left_out = np.array(rows).T
        print(f"  {anatomy:<10} soft tissue taken in: median {np.median(taken_in):6.0f} mm², "
              f"max {taken_in.max():6.0f};  bone left out: median {np.median(left_out):5.0f} mm², "
              f"max {left_out.max():5.0f}   ({len(rows)} films)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
