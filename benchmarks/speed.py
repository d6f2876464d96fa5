"""Speed and memory of the analysis of the real 2500 x 2048 hand film (issue #4 target).

Target: analysis (everything after decoding) <= 1.0 s on one core of this machine, with a
per-stage breakdown and the ratio to the decode time measured in the same run; peak memory
of the whole process under 1 GB for that film.

Run: `make bench-speed` or `python benchmarks/speed.py [--film PATH] [--repeat N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

# One core: pin the process and keep every library to one thread *before* importing them.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import cv2  # noqa: E402

cv2.setNumThreads(1)

from imaging import read_radiograph  # noqa: E402
from imaging.config import AnalysisConfig  # noqa: E402
from imaging.deposits import find_deposits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILM = ROOT.parent / "shared" / "data" / "radiographs" / "hand_pa_cr_j2k_lossless.dcm"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--film", type=Path, default=DEFAULT_FILM)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "speed.json")
    args = parser.parse_args(argv)
    if not args.film.is_file():
        print(f"film not found: {args.film} (the ../shared/data folder beside the project)",
              file=sys.stderr)
        return 2

    config = AnalysisConfig()
    decode, analyse, stages = [], [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        film = read_radiograph(args.film)
        decode.append(time.perf_counter() - start)
        timings: dict[str, float] = {}
        start = time.perf_counter()
        findings = find_deposits(film, config, timings=timings)
        analyse.append(time.perf_counter() - start)
        stages.append(timings)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    median_decode, median_analyse = statistics.median(decode), statistics.median(analyse)
    breakdown = {name: statistics.median(t[name] for t in stages) for name in stages[0]}
    result = {
        "film": args.film.name,
        "shape": list(film.shape),
        "cores": 1,
        "repeat": args.repeat,
        "decode_s": round(median_decode, 4),
        "analysis_s": round(median_analyse, 4),
        "analysis_to_decode_ratio": round(median_analyse / median_decode, 3),
        "stages_s": {name: round(value, 4) for name, value in breakdown.items()},
        "deposits_found": len(findings.deposits),
        "peak_rss_mb": round(peak_mb, 1),
        "targets": {"analysis_s <= 1.0": median_analyse <= 1.0, "peak_rss_mb < 1024": peak_mb < 1024},
    }
    print(f"{args.film.name} {film.shape[0]}x{film.shape[1]}, one core, median of {args.repeat}")
    print(f"  decode    {median_decode:7.3f} s")
    print(f"  analysis  {median_analyse:7.3f} s   (target <= 1.0 s; {median_analyse / median_decode:.2f}x decode)")
    for name, value in breakdown.items():
        print(f"    {name:<13}{value:7.3f} s")
    print(f"  peak RSS  {peak_mb:7.0f} MB  (target < 1024 MB)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
