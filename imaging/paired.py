"""Deposits found again: each film of a compared pair looked at where the other has deposits.

The detector decides on each film alone, so a deposit near its thresholds (a faint sheet, a
plate of CNR 3-5) can be kept on one film and missed, or outlined only in part, on a film of
the same patient taken again: the change would then measure the threshold, not the disease.
In a comparison each film is therefore looked at again where the other film's deposits lie,
brought onto its grid through the registration. There the detector's own outline rule is
applied (`imaging.deposits.speck_outline`: half the peak of each speck) without
needing a candidate, and the outlines that pass the detector's own selection
(`imaging.deposits.select_deposits`; its rim test asks the contrast-to-noise ratio of one test
at a known place, `CompareConfig.found_again_min_rim_cnr`, not that of a search over the
film) are *found again* where they lie beyond the film's own deposits and on the other
film's: a piece touching one of the film's own deposits extends it, any other piece is a
deposit of its own (``found_again`` in its row); each piece brings its own pixels' density
scores (`imaging.burden.scores_of_pixels`). A film's own deposits are never dropped or
redrawn, and where a deposit truly resolved the film shows nothing that passes the
selection, so nothing is found again.

A deposit that neither film's detector finds is not sought that way. Each film is therefore
also looked at where it shows more calcium than the other (`imaging.subtraction.film_changes`:
the registered films' difference, which the anatomy's own structure does not limit), in the
same way but for the density tests that tell a faint deposit from soft-tissue texture on one
film, which the difference has already cancelled; a piece found only there has no region
yet (its row's ``region`` is empty: `pipelines.followup` puts it in the region at its
centroid).

Where both films keep a deposit, each still draws its outline at half of its own peak, and
noise raises one film's peak, and so its cut, above the other's: a plate is outlined at
15 mm² on one film and 12 mm² on the other. And a faint deposit one film outlines can fail
the selection on the other, which still shows it. Last, the films therefore share their
extent (`share_extent`): a piece of one film's deposits that the other lacks counts on the
other film too where that film shows at least half the first film's excess there (the
detector's half-maximum rule; read through the registered difference, which does not depend
on either film's background model) and the difference over the piece is within noise. A
deposit that grew or faded fails one test or the other.

What one film cannot show is not compared (`leave_out_unseen`): a deposit that lies, on the
other film, mostly in or right beside that film's bone mask or beyond its field would read as
new or resolved whatever happened to it; its row is kept apart (``unseen`` in
``matches.csv``).

On the re-acquired films of ``benchmarks/serial.py`` (2026-11-30) this puts 11 of 11 pairs
within ±10 % of their total area, against 7 of 11 by the films' own totals (22 of 23 against
12 of 23 on ``--seed 1``, the other at +10.1 %; 14 of 23 before extents were shared). All 24
of the benchmark's serial pairs are in the right category (22 before the films' difference
was looked at, 23 before extents were shared), and 77 of the accuracy suites' 80 serial
pairs (74 before the difference, 76 before extents were shared).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import cv2
import numpy as np

from .anatomy import disk
from .burden import scores_of_pixels
from .compare import FilmDeposits, integrated_density_px
from .config import AnalysisConfig
from .deposits import (OUTLINE_REACH_MM, DepositSearch, detection_rules, measure_on_film,
                       select_deposits, speck_outline, to_bone_edge)
from .measure import bounding_boxes
from .radiograph import Radiograph
from .register import Registration
from .subtraction import FilmChanges, film_changes


def compared_deposits(baseline: Radiograph, baseline_search: DepositSearch | None,
                      baseline_deposits: FilmDeposits, followup: Radiograph,
                      followup_search: DepositSearch | None, followup_deposits: FilmDeposits,
                      registration: Registration, config: AnalysisConfig
                      ) -> tuple[FilmDeposits, FilmDeposits]:
    """Both films' deposits as a registered pair compares them: with those found again
    (`find_again_in_pair`), without those the other film cannot show (`leave_out_unseen`).
    A film's search may be None when the other film has no deposits."""
    baseline_deposits, followup_deposits = find_again_in_pair(
        baseline, baseline_search, baseline_deposits, followup, followup_search,
        followup_deposits, registration, config)
    return leave_out_unseen(baseline_deposits, baseline_search, followup_deposits,
                            followup_search, registration, config.compare.max_unseen_fraction)


