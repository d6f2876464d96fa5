"""Comparing two films of a patient: deposit matching, change per region, category, response.

Matching (`match_deposits`)
---------------------------
The follow-up's deposit labels are brought onto the baseline's pixel grid through the
registration (`imaging.register`). A baseline deposit and a follow-up deposit are *linked*
when, with either one grown by the registration tolerance (`MatchConfig.tolerance_mm`), they
overlap by at least `MatchConfig.min_overlap` (20 %, as in `imaging.evaluation`) of the other
one's area. Linked deposits form *groups* (a deposit that split or merged links to several);
each group gets one status:

- ``resolved`` — baseline deposits with no follow-up deposit;
- ``new`` — follow-up deposits with no baseline deposit;
- ``grown`` / ``shrunk`` — the group's area changed by more than `MatchConfig.change_pct`
  (25 %, the SCTC threshold applied to one deposit) **and** by more than
  `MatchConfig.min_change_mm2` (0.5 mm², the area of a 0.8 mm disc: a chosen floor against
  outline jitter of tiny deposits, not a measured one; not applied to uncalibrated films);
- ``persistent`` — linked, with a smaller change.

Change (`compare_burden`)
-------------------------
Per region (deposit rows carry ``region``; a None, ``"film"`` or ``"all"`` region counts in
the whole film only) and for the whole film (``region = "all"``): deposit count, total area,
area-weighted mean relative density (soft tissue 0, bone 1), their changes, and the category
of the area change: progression (> +25 %), improvement (< -25 %), stable otherwise (SCTC;
`imaging.evaluation.change_category`). A change smaller than the pipeline's smallest
detectable difference (`RepeatabilityConfig`) is flagged ``within_repeatability``.

Areas are compared in mm² when both films are calibrated (each on its own calibration);
otherwise in pixels, the follow-up's pixels converted to baseline pixels with the
registration's scale (`Registration.pixel_area_ratio`), and the mm² columns stay empty.

Response (`response_category`) from baseline to the latest film: ``complete`` (every
deposit resolved, none new), ``partial`` (improvement, not complete), ``progression``, or
``none``.

The parameters (`MatchConfig`, `RepeatabilityConfig`) are the ``compare`` section of
`imaging.config.AnalysisConfig`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from skimage.segmentation import expand_labels

from .config import CompareConfig, MatchConfig
from .evaluation import CHANGE_THRESHOLD, change_category
from .regions import WHOLE_FILM

#: Region name of the whole-film rows.
ALL_REGIONS = WHOLE_FILM
#: Region values that do not name a region (the deposit counts in the whole film only).
_UNNAMED_REGIONS = {None, "", "film", ALL_REGIONS}


class MatchStatus(enum.StrEnum):
    """Fate of a deposit between two films."""

    PERSISTENT = "persistent"
    GROWN = "grown"
    SHRUNK = "shrunk"
    NEW = "new"
    RESOLVED = "resolved"
    UNSEEN = "unseen"
    """Where the other film shows no soft tissue (bone, beyond its field): not compared."""


class Response(enum.StrEnum):
    """Response from baseline to the latest film."""

    COMPLETE = "complete"
    PARTIAL = "partial"
    NONE = "none"
    PROGRESSION = "progression"


@dataclass(frozen=True, eq=False)
class FilmDeposits:
    """One film's deposits as the comparison needs them.

    Attributes
    ----------
    labels : ndarray of int
        Deposit labels in the film's source grid (label = ``deposit_id``).
    rows : tuple of dict
        Its ``deposits.csv`` rows (``deposit_id``, ``area_px``, ``region``,
        ``relative_density``, ``density_score_px``...); a deposit found again in part
        (`imaging.paired`) also carries its ``integrated_density_px``.
    pixel_area_mm2 : float or None
        None for an uncalibrated film.
    """

    labels: np.ndarray
    rows: tuple[dict, ...]
    pixel_area_mm2: float | None
    unseen: tuple[dict, ...] = ()
    """Rows of the film's deposits left out of a comparison because the other film cannot
    show them (`imaging.paired.leave_out_unseen`); not in `labels` nor `rows`."""

    def row(self, deposit_id: int) -> dict:
        """The deposit's row, compared or unseen."""
        for row in (*self.rows, *self.unseen):
            if int(row["deposit_id"]) == int(deposit_id):
                return row
        raise KeyError(deposit_id)


