"""What limits the detector's significance: quantum noise or soft-tissue clutter.

The significance stage divides the excess over the modelled background, smoothed at each
scale, by its local robust spread. That spread holds quantum noise, which falls as
1 / sqrt(dose), and clutter (what the background model leaves of the soft tissue's own
structure), which does not. Each negative film of the accuracy suite is analysed at its own
dose and re-exposed at the highest dose the phantom allows (same patient, pose and masks);
from the two spreads, the share of the spread's variance that is clutter follows:
``clutter² = (D s_D² - d s_d²) / (D - d)``. Run: `python benchmarks/clutter.py [--seed 0]`.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import build_suite, generate  # noqa: E402

from imaging.anatomy import find_anatomy  # noqa: E402
from imaging.config import AnalysisConfig  # noqa: E402
from imaging.deposits import contrast_to_noise, search_region, smoothed_excess  # noqa: E402
from imaging.phantom.film import reexpose  # noqa: E402
from imaging.preprocess import robust_sd, to_analysis_grid  # noqa: E402

#: The phantom's highest dose.
HIGH_DOSE = 20.0


def scale_spreads(film, config: AnalysisConfig, anatomy=None):
    """(anatomy, robust spread of the smoothed excess at each detection scale) of one film;
    `anatomy` from another exposure of the same patient keeps the masks identical."""
    grid = to_analysis_grid(film.radiograph, config.grid)
    if anatomy is None:
        anatomy = find_anatomy(grid, config.anatomy, film.radiograph.metadata.body_part)
    region = search_region(grid, anatomy)
    background, _ = contrast_to_noise(grid, anatomy, config, region=region)
    excess = np.where(region, grid.values - background, 0).astype(np.float32)
    weights = region.astype(np.float32)
    spreads = [robust_sd(smoothed_excess(excess, weights, grid, scale)[region])
               for scale in config.detection.scales_mm]
    return anatomy, np.array(spreads)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-films", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = AnalysisConfig()
    scales = config.detection.scales_mm
    shares = collections.defaultdict(list)
    print(f"{'film':<16}{'dose':>6}   spread at own dose / at dose {HIGH_DOSE:g}, per scale "
          f"{', '.join(f'{s:g}' for s in scales)} mm")
    for item in build_suite(args.n_films, args.seed):
        if not item.ids[0].startswith("n"):
            continue
        for film_id, film in generate(item):
            dose = film.spec.dose
            anatomy, own = scale_spreads(film, config)
            _, high = scale_spreads(reexpose(film, HIGH_DOSE), config, anatomy)
            clutter = np.clip((HIGH_DOSE * high ** 2 - dose * own ** 2) / (HIGH_DOSE - dose),
                              0, None)
            share = np.minimum(clutter / own ** 2, 1.0)
            shares[film.spec.anatomy].append(share)
            print(f"{film_id:<16}{dose:6.2f}   "
                  + "  ".join(f"{a:7.1f}/{b:<7.1f}" for a, b in zip(own, high)))
    print("\nshare of the spread's variance that is clutter, not quantum noise (median):")
    for anatomy, rows in sorted(shares.items()):
        median = np.median(np.array(rows), axis=0)
        print(f"  {anatomy:<10} " + "  ".join(f"{s:g} mm: {m:4.0%}" for s, m in zip(scales, median))
              + f"   ({len(rows)} films)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