def find_again_in_pair(baseline: Radiograph, baseline_search: DepositSearch | None,
                       baseline_deposits: FilmDeposits, followup: Radiograph,
                       followup_search: DepositSearch | None, followup_deposits: FilmDeposits,
                       registration: Registration, config: AnalysisConfig
                       ) -> tuple[FilmDeposits, FilmDeposits]:
    """Both films of a registered pair with the deposits found again (`find_again`) where
    the other film's deposits lie and where the film shows more calcium than the other
    (`imaging.subtraction.film_changes`), and with the extent the films share
    (`share_extent`). A film's search may be None when the other film has no deposits: then
    only the other film is looked at again, where it has some."""
    on_baseline, on_followup = _brought_over(baseline_deposits, baseline.shape,
                                             followup_deposits, followup.shape, registration)
    baseline_deposits = find_again(baseline, baseline_search, baseline_deposits, on_baseline,
                                   config)
    followup_deposits = find_again(followup, followup_search, followup_deposits, on_followup,
                                   config)
    if baseline_search is None or followup_search is None:
        return baseline_deposits, followup_deposits
    changes = film_changes(baseline, baseline_search, followup, followup_search, registration,
                           config.compare)
    baseline_deposits = find_again(
        baseline, baseline_search, baseline_deposits,
        _places(changes.more_on_baseline & (on_baseline.labels == 0),
                baseline_deposits.pixel_area_mm2),
        config, where_films_differ=True)
    followup_deposits = find_again(
        followup, followup_search, followup_deposits,
        _places(changes.more_on_followup & (on_followup.labels == 0),
                followup_deposits.pixel_area_mm2),
        config, where_films_differ=True)
    return share_extent(baseline, baseline_search, baseline_deposits, followup,
                        followup_search, followup_deposits, registration, changes, config)


def share_extent(baseline: Radiograph, baseline_search: DepositSearch,
                 baseline_deposits: FilmDeposits, followup: Radiograph,
                 followup_search: DepositSearch, followup_deposits: FilmDeposits,
                 registration: Registration, changes: FilmChanges, config: AnalysisConfig
                 ) -> tuple[FilmDeposits, FilmDeposits]:
    """Both films with the pieces of the other film's deposits that they show as well.

    A piece of one film's deposits that the other lacks (an outline drawn a little wider on
    one film, where noise raised the other's peak and so its half-maximum cut; a deposit the
    other film's detector missed) is counted on the other film too when

    - that film shows at least `CompareConfig.shared_min_fraction` of the first film's mean
      excess over the piece (excess over the soft-tissue background, in units of the film's
      bone reference), read through the registered difference where it is read (the first
      film's excess plus the difference: a film's own background can take in a deposit its
      detector did not leave out of it) and from the film's own excess elsewhere;
    - its own excess there is at least `CompareConfig.shared_min_own_fraction` of the first
      film's (what one film's background model takes for excess is not shared);
    - and the difference over the piece does not reach
      `CompareConfig.shared_max_difference_z` SDs in the first film's favour.

    The piece extends the deposit it touches, or is a deposit of its own.

    Parameters
    ----------
    baseline, followup : Radiograph
    baseline_search, followup_search : DepositSearch
    baseline_deposits, followup_deposits : FilmDeposits
        Each film's deposits, with those found again.
    registration : Registration
    changes : FilmChanges
        The films' registered difference (`imaging.subtraction.film_changes`).
    config : AnalysisConfig

    Returns
    -------
    tuple of FilmDeposits
        Baseline and follow-up, as `find_again` returns them.
    """
    if not (baseline_search.anatomy.bone_level and followup_search.anatomy.bone_level):
        return baseline_deposits, followup_deposits
    b_excess, f_excess = (_relative_excess(baseline, baseline_search),
                          _relative_excess(followup, followup_search))
    on_baseline, on_followup = _brought_over(baseline_deposits, baseline.shape,
                                             followup_deposits, followup.shape, registration)
    significance = changes.significance
    # One SD of the difference in units of bone (the baseline was fitted to the follow-up's
    # exposure, so the follow-up's bone reference serves both films).
    sd = (changes.noise_sd or 0.0) / followup_search.anatomy.bone_level
    sigma_mm = config.compare.change_sigma_mm
    return (_with_shared(baseline, baseline_search, baseline_deposits, on_baseline, b_excess,
                         registration.warp_followup_image(f_excess, baseline.shape),
                         -registration.warp_followup_image(significance, baseline.shape),
                         _Difference(sd, sigma_mm / min(registration.baseline_spacing_mm)),
                         config),
            _with_shared(followup, followup_search, followup_deposits, on_followup, f_excess,
                         registration.warp_baseline_image(b_excess, followup.shape),
                         significance,
                         _Difference(sd, sigma_mm / min(registration.followup_spacing_mm)),
                         config))


@dataclasses.dataclass(frozen=True)
class _Difference:
    """How the films' difference was read: one SD in units of bone, the smoothing in px."""

    sd: float
    sigma_px: float