@dataclass(frozen=True)
class DepositMatch:
    """One link (or unlinked deposit) of a comparison: a row of ``matches.csv``."""

    group: int
    baseline_deposit_id: int | None
    followup_deposit_id: int | None
    status: MatchStatus
    region: str | None
    baseline_area_px: int | None
    followup_area_px: int | None
    baseline_area_mm2: float | None
    followup_area_mm2: float | None
    group_change_pct: float | None


@dataclass(frozen=True)
class RegionChange:
    """The change of one region (or ``all``) between two films: a row of ``changes.csv``."""

    region: str
    units: str
    baseline_n_deposits: int
    followup_n_deposits: int
    baseline_area_px: int
    followup_area_px: int
    baseline_area_mm2: float | None
    followup_area_mm2: float | None
    change_area: float
    change_pct: float | None
    category: str
    within_repeatability: bool
    smallest_detectable_difference: float
    baseline_density: float | None
    followup_density: float | None
    n_persistent: int
    n_grown: int
    n_shrunk: int
    n_new: int
    n_resolved: int
    baseline_found_again_px: int = 0
    """Pixels of the baseline's deposits found again or shared where the follow-up has
    deposits (`imaging.paired`)..."""
    followup_found_again_px: int = 0
    """...and of the follow-up's, where the baseline has deposits."""
    baseline_n_unseen: int = 0
    """Baseline deposits left out because the follow-up cannot show them
    (`imaging.paired.leave_out_unseen`; in no other field)..."""
    followup_n_unseen: int = 0
    """...follow-up deposits left out because the baseline cannot show them..."""
    baseline_unseen_px: int = 0
    """...the pixels of the baseline's unseen deposits..."""
    followup_unseen_px: int = 0
    """...and of the follow-up's."""
    baseline_density_score: float | None = None
    """The baseline's density-weighted score (`imaging.burden`: area x density band, pixel
    by pixel) in `units`; None when a deposit's is unknown (a film without bone)..."""
    followup_density_score: float | None = None
    """...the follow-up's..."""
    baseline_integrated_density: float | None = None
    """...the baseline's integrated density (area x relative density), in `units` of
    bone-equivalent..."""
    followup_integrated_density: float | None = None
    """...and the follow-up's. Deposits found again count with their own pixels' densities."""

    @property
    def n_matched(self) -> int:
        return self.n_persistent + self.n_grown + self.n_shrunk

    @property
    def density_score_change_pct(self) -> float | None:
        return _percent_change(self.baseline_density_score, self.followup_density_score)

    @property
    def integrated_density_change_pct(self) -> float | None:
        return _percent_change(self.baseline_integrated_density,
                               self.followup_integrated_density)


