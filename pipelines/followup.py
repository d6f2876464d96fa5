"""Serial films: ``calcitrack track`` and ``calcitrack followup``.

``calcitrack track BASELINE FOLLOWUP... --out DIR`` compares explicit films: each follow-up
with the baseline and, from the second follow-up on, with the previous film (in the order
given). ``calcitrack followup FOLDER... --out DIR`` finds the films below the folders, groups
them by pseudonymous patient key, laterality, body part and view, orders each group by
study date and does the same within each group (films without a patient key or study date
cannot be placed in a series: they are reported and left out).

Each pair is registered on bone (`imaging.register`), each film is looked at again where the
other has deposits and where it shows more calcium than the other (`imaging.paired`: deposits
found again; `imaging.subtraction`), its deposits are matched and its burden compared per
region (`imaging.compare`). A pair that does not show the same anatomy,
or does not align, is *refused*: its ``changes.csv`` row says ``status = refused`` and why;
it is never compared silently.

Outputs in DIR:

- ``changes.csv`` — per compared pair, one row ``region = all`` then one per named region:
  areas, counts, densities, ``change_pct``, ``category`` (progression > +25 %, improvement
  < -25 %, else stable), ``within_repeatability``, match counts, ``response`` (baseline
  references only: the response as of that follow-up) and the registration's figures;
- ``matches.csv`` — one row per linked deposit pair, and per new or resolved deposit; a
  deposit found again (not in ``deposits.csv``, numbered after the film's own) is flagged,
  and one found only where the films differ is put in the region at its centroid;
- ``images.csv``, ``deposits.csv``, ``regions.csv``, ``masks/<image_id>.png`` — as
  ``calcitrack analyze``;
- ``plots/<series>.png`` — burden over time per series, one line per region;
- ``report.html`` — the films and, once compared, each comparison and plot
  (`pipelines.report`);
- ``calcitrack.sqlite`` (or ``--db``) — the films and the comparisons (`pipelines.store`).

Exit codes: 0 every pair compared, 1 some films failed or pairs were refused, 2 usage.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from imaging import CalcitrackError, read_radiograph
from imaging.compare import (
    ALL_REGIONS,
    FilmDeposits,
    compare_registered,
    response_category,
)
from imaging.config import AnalysisConfig, load_config
from imaging.deposits import DepositSearch, prepare_deposit_search
from imaging.export import Provenance, Status, write_csv
from imaging.files import atomic_output
from imaging.paired import compared_deposits
from imaging.radiograph import Radiograph
from imaging.register import register_films
from imaging.regions import RegionMap, UserRegions, region_map

from .analyze import add_batch_arguments, batch_options, run_guarded
from .arguments import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE
from .batch import RunSummary, analyze_files
from .film import FilmResult
from .inputs import InputFile, image_ids
from .report import write_run_report
from .store import DATABASE_NAME, ResultsStore

CHANGE_COLUMNS = (
    "reference", "baseline_image_id", "followup_image_id", "patient_key", "laterality",
    "body_part", "view_position", "baseline_study_date", "followup_study_date", "status",
    "reason", "region", "units", "baseline_n_deposits", "followup_n_deposits", "count_change",
    "baseline_area_px", "followup_area_px", "baseline_area_mm2", "followup_area_mm2",
    "change_area", "change_pct", "category", "within_repeatability",
    "smallest_detectable_difference", "baseline_density", "followup_density",
    "density_change", "baseline_density_score", "followup_density_score",
    "density_score_change_pct", "baseline_integrated_density", "followup_integrated_density",
    "integrated_density_change_pct", "n_matched", "n_persistent", "n_grown", "n_shrunk",
    "n_new", "n_resolved", "response", "baseline_found_again_px", "followup_found_again_px",
    "baseline_n_unseen", "followup_n_unseen", "baseline_unseen_px", "followup_unseen_px",
    "registration_rotation_deg", "registration_scale",
    "registration_shift_row_mm", "registration_shift_col_mm", "registration_correlation",
    "registration_bone_dice", "calcitrack_version", "config_hash",
)
"""Columns of ``changes.csv``. ``change_area``, ``smallest_detectable_difference`` and the
density scores (density-weighted, integrated: `imaging.burden`) are in ``units`` (mm2, or px
= baseline pixels for uncalibrated films); ``reference`` is baseline or previous. Areas,
counts and scores include the deposits found again and the extent shared from the other
film (`imaging.paired`); ``*_found_again_px`` say how many of each film's own pixels that
added."""

MATCH_COLUMNS = (
    "reference", "baseline_image_id", "followup_image_id", "group", "baseline_deposit_id",
    "followup_deposit_id", "status", "region", "baseline_area_px", "followup_area_px",
    "baseline_area_mm2", "followup_area_mm2", "group_change_pct", "baseline_found_again",
    "followup_found_again", "calcitrack_version", "config_hash",
)
"""Columns of ``matches.csv``: one row per linked pair, new, resolved or unseen deposit
(``unseen``: where the other film is not searched, left out of the comparison); ``group``
numbers the deposits that were matched together (a split or merge has several rows)."""

SERIES_KEYS = ("patient_key", "laterality", "body_part", "view_position")


@dataclass(frozen=True, eq=False)
class AnalysedFilm:
    """One input film with its analysis (and its pixels, read on demand for registration)."""

    item: InputFile
    result: FilmResult
    user_spacing: tuple[float, float] | None = None
    pseudonym_key: str | None = None
    content_hash: str | None = None
    """sha256 of the file, as the batch recorded it (finds its row in the store)."""
    user_regions: UserRegions | None = None
    """The study's own regions the film was analysed with (None: the automatic ones)."""

    @property
    def image_id(self) -> str:
        return self.item.image_id

    @property
    def row(self) -> dict:
        return self.result.image

    @property
    def ok(self) -> bool:
        return self.result.status is Status.OK