def _brought_over(baseline_deposits: FilmDeposits, baseline_shape: tuple[int, int],
                  followup_deposits: FilmDeposits, followup_shape: tuple[int, int],
                  registration: Registration) -> tuple[FilmDeposits, FilmDeposits]:
    """Each film's deposits brought onto the other's grid: (follow-up's on the baseline,
    baseline's on the follow-up)."""
    return (FilmDeposits(registration.warp_followup_labels(followup_deposits.labels,
                                                           baseline_shape),
                         followup_deposits.rows, followup_deposits.pixel_area_mm2),
            FilmDeposits(registration.warp_baseline_labels(baseline_deposits.labels,
                                                           followup_shape),
                         baseline_deposits.rows, baseline_deposits.pixel_area_mm2))


def _relative_excess(radiograph: Radiograph, search: DepositSearch) -> np.ndarray:
    """The film's excess over its soft-tissue background, in units of its bone reference."""
    return ((radiograph.pixels.astype(np.float32) - search.source_background)
            / search.anatomy.bone_level)


def _with_shared(radiograph: Radiograph, search: DepositSearch, own: FilmDeposits,
                 other: FilmDeposits, excess: np.ndarray, other_excess: np.ndarray,
                 more_here: np.ndarray, difference: _Difference, config: AnalysisConfig
                 ) -> FilmDeposits:
    """`own` with the pieces of the `other` film's deposits (on this film's grid) that it
    shows as well (`share_extent`); `more_here` is the films' difference in SDs, positive
    where this film shows more, NaN where unread."""
    lacking = ((np.asarray(other.labels) > 0) & (np.asarray(own.labels) == 0)
               & search.source_region & np.isfinite(other_excess))
    count, pieces = cv2.connectedComponents(lacking.astype(np.uint8), connectivity=8)
    if count < 2:
        return own

    def total(values, where=lacking):
        return np.bincount(pieces.ravel(), weights=np.where(where, values, 0).ravel(),
                           minlength=count)

    size = np.maximum(total(1.0), 1)
    read = lacking & np.isfinite(more_here)
    # A piece's difference in SDs: its mean significance times the square root of its
    # independent samples (one per 4 pi sigma^2 pixels of the smoothed difference).
    difference_z = (total(more_here, read) / np.maximum(total(1.0, read), 1)
                    * np.sqrt(total(1.0, read) / (4 * np.pi * difference.sigma_px ** 2)))
    through_difference = np.where(read, other_excess + more_here * difference.sd, excess)
    other_shown, own_shown = total(other_excess) / size, total(excess) / size

    def fraction(shown):
        return np.divide(shown, other_shown, out=np.zeros(count), where=other_shown > 0)

    compare = config.compare
    shared = ((fraction(total(through_difference) / size) >= compare.shared_min_fraction)
              & (fraction(own_shown) >= compare.shared_min_own_fraction)
              & (difference_z > -compare.shared_max_difference_z))
    shared[0] = False
    new = shared[pieces]
    if not new.any():
        return own
    return _with_found(own, other, pieces, {k: float(v) for k, v in enumerate(own_shown)},
                       new, _scorer(radiograph, search, config))


def _scorer(radiograph: Radiograph, search: DepositSearch, config: AnalysisConfig) -> Callable:
    """A piece's density-weighted score and integrated density on the film (pixels)."""
    bone_level = search.anatomy.bone_level

    def scores(pieces, number, bbox):
        if not bone_level:
            return None, None
        return scores_of_pixels(radiograph.pixels, search.source_background, pieces, number,
                                bbox, bone_level, search.grid.source_spacing_mm, config.burden)

    return scores


def _places(mask: np.ndarray, pixel_area_mm2: float | None) -> FilmDeposits:
    """The pieces of `mask` as places to look (deposit-like rows in no region)."""
    count, pieces = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    sizes = np.bincount(pieces.ravel(), minlength=count)
    rows = tuple({"deposit_id": k, "area_px": int(sizes[k]), "region": None}
                 for k in range(1, count))
    return FilmDeposits(pieces, rows, pixel_area_mm2)


