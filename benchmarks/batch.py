"""Batch throughput and worker memory (issue #7 targets), all measured in one run.

1. A folder of generated phantom films (default 200, hand / forearm / lower leg) mixed with
   every malformed file of ../shared/data/malformed (linked, not copied) and non-DICOM junk
   is analysed with ``--jobs 1``, ``--jobs 2`` and a 2-worker local Dask cluster. Printed:
   films/s for each and the ratios (target >= 1.7x from 1 to 2 jobs on this 2-core machine),
   and whether the three output folders are byte-identical (they must be) with every failure
   recorded.
2. A few 9-megapixel phantom films analysed with ``--jobs 2``: peak resident memory per
   worker (target < 1.5 GB).

Generated films are kept in ``benchmarks/results/batch-films`` for the next run.

Run: ``make bench-batch`` or ``python benchmarks/batch.py [--films N] [--big-films N]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from imaging.config import AnalysisConfig
from imaging.phantom import PhantomSpec, make_film, write_film
from pipelines.batch import Workers, analyze_files

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / "results" / "batch-films"
MALFORMED = ROOT.parent / "shared" / "data" / "malformed"
ANATOMIES = ("hand", "forearm", "lower_leg")
#: A hand film at this spacing is 3333 x 2692 pixels: 9.0 megapixels.
BIG_FILM_SPACING_MM = 0.078


def _make_one(args) -> None:
    folder, name, spec = args
    if not (folder / f"{name}.dcm").exists():
        write_film(make_film(spec), folder, name)
        for truth in folder.glob(f"{name}.*truth*"):  # the benchmark needs the films only
            truth.unlink()


def generate(folder: Path, specs: dict[str, PhantomSpec]) -> None:
    """Write the phantom films that are not there yet, in parallel."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder, name, spec) for name, spec in specs.items()]
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_make_one, jobs))


def mixed_folder(n_films: int, work: Path) -> Path:
    """Phantom films + links to every malformed file + junk, in one tree."""
    films = CACHE / "suite"
    generate(films, {f"{ANATOMIES[i % 3]}_{i:03d}": PhantomSpec(anatomy=ANATOMIES[i % 3], seed=i)
                     for i in range(n_films)})
    folder = work / "archive"
    (folder / "films").mkdir(parents=True)
    for path in sorted(films.glob("*.dcm"))[:n_films]:
        (folder / "films" / path.name).symlink_to(path)
    if MALFORMED.is_dir():
        for path in sorted(p for p in MALFORMED.rglob("*") if p.is_file()):
            target = folder / "malformed" / path.relative_to(MALFORMED)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    else:
        print(f"note: {MALFORMED} not found; running without malformed files", file=sys.stderr)
    junk = folder / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not a film\n")
    (junk / "empty.dcm").write_bytes(b"")
    (junk / "random.bin").write_bytes(os.urandom(65536))
    return folder


def _outputs(out: Path) -> dict[str, bytes]:
    return {path.relative_to(out).as_posix(): path.read_bytes() for path in sorted(out.rglob("*"))
            if path.is_file() and not path.name.startswith("calcitrack.sqlite")}


def run_modes(folder: Path, work: Path) -> None:
    modes = {"--jobs 1": Workers(jobs=1), "--jobs 2": Workers(jobs=2),
             "--dask-local 2": Workers(dask_local=2)}
    results = {}
    print(f"{'mode':<16}{'inputs':>8}{'ok':>6}{'failed':>8}{'skipped':>9}{'wall s':>9}"
          f"{'films/s':>9}{'peak MB/worker':>16}")
    for name, workers in modes.items():
        out = work / name.strip("-").replace(" ", "")
        start = time.perf_counter()
        summary = analyze_files([folder], out, AnalysisConfig(), workers=workers)
        wall = time.perf_counter() - start
        rate = summary.n_ok / wall  # films analysed; failures of malformed files are quick
        results[name] = (rate, _outputs(out), summary)
        peak = "-" if summary.peak_worker_memory_mb is None else f"{summary.peak_worker_memory_mb:.0f}"
        print(f"{name:<16}{summary.n_inputs:>8}{summary.n_ok:>6}{summary.n_failed:>8}"
              f"{summary.n_skipped:>9}{wall:>9.1f}{rate:>9.2f}{peak:>16}", flush=True)
    base = results["--jobs 1"][0]
    print(f"speed-up --jobs 2 / --jobs 1: {results['--jobs 2'][0] / base:.2f}x (target >= 1.7x); "
          f"Dask 2 workers / --jobs 1: {results['--dask-local 2'][0] / base:.2f}x")
    identical = (results["--jobs 1"][1] == results["--jobs 2"][1] == results["--dask-local 2"][1])
    print(f"outputs identical across the three modes: {'yes' if identical else 'NO'}")
    with open(work / "jobs1" / "images.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    unexplained = [row for row in rows if row["status"] == "error" and not row["error"]]
    print(f"failures recorded with a reason: {sum(r['status'] == 'error' for r in rows)} "
          f"({len(unexplained)} without one)")


def big_film_memory(n_films: int, work: Path) -> None:
    films = CACHE / "big"
    generate(films, {f"hand_9mp_{i}": PhantomSpec(anatomy="hand", seed=1000 + i,
                                                   spacing_mm=BIG_FILM_SPACING_MM)
                     for i in range(n_films)})
    paths = sorted(films.glob("*.dcm"))[:n_films]
    start = time.perf_counter()
    summary = analyze_files(paths, work / "big", AnalysisConfig(), workers=Workers(jobs=2))
    wall = time.perf_counter() - start
    with open(work / "big" / "images.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    megapixels = int(row["rows"]) * int(row["cols"]) / 1e6
    print(f"{summary.n_ok} films of {megapixels:.1f} megapixels with --jobs 2 in {wall:.1f} s: "
          f"peak memory per worker {summary.peak_worker_memory_mb:.0f} MB (target < 1536 MB)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=200, help="phantom films in the folder")
    parser.add_argument("--big-films", type=int, default=4, help="9-megapixel films")
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}")
    work = Path(tempfile.mkdtemp(prefix="calcitrack-batch-"))
    try:
        run_modes(mixed_folder(args.films, work), work)
        big_film_memory(args.big_films, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