@dataclass(frozen=True, eq=False)
class PairOutcome:
    """The comparison of two films: rows for ``changes.csv`` and ``matches.csv``."""

    baseline: AnalysedFilm
    followup: AnalysedFilm
    reference: str
    changes: tuple[dict, ...]
    matches: tuple[dict, ...] = ()
    refused: str | None = None


@dataclass(frozen=True)
class SerialSummary:
    """Counts of one serial run."""

    out_dir: Path
    n_films: int
    n_compared: int
    n_refused: int
    notes: tuple[str, ...] = ()


def analyse_films(paths, out_dir: str | os.PathLike, config: AnalysisConfig,
                  **batch) -> tuple[dict[str, AnalysedFilm], RunSummary]:
    """Analyse the films below `paths` as ``calcitrack analyze`` does (parallel, resumable).

    Parameters
    ----------
    paths : iterable of path
    out_dir : path
        Where the films' CSVs, masks and database go.
    config : AnalysisConfig
    **batch
        Keyword arguments of `pipelines.batch.analyze_files` (workers, spacing, ...).

    Returns
    -------
    films : dict
        `AnalysedFilm` by image id, with the labels read back from the written masks.
    summary : RunSummary
    """
    out_dir = Path(out_dir)
    summary = analyze_files(paths, out_dir, config, **batch)
    films = {}
    for output in summary.outputs:
        row = output.image
        labels = None
        if output.status is Status.OK:
            labels = cv2.imread(str(out_dir / row["mask_path"]), cv2.IMREAD_UNCHANGED)
        result = FilmResult(row, output.deposits, labels, regions=output.regions)
        films[row["image_id"]] = AnalysedFilm(
            InputFile(Path(row["source_path"]), row["image_id"]), result,
            batch.get("user_spacing"), batch.get("pseudonym_key"), output.content_hash,
            batch.get("user_regions"))
    return films, summary