def leave_out_unseen(baseline: FilmDeposits, baseline_search: DepositSearch | None,
                     followup: FilmDeposits, followup_search: DepositSearch | None,
                     registration: Registration, max_unseen_fraction: float
                     ) -> tuple[FilmDeposits, FilmDeposits]:
    """Both films' deposits without those the other film cannot show.

    A deposit more than `max_unseen_fraction` of which, brought onto the other film through
    the registration, lies where that film is not searched (`imaging.deposits.search_region`:
    in or right beside its bone mask, beyond its field) is left out of both totals: the other
    film could neither show it nor find it again, and it would read as new or resolved. Its
    row moves to `FilmDeposits.unseen`. A film's search may be None when the other film has
    no deposits.
    """
    on_followup = registration.warp_baseline_labels(baseline.labels, followup.labels.shape)
    on_baseline = registration.warp_followup_labels(followup.labels, baseline.labels.shape)
    return (_without_unseen(baseline, on_followup, followup_search, max_unseen_fraction),
            _without_unseen(followup, on_baseline, baseline_search, max_unseen_fraction))


def _without_unseen(deposits: FilmDeposits, on_other: np.ndarray, other: DepositSearch | None,
                    max_unseen_fraction: float) -> FilmDeposits:
    """`deposits` without those whose footprint `on_other` film lies mostly unsearched."""
    if not deposits.rows:
        return deposits
    if other is None:
        raise ValueError("the film has deposits: the other film's search is needed")
    searched = other.source_region
    ids = [int(r["deposit_id"]) for r in deposits.rows]
    footprint = np.bincount(on_other.ravel(), minlength=max(ids) + 1)
    seen = np.bincount(on_other[searched], minlength=max(ids) + 1)
    # (A deposit brought entirely beyond the other film's grid has no footprint there.)
    unseen = {i for i in ids
              if not footprint[i] or seen[i] < (1 - max_unseen_fraction) * footprint[i]}
    if not unseen:
        return deposits
    labels = np.where(np.isin(deposits.labels, list(unseen)), 0, deposits.labels)
    return dataclasses.replace(
        deposits, labels=labels,
        rows=tuple(r for r in deposits.rows if int(r["deposit_id"]) not in unseen),
        unseen=deposits.unseen + tuple(r for r in deposits.rows
                                       if int(r["deposit_id"]) in unseen))


def find_again(radiograph: Radiograph, search: DepositSearch | None, own: FilmDeposits,
               sought: FilmDeposits, config: AnalysisConfig, *,
               where_films_differ: bool = False) -> FilmDeposits:
    """A film's deposits with those found again where the other film of a pair has some.

    With `where_films_differ`, `sought` holds the places where the film shows more calcium
    than the other (`imaging.subtraction.film_changes`) rather than the other film's
    deposits: the films' difference has already told calcium from the soft tissue's texture
    (the same on both films, it cancels), so the density tests that tell them apart on one
    film (`DetectionConfig.min_relative_density` and the faint rules) are not asked there.

    Parameters
    ----------
    radiograph : Radiograph
    search : DepositSearch, optional
        The film's analysis grid, anatomy, searched soft tissue and background (the
        detector's `DepositFindings.search`, or `imaging.deposits.prepare_deposit_search`);
        needed only when `sought` has deposits.
    own : FilmDeposits
        The film's deposits (labels on its source grid, ``deposits.csv`` rows).
    sought : FilmDeposits
        The other film's deposits, their labels resampled onto this film's source grid
        (`imaging.register.Registration.warp_followup_labels` / ``warp_baseline_labels``).
    config : AnalysisConfig

    Returns
    -------
    FilmDeposits
        `own` with the pixels found again: extensions of its deposits (their ``area_px``,
        which the comparison reads, grows and ``found_again_px`` counts the pixels added;
        their other ``deposits.csv`` columns stay the film's own) and deposits of their own,
        numbered after the film's, whose rows carry ``found_again = True``, the ``region``
        of the deposit sought there and their ``relative_density``.
    """
    own_labels = np.asarray(own.labels)
    sought_labels = np.asarray(sought.labels)
    if own_labels.shape != sought_labels.shape:
        raise ValueError(f"sought labels {sought_labels.shape} are not on the film's grid "
                         f"{own_labels.shape}")
    if not sought_labels.any():
        return own
    if search is None:
        raise ValueError("the other film has deposits: the film's search is needed")
    grid = search.grid
    # One test at a known place, not a search over the film: the rim test is eased.
    detection = detection_rules(config, radiograph.metadata.body_part)
    rim_cnr = config.compare.found_again_min_rim_cnr
    detection = dataclasses.replace(detection, min_rim_cnr=rim_cnr,
                                    large_min_rim_cnr=min(rim_cnr, detection.large_min_rim_cnr))
    if where_films_differ:
        detection = dataclasses.replace(detection, min_relative_density=0.0)
    background, searched = search.source_background, search.source_region
    where = (sought_labels > 0) | (own_labels > 0)
    outlines = _outlines_where(radiograph, background, searched, where, detection,
                               grid.source_spacing_mm)
    if not outlines.any():
        return own
    measures = measure_on_film(radiograph, search, outlines)
    outlines, kept = select_deposits(outlines, measures, detection,
                                     pixel_area_mm2=grid.source_pixel_area_mm2)
    if kept:
        # Up to the bone edge, as the detector outlines a film's own deposits.
        outlines = to_bone_edge(outlines, _outlines_where(radiograph, background,
                                                          search.source_soft_tissue, where,
                                                          detection, grid.source_spacing_mm),
                                search.source_bone_edge_band, grid.source_spacing_mm)
    new = (outlines > 0) & (own_labels == 0)
    return _with_found(own, sought, outlines, {d.label: d.relative_density for d in kept}, new,
                       _scorer(radiograph, search, config))