def match_deposits(baseline: FilmDeposits, followup: FilmDeposits,
                   warped_followup_labels: np.ndarray, *, baseline_spacing_mm: float,
                   followup_area_factor: float = 1.0,
                   config: MatchConfig | None = None) -> tuple[DepositMatch, ...]:
    """Match the deposits of two registered films.

    Parameters
    ----------
    baseline, followup : FilmDeposits
    warped_followup_labels : ndarray
        The follow-up's labels resampled onto the baseline grid
        (`imaging.register.Registration.warp_followup_labels`).
    baseline_spacing_mm : float
        Baseline pixel size (mm; the nominal one for an uncalibrated film) for the tolerance.
    followup_area_factor : float
        Baseline pixels per follow-up pixel, used to compare areas of uncalibrated films.
    config : MatchConfig, optional

    Returns
    -------
    tuple of DepositMatch
        Groups in order of their smallest baseline deposit id, then the new ones, then the
        deposits either film cannot show (`FilmDeposits.unseen`), a group each.

    Examples
    --------
    >>> a = np.zeros((20, 20), int); a[2:6, 2:6] = 1; a[12:16, 12:16] = 2
    >>> b = np.zeros((20, 20), int); b[2:7, 2:7] = 1
    >>> rows = lambda labels: tuple({"deposit_id": k, "area_px": int((labels == k).sum()),
    ...                              "region": None} for k in np.unique(labels)[1:])
    >>> m = match_deposits(FilmDeposits(a, rows(a), 1.0), FilmDeposits(b, rows(b), 1.0), b,
    ...                    baseline_spacing_mm=1.0)
    >>> [(x.baseline_deposit_id, x.followup_deposit_id, str(x.status)) for x in m]
    [(1, 1, 'grown'), (2, None, 'resolved')]
    """
    config = config or MatchConfig()
    base = np.asarray(baseline.labels).astype(np.int64)
    warped = np.asarray(warped_followup_labels).astype(np.int64)
    if base.shape != warped.shape:
        raise ValueError(f"warped follow-up labels {warped.shape} are not on the baseline grid "
                         f"{base.shape}")
    tolerance_px = config.tolerance_mm / baseline_spacing_mm
    grown_base = expand_labels(base, tolerance_px) if tolerance_px > 0 else base
    grown_warped = expand_labels(warped, tolerance_px) if tolerance_px > 0 else warped
    base_ids = [int(r["deposit_id"]) for r in baseline.rows]
    follow_ids = [int(r["deposit_id"]) for r in followup.rows]
    n_base, n_follow = max(base_ids + [int(base.max())]) + 1, max(
        follow_ids + [int(warped.max())]) + 1
    base_area = np.bincount(base.ravel(), minlength=n_base)
    warped_area = np.bincount(warped.ravel(), minlength=n_follow)
    # overlap[i, j]: pixels where (grown) baseline deposit i meets (grown) follow-up j
    overlap_a = _pair_counts(grown_base, warped, n_base, n_follow)
    overlap_b = _pair_counts(base, grown_warped, n_base, n_follow)
    links = ((overlap_a >= config.min_overlap * np.maximum(warped_area[None, :], 1))
             & (overlap_a > 0))
    links |= (overlap_b >= config.min_overlap * np.maximum(base_area[:, None], 1)) & (overlap_b > 0)
    links[0, :] = links[:, 0] = False

    parent = {("b", i): ("b", i) for i in base_ids} | {("f", j): ("f", j) for j in follow_ids}

    def find(node):
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    pairs = [(i, j) for i in base_ids for j in follow_ids
             if i < n_base and j < n_follow and links[i, j]]
    for i, j in pairs:
        a, b = find(("b", i)), find(("f", j))
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict = {}
    for node in parent:
        groups.setdefault(find(node), []).append(node)
    ordered = sorted(groups.values(), key=lambda nodes: (
        min((i for side, i in nodes if side == "b"), default=math.inf),
        min((j for side, j in nodes if side == "f"), default=math.inf)))

    calibrated = baseline.pixel_area_mm2 is not None and followup.pixel_area_mm2 is not None
    matches = []
    for number, nodes in enumerate(ordered, start=1):
        b_ids = sorted(i for side, i in nodes if side == "b")
        f_ids = sorted(j for side, j in nodes if side == "f")
        b_rows = [baseline.row(i) for i in b_ids]
        f_rows = [followup.row(j) for j in f_ids]
        b_area = _comparable_area(b_rows, baseline.pixel_area_mm2, calibrated, 1.0)
        f_area = _comparable_area(f_rows, followup.pixel_area_mm2, calibrated,
                                  followup_area_factor)
        status, change = _group_status(b_area, f_area, calibrated, config)
        region = _region(b_rows[0]) if b_rows else _region(f_rows[0])
        group_pairs = [(i, j) for i, j in pairs if i in b_ids and j in f_ids]
        linked_b = {i for i, _ in group_pairs}
        linked_f = {j for _, j in group_pairs}
        entries = group_pairs + [(i, None) for i in b_ids if i not in linked_b] + [
            (None, j) for j in f_ids if j not in linked_f]
        for i, j in entries:
            brow = baseline.row(i) if i is not None else None
            frow = followup.row(j) if j is not None else None
            matches.append(DepositMatch(
                number, i, j, status, region, _area_px(brow), _area_px(frow),
                _mm2(brow, baseline.pixel_area_mm2), _mm2(frow, followup.pixel_area_mm2),
                change))
    # Deposits one film cannot show (`imaging.paired.leave_out_unseen`): a group each.
    unseen = [(row, None) for row in baseline.unseen] + [(None, row) for row in followup.unseen]
    for number, (brow, frow) in enumerate(unseen, start=len(ordered) + 1):
        matches.append(DepositMatch(
            number, _deposit_id(brow), _deposit_id(frow), MatchStatus.UNSEEN,
            _region(brow or frow), _area_px(brow), _area_px(frow),
            _mm2(brow, baseline.pixel_area_mm2), _mm2(frow, followup.pixel_area_mm2), None))
    return tuple(matches)