def compare_pair(baseline: AnalysedFilm, followup: AnalysedFilm, config: AnalysisConfig, *,
                 reference: str = "baseline", analyses: dict | None = None) -> PairOutcome:
    """Register, match and compare two analysed films (writes nothing).

    A film that failed analysis, mismatching metadata or a failed registration give a
    refused outcome with the one-line reason.
    """
    provenance = Provenance.of(config)
    base = {"reference": reference, "baseline_image_id": baseline.image_id,
            "followup_image_id": followup.image_id,
            "baseline_study_date": baseline.row.get("study_date"),
            "followup_study_date": followup.row.get("study_date"),
            **{key: baseline.row.get(key) for key in SERIES_KEYS},
            "calcitrack_version": provenance.calcitrack_version,
            "config_hash": provenance.config_hash}

    def refused(reason: str) -> PairOutcome:
        row = {**base, "status": "refused", "reason": reason, "region": ALL_REGIONS}
        return PairOutcome(baseline, followup, reference, (row,), refused=reason)

    for film in (baseline, followup):
        if not film.ok:
            return refused(f"{film.image_id} could not be analysed: {film.row.get('error')}")
    try:
        b_film, f_film = _reread(baseline, config, analyses), _reread(followup, config, analyses)
        b_rad, f_rad = b_film.radiograph, f_film.radiograph
        registration = register_films(b_rad, f_rad, config,
                                      baseline_deposits=baseline.result.labels,
                                      followup_deposits=followup.result.labels)
    except CalcitrackError as exc:   # not the same anatomy, no alignment, unreadable film
        return refused(str(exc))
    b_dep = FilmDeposits(baseline.result.labels, baseline.result.deposits, b_rad.pixel_area_mm2)
    f_dep = FilmDeposits(followup.result.labels, followup.result.deposits, f_rad.pixel_area_mm2)
    # Both films are looked at again where the other has deposits or where they differ.
    b_search, f_search = b_film.search(config), f_film.search(config)
    b_dep, f_dep = compared_deposits(b_rad, b_search, b_dep, f_rad, f_search, f_dep,
                                     registration, config)
    b_dep = _with_regions(b_dep, b_film, baseline.user_regions, config)
    f_dep = _with_regions(f_dep, f_film, followup.user_regions, config)
    matches, changes = compare_registered(b_dep, f_dep, registration, config.compare)
    reg = {"registration_rotation_deg": registration.rotation_deg,
           "registration_scale": registration.scale,
           "registration_shift_row_mm": registration.shift_mm[0],
           "registration_shift_col_mm": registration.shift_mm[1],
           "registration_correlation": registration.correlation,
           "registration_bone_dice": registration.bone_dice}
    rows = []
    for change in changes:
        b_area = change.baseline_area_mm2 if change.units == "mm2" else change.baseline_area_px
        f_area = b_area + change.change_area
        response = (response_category(b_area, f_area, change.followup_n_deposits,
                                      config.compare.change_threshold,
                                      n_unseen=change.baseline_n_unseen
                                      + change.followup_n_unseen)
                    if reference == "baseline" else None)
        density_change = (None if change.baseline_density is None
                          or change.followup_density is None
                          else change.followup_density - change.baseline_density)
        rows.append({**base, **reg, "status": "ok", "reason": None, "region": change.region,
                     "units": change.units,
                     "baseline_n_deposits": change.baseline_n_deposits,
                     "followup_n_deposits": change.followup_n_deposits,
                     "count_change": change.followup_n_deposits - change.baseline_n_deposits,
                     "baseline_area_px": change.baseline_area_px,
                     "followup_area_px": change.followup_area_px,
                     "baseline_area_mm2": change.baseline_area_mm2,
                     "followup_area_mm2": change.followup_area_mm2,
                     "change_area": change.change_area, "change_pct": change.change_pct,
                     "category": change.category,
                     "within_repeatability": change.within_repeatability,
                     "smallest_detectable_difference": change.smallest_detectable_difference,
                     "baseline_density": change.baseline_density,
                     "followup_density": change.followup_density,
                     "density_change": density_change,
                     "baseline_density_score": change.baseline_density_score,
                     "followup_density_score": change.followup_density_score,
                     "density_score_change_pct": change.density_score_change_pct,
                     "baseline_integrated_density": change.baseline_integrated_density,
                     "followup_integrated_density": change.followup_integrated_density,
                     "integrated_density_change_pct": change.integrated_density_change_pct,
                     "n_matched": change.n_matched,
                     "n_persistent": change.n_persistent, "n_grown": change.n_grown,
                     "n_shrunk": change.n_shrunk, "n_new": change.n_new,
                     "n_resolved": change.n_resolved, "response": response,
                     "baseline_found_again_px": change.baseline_found_again_px,
                     "followup_found_again_px": change.followup_found_again_px,
                     "baseline_n_unseen": change.baseline_n_unseen,
                     "followup_n_unseen": change.followup_n_unseen,
                     "baseline_unseen_px": change.baseline_unseen_px,
                     "followup_unseen_px": change.followup_unseen_px})
    match_rows = tuple({key: base[key] for key in ("reference", "baseline_image_id",
                                                    "followup_image_id", "calcitrack_version",
                                                    "config_hash")}
                       | {"group": m.group, "baseline_deposit_id": m.baseline_deposit_id,
                          "followup_deposit_id": m.followup_deposit_id, "status": m.status,
                          "region": m.region or ALL_REGIONS,
                          "baseline_area_px": m.baseline_area_px,
                          "followup_area_px": m.followup_area_px,
                          "baseline_area_mm2": m.baseline_area_mm2,
                          "followup_area_mm2": m.followup_area_mm2,
                          "group_change_pct": m.group_change_pct,
                          "baseline_found_again": _found_again(b_dep, m.baseline_deposit_id),
                          "followup_found_again": _found_again(f_dep, m.followup_deposit_id)}
                       for m in matches)
    return PairOutcome(baseline, followup, reference, tuple(rows), match_rows)