def _outlines_where(radiograph: Radiograph, background: np.ndarray, allowed: np.ndarray,
                    where: np.ndarray, detection, spacing_mm) -> np.ndarray:
    """Labels of the half-maximum outlines drawn around each piece of `where` (the pieces
    of an outline that reach `where`)."""
    px_mm = min(spacing_mm)
    reach = disk(2 * OUTLINE_REACH_MM / px_mm + 1)
    pad = int(np.ceil(1.5 / px_mm))
    _, pieces = cv2.connectedComponents(cv2.dilate(where.astype(np.uint8), reach),
                                        connectivity=8)
    rows, cols = where.shape
    labels = np.zeros((rows, cols), np.int32)
    for number, found in enumerate(bounding_boxes(pieces), start=1):
        if found is None:
            continue
        box = (slice(max(found[0].start - pad, 0), min(found[0].stop + pad, rows)),
               slice(max(found[1].start - pad, 0), min(found[1].stop + pad, cols)))
        region = (pieces[box] == number) & allowed[box]
        if not region.any():
            continue
        mask, _ = speck_outline(radiograph.pixels[box], background[box], region, allowed[box],
                                where[box], detection, spacing_mm)
        mask &= labels[box] == 0
        labels[box][mask] = number
    return labels


def _with_found(own: FilmDeposits, sought: FilmDeposits, outlines: np.ndarray,
                density: dict[int, float], new: np.ndarray, scores: Callable) -> FilmDeposits:
    """`own` with the `new` pixels of the `outlines`: the pieces on the other film's
    deposits, joined to the film's deposit they touch or numbered after them; `density`
    gives an outline's relative density, `scores` a piece's density-weighted score and
    integrated density (pixels)."""
    own_labels = np.asarray(own.labels)
    sought_labels = np.asarray(sought.labels)
    labels = own_labels.astype(np.int32, copy=True)
    rows = {int(r["deposit_id"]): dict(r) for r in own.rows}
    next_id = max([int(own_labels.max()), *rows]) + 1
    _, pieces = cv2.connectedComponents(new.astype(np.uint8), connectivity=8)
    touch = np.ones((3, 3), np.uint8)
    for number, found in enumerate(bounding_boxes(pieces), start=1):
        if found is None:
            continue
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in found)
        piece = pieces[box] == number
        sought_here = sought_labels[box][piece]
        if not sought_here.any():
            continue          # beyond both films' deposits: an outline's own spread
        beside = own_labels[box][cv2.dilate(piece.astype(np.uint8), touch) > 0]
        beside = beside[beside > 0]
        score, integrated = scores(pieces, number, (found[0].start, found[1].start,
                                                    found[0].stop, found[1].stop))
        if beside.size:
            deposit_id = int(np.bincount(beside).argmax())
            row = rows[deposit_id]
            row["integrated_density_px"] = _plus(integrated_density_px(row), integrated)
            row["density_score_px"] = _plus(row.get("density_score_px"), score)
            row["area_px"] = int(row["area_px"]) + int(piece.sum())
            row["found_again_px"] = int(row.get("found_again_px") or 0) + int(piece.sum())
        else:
            deposit_id, next_id = next_id, next_id + 1
            other = sought.row(int(np.bincount(sought_here[sought_here > 0]).argmax()))
            outline = np.asarray(outlines[box][piece])
            rows[deposit_id] = {
                "deposit_id": deposit_id, "area_px": int(piece.sum()),
                "region": other.get("region"), "found_again": True,
                "found_again_px": int(piece.sum()),
                "relative_density": density.get(int(np.bincount(outline).argmax())),
                "density_score_px": score, "integrated_density_px": integrated}
        labels[box][piece] = deposit_id
    return FilmDeposits(labels, tuple(rows.values()), own.pixel_area_mm2)


def _plus(total: float | None, more: float | None) -> float | None:
    return None if total is None or more is None else float(total) + more