def compare_burden(baseline: FilmDeposits, followup: FilmDeposits,
                   matches: Sequence[DepositMatch], *, followup_area_factor: float = 1.0,
                   config: CompareConfig | None = None) -> tuple[RegionChange, ...]:
    """Per-region and whole-film change between two films (``region = "all"`` first).

    Parameters
    ----------
    baseline, followup : FilmDeposits
    matches : sequence of DepositMatch
        From `match_deposits`.
    followup_area_factor : float
        Baseline pixels per follow-up pixel (uncalibrated films).
    config : CompareConfig, optional
    """
    config = config or CompareConfig()
    calibrated = baseline.pixel_area_mm2 is not None and followup.pixel_area_mm2 is not None
    # (A region whose deposits are all unseen keeps its row: they are counted apart there.)
    named = sorted({_region(r) for r in (*baseline.rows, *followup.rows, *baseline.unseen,
                                         *followup.unseen)} - {None})
    changes = []
    for region in (ALL_REGIONS, *named):
        def mine(rows):
            return [r for r in rows if region == ALL_REGIONS or _region(r) == region]

        b_rows, f_rows = mine(baseline.rows), mine(followup.rows)
        b_unseen, f_unseen = mine(baseline.unseen), mine(followup.unseen)
        b_area = _comparable_area(b_rows, baseline.pixel_area_mm2, calibrated, 1.0)
        f_area = _comparable_area(f_rows, followup.pixel_area_mm2, calibrated,
                                  followup_area_factor)
        b_scores = _comparable_scores(b_rows, baseline.pixel_area_mm2, calibrated, 1.0)
        f_scores = _comparable_scores(f_rows, followup.pixel_area_mm2, calibrated,
                                      followup_area_factor)
        change = f_area - b_area
        pct = _percent_change(b_area, f_area)
        sdd = config.repeatability.sdd(b_area, f_area, calibrated=calibrated)
        counts = {status: 0 for status in MatchStatus}
        for group in {m.group: m for m in matches
                      if region == ALL_REGIONS or m.region == region}.values():
            counts[group.status] += 1
        changes.append(RegionChange(
            region, "mm2" if calibrated else "px", len(b_rows), len(f_rows),
            sum(int(r["area_px"]) for r in b_rows), sum(int(r["area_px"]) for r in f_rows),
            b_area if calibrated else None, f_area if calibrated else None,
            change, pct, change_category(b_area, f_area, config.change_threshold),
            abs(change) < sdd, sdd, _density(b_rows), _density(f_rows),
            counts[MatchStatus.PERSISTENT], counts[MatchStatus.GROWN],
            counts[MatchStatus.SHRUNK], counts[MatchStatus.NEW], counts[MatchStatus.RESOLVED],
            _found_again_px(b_rows), _found_again_px(f_rows),
            len(b_unseen), len(f_unseen), sum(int(r["area_px"]) for r in b_unseen),
            sum(int(r["area_px"]) for r in f_unseen), b_scores[0], f_scores[0], b_scores[1],
            f_scores[1]))
    return tuple(changes)


def compare_registered(baseline: FilmDeposits, followup: FilmDeposits, registration,
                       config: CompareConfig | None = None
                       ) -> tuple[tuple[DepositMatch, ...], tuple[RegionChange, ...]]:
    """`match_deposits` and `compare_burden` of two films through their `registration`
    (`imaging.register.Registration`, follow-up onto baseline)."""
    config = config or CompareConfig()
    factor = registration.pixel_area_ratio
    warped = registration.warp_followup_labels(followup.labels, baseline.labels.shape)
    matches = match_deposits(baseline, followup, warped,
                             baseline_spacing_mm=min(registration.baseline_spacing_mm),
                             followup_area_factor=factor, config=config.match)
    return matches, compare_burden(baseline, followup, matches, followup_area_factor=factor,
                                   config=config)