def series_pairs(films) -> list[tuple[AnalysedFilm, AnalysedFilm, str]]:
    """(baseline, follow-up, reference) pairs of one ordered series: every follow-up against
    the baseline, and from the second follow-up on against the previous film."""
    pairs = []
    for k in range(1, len(films)):
        pairs.append((films[0], films[k], "baseline"))
        if k >= 2:
            pairs.append((films[k - 1], films[k], "previous"))
    return pairs


def group_series(films) -> tuple[list[list[AnalysedFilm]], list[str]]:
    """Group analysed films into series (patient, side, body part, view), each by study date.

    Returns
    -------
    series : list of list of AnalysedFilm
        Series of two films or more, in key order.
    notes : list of str
        Films left out and why.
    """
    groups: dict = {}
    notes = []
    for film in films:
        if not film.ok:
            notes.append(f"{film.image_id}: not analysed ({film.row.get('error')})")
            continue
        key = tuple(film.row.get(k) for k in SERIES_KEYS)
        if film.row.get("patient_key") is None or film.row.get("study_date") is None:
            notes.append(f"{film.image_id}: no patient key or study date, cannot be placed "
                         "in a series — compare it explicitly with `calcitrack track`")
            continue
        groups.setdefault(key, []).append(film)
    series = []
    for key in sorted(groups, key=lambda k: tuple(str(v) for v in k)):
        films_of = sorted(groups[key], key=lambda f: (f.row["study_date"], f.image_id))
        if len(films_of) < 2:
            notes.append(f"{films_of[0].image_id}: the only film of its series, nothing to "
                         "compare")
            continue
        series.append(films_of)
    return series, notes


def run_series(series, out_dir: str | os.PathLike, config: AnalysisConfig, *,
               db_path: str | os.PathLike | None = None, notes=(), say=None,
               analysed: RunSummary | None = None) -> SerialSummary:
    """Compare every series of analysed films; write changes, matches, plots, database rows.

    The films themselves were recorded by the batch (`analyse_films`). ``changes.csv`` and
    ``matches.csv`` are rewritten (atomically) after every series and each comparison is
    committed as it is made, so an interrupted run keeps the comparisons done. With the
    batch's `analysed` summary, ``report.html`` is rewritten too, with the comparisons.
    """
    out_dir = Path(out_dir)
    provenance = Provenance.of(config)
    outcomes, plots = [], []
    with ResultsStore.open(out_dir / DATABASE_NAME if db_path is None else db_path) as store:
        run_id = store.start_run(provenance.calcitrack_version, provenance.config_hash,
                                 config.to_dict())

        def key(film: AnalysedFilm) -> int | None:
            return store.image_key(film.content_hash, provenance.config_hash,
                                   os.fspath(film.item.path))

        for films_of in series:
            analyses = {}
            for baseline, followup, reference in series_pairs(films_of):
                outcome = compare_pair(baseline, followup, config, reference=reference,
                                       analyses=analyses)
                outcomes.append(outcome)
                keys = key(baseline), key(followup)
                if None not in keys:      # a film that was never analysed is not stored
                    store.record_comparison(run_id, *keys, outcome.changes)
                if say is not None:
                    what = (f"refused: {outcome.refused}" if outcome.refused else
                            f"{outcome.changes[0]['category']} ({_pct(outcome.changes[0])})")
                    say(f"{baseline.image_id} -> {followup.image_id} [{reference}]: {what}")
            changes = [r for o in outcomes for r in o.changes]
            write_csv(out_dir / "changes.csv", changes, CHANGE_COLUMNS)
            write_csv(out_dir / "matches.csv", [r for o in outcomes for r in o.matches],
                      MATCH_COLUMNS)
            plots.append(f"plots/{_series_name(films_of[0])}.png")
            write_burden_plot(out_dir / plots[-1], films_of)
            if analysed is not None:
                write_run_report(out_dir, analysed.outputs, changes=changes, plots=plots)
        store.finish_run(run_id)
    n_refused = sum(o.refused is not None for o in outcomes)
    return SerialSummary(out_dir, sum(len(films_of) for films_of in series),
                         len(outcomes) - n_refused, n_refused, tuple(notes))


