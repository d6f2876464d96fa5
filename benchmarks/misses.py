"""Why the detector misses deposits and where its false ones lie, on the accuracy suite.

Each missed deposit is put in the first class that explains it: small or faint (outside the
issue's targets), outside the body mask, inside the bone mask (over the phantom's true bone, or
off it: soft tissue the bone mask took in), in an excluded region, in the band kept clear
beside bone, or missed in soft tissue (the detector saw it and passed). Each
false deposit is near bone, near the skin, or in soft tissue. Run:
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
from imaging.deposits import find_deposits, search_region  # noqa: E402

NEAR_MM = 2.0


def classify_film(film, findings):
    """(miss classes, false-deposit classes) of one phantom film."""
    grid, anatomy = findings.grid, findings.anatomy

    def source(mask):
        return grid.mask_to_source(mask)

    body, bone = source(anatomy.body), source(anatomy.bone)
    excluded, searched = source(anatomy.excluded), source(search_region(grid, anatomy))
    truth, predicted = film.truth_labels, findings.labels
    near = disk(2 * NEAR_MM / film.radiograph.spacing_mm[0] + 1)
    near_bone = cv2.dilate(bone.astype(np.uint8), near) > 0
    near_skin = cv2.dilate((~body).astype(np.uint8), near) > 0
    misses, matched = [], set()
    for deposit in film.deposits:
        inside = truth == deposit.deposit_id
        hits = {h for h in np.unique(predicted[inside]) if h
                and (predicted[inside] == h).sum() >= 0.2 * min(inside.sum(), (predicted == h).sum())}
        matched |= hits
        if hits:
            continue
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
        else:
            why = "missed in soft tissue"
        misses.append((why, deposit))
    false = []
    for deposit in findings.deposits:
        if deposit.label in matched or (truth[predicted == deposit.label] > 0).any():
            continue
        inside = predicted == deposit.label
        where = ("near bone" if near_bone[inside].mean() > 0.5 else
                 "near skin" if near_skin[inside].mean() > 0.5 else "soft tissue")
        false.append((where, deposit))
    return misses, false


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-films", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    miss_counts, false_counts = collections.Counter(), collections.Counter()
    by_morphology = collections.Counter()
    for item in build_suite(args.n_films, args.seed):
        for film_id, film in generate(item):
            misses, false = classify_film(film, find_deposits(film.radiograph))
            for why, deposit in misses:
                miss_counts[why] += 1
                if why != "small or faint":
                    by_morphology[why, deposit.morphology] += 1
                    print(f"miss  {film_id:<16} {deposit.morphology:<13} "
                          f"{deposit.area_mm2:6.1f} mm²  CNR {deposit.cnr:5.1f}  {why}")
            for where, deposit in false:
                false_counts[where] += 1
                print(f"false {film_id:<16} deposit {deposit.label:<3} "
                      f"{deposit.area_px} px  CNR {deposit.cnr:5.1f}  {where}")
    print("\nmissed deposits by cause:", dict(miss_counts.most_common()))
    print("missed by cause and morphology:",
          {f"{why}/{kind}": n for (why, kind), n in by_morphology.most_common()})
    print("false deposits by place:", dict(false_counts.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