def response_category(baseline_area: float, latest_area: float, latest_n_deposits: int,
                      threshold: float = CHANGE_THRESHOLD, *, n_unseen: int = 0) -> Response:
    """Response from the baseline to the latest film.

    ``complete``: the baseline had deposits and the latest film has none (every one resolved,
    none new, none that either film cannot show: `n_unseen`, `imaging.paired.leave_out_unseen`);
    ``partial``: improvement (area down by more than `threshold`) short of complete;
    ``progression``: area up by more than `threshold` (or any deposit from a clean baseline);
    ``none`` otherwise.

    Examples
    --------
    >>> [str(response_category(10, a, n)) for a, n in ((0, 0), (5, 2), (11, 3), (20, 4))]
    ['complete', 'partial', 'none', 'progression']
    >>> str(response_category(10, 0, 0, n_unseen=1))
    'partial'
    """
    if baseline_area > 0 and latest_n_deposits == 0 and n_unseen == 0:
        return Response.COMPLETE
    category = change_category(baseline_area, latest_area, threshold)
    if category == "improvement":
        return Response.PARTIAL
    if category == "progression":
        return Response.PROGRESSION
    return Response.NONE


def _pair_counts(a: np.ndarray, b: np.ndarray, n_a: int, n_b: int) -> np.ndarray:
    both = (a > 0) & (b > 0)
    flat = a[both] * n_b + b[both]
    return np.bincount(flat, minlength=n_a * n_b).reshape(n_a, n_b)


def _found_again_px(rows) -> int:
    return sum(int(r.get("found_again_px") or 0) for r in rows)


def _region(row: dict) -> str | None:
    region = row.get("region")
    return None if region in _UNNAMED_REGIONS else str(region)


def _deposit_id(row: dict | None) -> int | None:
    return None if row is None else int(row["deposit_id"])


def _area_px(row: dict | None) -> int | None:
    return None if row is None else int(row["area_px"])


def _mm2(row: dict | None, pixel_area_mm2: float | None) -> float | None:
    if row is None or pixel_area_mm2 is None:
        return None
    return int(row["area_px"]) * pixel_area_mm2


def _in_units(pixels, pixel_area_mm2, calibrated: bool, factor: float) -> float | None:
    """A sum of per-deposit pixel values in mm² (calibrated films) or in baseline pixels;
    None when one of them is unknown."""
    if None in pixels:
        return None
    return float(sum(pixels)) * (pixel_area_mm2 if calibrated else factor)


def _comparable_area(rows, pixel_area_mm2, calibrated: bool, factor: float) -> float:
    """Total area in mm² (calibrated films) or in baseline pixels."""
    return _in_units([int(r["area_px"]) for r in rows], pixel_area_mm2, calibrated, factor)


def _comparable_scores(rows, pixel_area_mm2, calibrated: bool, factor: float
                       ) -> tuple[float | None, float | None]:
    """Density-weighted score and integrated density of the deposits, in mm² (calibrated
    films) or in baseline pixels; None when a deposit's is unknown."""
    scores = [None if r.get("density_score_px") is None else float(r["density_score_px"])
              for r in rows]
    integrated = [integrated_density_px(r) for r in rows]
    return (_in_units(scores, pixel_area_mm2, calibrated, factor),
            _in_units(integrated, pixel_area_mm2, calibrated, factor))


def _percent_change(baseline: float | None, followup: float | None) -> float | None:
    """Change from `baseline` to `followup` in % (None without a positive baseline)."""
    if baseline is None or followup is None or baseline <= 0:
        return None
    return 100.0 * (followup - baseline) / baseline


def integrated_density_px(row: dict) -> float | None:
    """A deposit's integrated density in pixels: its ``integrated_density_px`` when its row
    has one (a deposit found again in part, `imaging.paired`), else its area times its mean
    relative density; None when that is unknown."""
    if row.get("integrated_density_px") is not None:
        return float(row["integrated_density_px"])
    if row.get("relative_density") is None:
        return None
    return float(row["relative_density"]) * int(row["area_px"])


def _density(rows) -> float | None:
    """Area-weighted mean relative density of the deposits (None if unknown)."""
    integrated = [integrated_density_px(r) for r in rows]
    area = sum(int(r["area_px"]) for r in rows)
    if area == 0 or None in integrated:
        return None
    return float(sum(integrated) / area)


def _group_status(b_area: float, f_area: float, calibrated: bool, config: MatchConfig):
    if b_area == 0:
        return MatchStatus.NEW, None
    change = 100.0 * (f_area - b_area) / b_area
    if f_area == 0:
        return MatchStatus.RESOLVED, -100.0
    big_enough = not calibrated or abs(f_area - b_area) > config.min_change_mm2
    if change > config.change_pct and big_enough:
        return MatchStatus.GROWN, change
    if change < -config.change_pct and big_enough:
        return MatchStatus.SHRUNK, change
    return MatchStatus.PERSISTENT, change