def write_burden_plot(path: str | os.PathLike, films) -> None:
    """Burden over time of one series, one line per region (PNG, written atomically)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    calibrated = all(f.row.get("total_area_mm2") is not None for f in films)
    unit = "mm²" if calibrated else "px"
    regions: dict = {}
    for index, film in enumerate(films):
        for deposit in film.result.deposits:
            name = deposit.get("region")
            if name in (None, "", "film", ALL_REGIONS):
                continue
            regions.setdefault(name, np.zeros(len(films)))[index] += (
                deposit["area_mm2"] if calibrated else deposit["area_px"]) or 0.0
    totals = [(f.row["total_area_mm2"] if calibrated else f.row["total_area_px"]) or 0.0
              for f in films]
    dates = [f.row.get("study_date") or f.image_id for f in films]
    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    axes = figure.add_subplot()
    axes.plot(dates, totals, marker="o", color="black", label="all")
    for name in sorted(regions):
        axes.plot(dates, regions[name], marker=".", label=name)
    first = films[0].row
    axes.set_title(f"patient {first.get('patient_key')} · {first.get('body_part')} "
                   f"{first.get('laterality')} {first.get('view_position')}", fontsize=9)
    axes.set_xlabel("study date")
    axes.set_ylabel(f"deposit area ({unit})")
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=7)
    axes.tick_params(axis="x", labelrotation=30, labelsize=7)
    figure.tight_layout()
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})


@dataclass(eq=False)
class _Reread:
    """A film read again for its comparisons, and its deposit search (the anatomy and
    background that deposits are found again with), prepared when first asked."""

    radiograph: Radiograph
    _search: DepositSearch | None = None
    _regions: RegionMap | None = None

    def search(self, config: AnalysisConfig) -> DepositSearch:
        if self._search is None:
            self._search = prepare_deposit_search(self.radiograph, config)
        return self._search

    def regions(self, config: AnalysisConfig, user_regions: UserRegions | None) -> RegionMap:
        """The film's regions, drawn from its search as the analysis drew them."""
        if self._regions is None:
            self._regions = region_map(self.radiograph, self.search(config), config.regions,
                                       user_regions)
        return self._regions


def _reread(film: AnalysedFilm, config: AnalysisConfig, cache: dict | None) -> _Reread:
    """The film read again, kept in `cache` for the film's other pairs."""
    if cache is not None and film.image_id in cache:
        return cache[film.image_id]
    reread = _Reread(read_radiograph(film.item.path, user_spacing=film.user_spacing,
                                     pseudonym_key=film.pseudonym_key,
                                     max_megapixels=config.max_megapixels))
    if cache is not None:
        cache[film.image_id] = reread
    return reread


def _with_regions(deposits: FilmDeposits, film: _Reread, user_regions: UserRegions | None,
                  config: AnalysisConfig) -> FilmDeposits:
    """`deposits` with those found only where the films differ (no region yet) put in the
    region at their centroid, as the film's own deposits are (`imaging.burden`)."""
    unplaced = {int(r["deposit_id"]) for r in deposits.rows
                if r.get("found_again") and r.get("region") is None}
    if not unplaced:
        return deposits
    ids = sorted(unplaced)
    labels = np.asarray(deposits.labels)
    centres = np.array(ndimage.center_of_mass(labels > 0, labels, ids))
    names = film.regions(config, user_regions).at_source(centres[:, 0], centres[:, 1])
    placed = dict(zip(ids, names.tolist()))
    return dataclasses.replace(deposits, rows=tuple(
        {**r, "region": placed[int(r["deposit_id"])]} if int(r["deposit_id"]) in placed else r
        for r in deposits.rows))


def _found_again(deposits: FilmDeposits, deposit_id: int | None) -> bool | None:
    return None if deposit_id is None else bool(deposits.row(deposit_id).get("found_again"))


def _series_name(film: AnalysedFilm) -> str:
    parts = [str(film.row.get(k) or "unknown") for k in SERIES_KEYS]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts))


def _pct(row: dict) -> str:
    pct = row.get("change_pct")
    return "from none" if pct is None else f"{pct:+.0f} %"


# --- command line --------------------------------------------------------------------------

def register(subparsers) -> None:
    """Add the ``track`` and ``followup`` subcommands to the `calcitrack` parser."""
    track = subparsers.add_parser(
        "track", help="compare follow-up films with their baseline",
        description="Register each follow-up film onto the baseline (on bone), match deposits "
                    "and compare the burden per region; write changes.csv, matches.csv, "
                    "plots and the films' CSVs into DIR. Films of another patient, side, body "
                    "part or view are refused. Exit code 0 when every pair was compared, 1 "
                    "when some were refused or failed, 2 for usage errors.")
    track.add_argument("baseline", metavar="BASELINE", type=Path, help="the baseline film")
    track.add_argument("followups", nargs="+", metavar="FOLLOWUP", type=Path,
                       help="follow-up films, oldest first")
    _common(track)
    track.set_defaults(handler=run_track)
    followup = subparsers.add_parser(
        "followup", help="find serial films in folders and compare each series",
        description="Group the films below FOLDER by pseudonymous patient, side, body part "
                    "and view; order each group by study date; compare every visit with the "
                    "baseline and with the previous visit. Outputs as for `track`.")
    followup.add_argument("paths", nargs="+", metavar="FOLDER", type=Path,
                          help="folders (or files), walked recursively")
    _common(followup)
    followup.set_defaults(handler=run_followup)


def _common(parser) -> None:
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder (created if needed)")
    add_batch_arguments(parser)


def run_track(args) -> int:
    """Run ``calcitrack track`` from parsed arguments; return the exit code."""
    paths = [args.baseline, *args.followups]
    bad = [p for p in paths if not p.is_file()]
    if bad:
        print(f"calcitrack track: {bad[0]} is not a file (give the films themselves)",
              file=sys.stderr)
        return EXIT_USAGE
    if len({os.path.abspath(p) for p in paths}) < len(paths):
        print("calcitrack track: a film is named twice", file=sys.stderr)
        return EXIT_USAGE
    order = image_ids(paths)
    return _run(args, "track", paths, lambda films: ([[films[i] for i in order]], []))


def run_followup(args) -> int:
    """Run ``calcitrack followup`` from parsed arguments; return the exit code."""
    return _run(args, "followup", args.paths, lambda films: group_series(films.values()))


def _run(args, command: str, paths, make_series) -> int:
    config = load_config(args.config)
    options = batch_options(args)

    def say(line):
        print(line, file=sys.stderr)

    def work() -> int:
        films, analysed = analyse_films(paths, args.out, config, progress_stream=sys.stderr,
                                        **options)
        if analysed.n_films < 2:
            say(f"calcitrack {command}: need at least two films, found {analysed.n_films}")
            return EXIT_USAGE
        series, notes = make_series(films)
        for note in notes:
            say(note)
        summary = run_series(series, args.out, config, db_path=args.db, notes=notes,
                             say=say, analysed=analysed)
        say(f"{summary.n_compared} comparisons, {summary.n_refused} refused, "
            f"{analysed.n_failed} films failed; results in {summary.out_dir}")
        if summary.n_compared + summary.n_refused == 0:
            return EXIT_SOME_FAILED
        return EXIT_SOME_FAILED if summary.n_refused or analysed.n_failed else EXIT_OK

    return run_guarded(command, args.out, work)
