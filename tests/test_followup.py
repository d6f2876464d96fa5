"""``calcitrack track`` / ``followup`` end to end on small phantom series (pipelines.followup)."""

from __future__ import annotations

import argparse
import csv
import sqlite3

import pytest

from imaging.evaluation import change_category
from imaging.phantom import SeriesSpec, make_series, write_series
from imaging.config import AnalysisConfig, RegistrationConfig, load_config
from pipelines import followup
from pipelines.batch import Workers
from pipelines.inputs import InputFile, image_ids
from pipelines.report import REPORT_NAME

FAST = AnalysisConfig(
    registration=RegistrationConfig(start_scales=(1.0,), start_rotation_step_deg=4.0))


@pytest.fixture(scope="module")
def series_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series")
    series = make_series(SeriesSpec("hand", seed=11, changes=("progression", "improvement"),
                                    spacing_mm=0.3, n_deposits=4, cnr_range=(8, 60),
                                    size_range_mm=(3, 10)))
    return series, [f.dicom for f in write_series(series, folder, "pt")]


def _cli(*argv):
    parser = argparse.ArgumentParser()
    followup.register(parser.add_subparsers())
    args = parser.parse_args([str(a) for a in argv])
    return args.handler(args)


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def tracked(series_files, tmp_path_factory):
    """`calcitrack track` run once on the series' first two visits: its output folder."""
    series, files = series_files
    out = tmp_path_factory.mktemp("tracked") / "out"
    assert _cli("track", files[0], files[1], "--out", out) == 0
    return out


@pytest.mark.slow
def test_track_two_films(tracked):
    out = tracked
    changes = _rows(out / "changes.csv")
    whole = [r for r in changes if r["region"] == "all"]
    assert len(whole) == 1 and whole[0]["status"] == "ok"
    category = change_category(float(whole[0]["baseline_area_mm2"]),
                               float(whole[0]["followup_area_mm2"]))
    assert whole[0]["category"] == category
    assert (whole[0]["response"] == "progression") == (category == "progression")
    assert float(whole[0]["registration_correlation"]) > 0.8
    # every region row adds up to the whole film
    regions = [r for r in changes if r["region"] != "all"]
    assert sum(float(r["followup_area_mm2"]) for r in regions) == pytest.approx(
        float(whole[0]["followup_area_mm2"]))
    for side in ("baseline", "followup"):
        assert sum(int(r[f"{side}_found_again_px"]) for r in regions) == int(
            whole[0][f"{side}_found_again_px"])
    matches = _rows(out / "matches.csv")
    assert {m["status"] for m in matches} <= {"persistent", "grown", "shrunk", "new", "resolved",
                                              "unseen"}
    compared = [m for m in matches if m["status"] != "unseen"]
    assert sum(1 for m in compared if m["followup_deposit_id"]) == int(
        whole[0]["followup_n_deposits"])
    # What the other film cannot show is listed, counted apart and left out of both totals.
    for side in ("baseline", "followup"):
        counted = sum(float(m[f"{side}_area_mm2"]) for m in compared if m[f"{side}_deposit_id"])
        assert counted == pytest.approx(float(whole[0][f"{side}_area_mm2"]))
        unseen = [m for m in matches if m["status"] == "unseen" and m[f"{side}_deposit_id"]]
        assert int(whole[0][f"{side}_n_unseen"]) == len(unseen)
        assert int(whole[0][f"{side}_unseen_px"]) == sum(int(m[f"{side}_area_px"])
                                                        for m in unseen)
        assert sum(int(r[f"{side}_n_unseen"]) for r in regions) == len(unseen)
    assert int(whole[0]["n_grown"]) + int(whole[0]["n_new"]) >= 1
    # The density scores: each film's own (images.csv) plus what was found again on it, less
    # what it cannot show; region rows add up to the whole film (CSV values are rounded).
    films = {r["image_id"]: r for r in _rows(out / "images.csv")}
    for side in ("baseline", "followup"):
        film = films[whole[0][f"{side}_image_id"]]
        for score in ("density_score", "integrated_density"):
            compared_score = float(whole[0][f"{side}_{score}"])
            assert sum(float(r[f"{side}_{score}"]) for r in regions) == pytest.approx(
                compared_score, abs=1e-3)
            if not int(whole[0][f"{side}_n_unseen"]):
                assert compared_score >= float(film[f"{score}_mm2"]) - 1e-3
                if not int(whole[0][f"{side}_found_again_px"]):
                    assert compared_score == pytest.approx(float(film[f"{score}_mm2"]),
                                                           abs=1e-3)
    assert float(whole[0]["density_score_change_pct"]) == pytest.approx(
        100 * (float(whole[0]["followup_density_score"])
               / float(whole[0]["baseline_density_score"]) - 1), rel=1e-4)
    assert list((out / "plots").glob("*.png"))
    with sqlite3.connect(out / "calcitrack.sqlite") as db:
        stored = db.execute("SELECT region, category, baseline_area_mm2, "
                            "followup_found_again_px, followup_density_score FROM comparisons "
                            "ORDER BY region").fetchall()
    assert ("all", category, pytest.approx(float(whole[0]["baseline_area_mm2"])),
            int(whole[0]["followup_found_again_px"]),
            pytest.approx(float(whole[0]["followup_density_score"]))) in stored
    assert len(stored) == len(changes)


def test_the_track_report_shows_the_comparison_and_the_plot(tracked, browser):
    from selenium.webdriver.common.by import By

    out = tracked
    (change,) = [row for row in _rows(out / "changes.csv") if row["region"] == "all"]
    browser.get((out / REPORT_NAME).as_uri())
    (line,) = browser.find_elements(By.CSS_SELECTOR, "#changes tr")[1:]
    cells = [cell.text for cell in line.find_elements(By.TAG_NAME, "td")]
    assert cells[:2] == [change["baseline_image_id"], change["followup_image_id"]]
    assert change["category"] in cells
    headings = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#changes th")]
    unseen = int(change["baseline_n_unseen"]) + int(change["followup_n_unseen"])
    assert cells[headings.index("unseen")] == str(unseen)
    assert cells[headings.index("density score change %")] == (
        f"{float(change['density_score_change_pct']):.1f}")
    (plot,) = browser.find_elements(By.CSS_SELECTOR, "img.plot")
    assert browser.execute_script("return arguments[0].naturalWidth", plot) > 0
    assert len(browser.find_elements(By.CSS_SELECTOR, "section")) == 2  # both films


@pytest.mark.slow
def test_track_two_films_finds_the_progression(series_files, tracked):
    """The follow-up's bone mask takes in the dense sheet along a finger that the baseline
    shows (issue #4): compared, it read as resolved and the +90 % progression as +17 %
    (stable). It is left out as unseen, and the rest shows the progression."""
    series, _ = series_files
    whole = [r for r in _rows(tracked / "changes.csv") if r["region"] == "all"]
    assert whole[0]["category"] == series.changes[0].category == "progression"
    unseen = [m for m in _rows(tracked / "matches.csv") if m["status"] == "unseen"]
    assert [(m["region"], bool(m["baseline_deposit_id"])) for m in unseen] == [("digit3", True)]
    with sqlite3.connect(tracked / "calcitrack.sqlite") as db:
        stored = db.execute("SELECT baseline_n_unseen, baseline_unseen_px FROM comparisons "
                            "WHERE region = 'digit3'").fetchall()
    assert stored == [(1, int(unseen[0]["baseline_area_px"]))]


@pytest.mark.slow
def test_three_visits_against_baseline_and_previous(series_files, tmp_path):
    series, files = series_files
    films, analysed = followup.analyse_films(files, tmp_path, FAST, workers=Workers(jobs=2))
    assert analysed.n_ok == 3
    v1, v2, v3 = image_ids(files)
    summary = followup.run_series([[films[v1], films[v2], films[v3]]], tmp_path, FAST)
    assert (summary.n_compared, summary.n_refused) == (3, 0)
    whole = {(r["baseline_image_id"], r["followup_image_id"]): r
             for r in _rows(tmp_path / "changes.csv") if r["region"] == "all"}
    assert set(whole) == {(v1, v2), (v2, v3), (v1, v3)}
    # (v1, v2) is the pair of `test_track_two_films_finds_the_progression`.
    assert whole[(v2, v3)]["category"] == series.changes[1].category
    assert whole[(v1, v3)]["category"] == change_category(series.visits[0].total_area_mm2,
                                                          series.visits[2].total_area_mm2)
    assert whole[(v2, v3)]["reference"] == "previous"
    assert whole[(v2, v3)]["response"] == ""
    assert (tmp_path / "masks" / f"{v1}.png").is_file() and (tmp_path / "images.csv").is_file()


def test_other_patient_is_refused(series_files, tmp_path):
    _, files = series_files
    other = make_series(SeriesSpec("hand", seed=12, changes=("stable",), spacing_mm=0.3,
                                   n_deposits=2, patient_id="PHANTOM-OTHER"))
    stranger = write_series(other, tmp_path / "other", "x")[0].dicom
    out = tmp_path / "out"
    assert _cli("track", files[0], stranger, "--out", out) == 1
    row, = _rows(out / "changes.csv")
    assert row["status"] == "refused" and "not the same anatomy" in row["reason"]
    with sqlite3.connect(out / "calcitrack.sqlite") as db:
        stored = db.execute("SELECT region, status, reason, category FROM comparisons").fetchall()
    assert stored == [("all", "refused", row["reason"], None)]


def test_track_takes_registration_settings_from_the_config(series_files, tmp_path):
    _, files = series_files
    strict = tmp_path / "strict.toml"
    strict.write_text("[registration]\nmin_correlation = 0.999\nstart_rotation_step_deg = 4.0\n")
    out = tmp_path / "out"
    assert _cli("track", files[0], files[1], "--out", out, "--config", strict) == 1
    row, = _rows(out / "changes.csv")
    assert row["status"] == "refused" and "minimum 0.999" in row["reason"]
    assert row["config_hash"] == load_config(strict).config_hash != AnalysisConfig().config_hash


def test_followup_groups_by_patient_and_orders_by_date(series_files, tmp_path):
    series, files = series_files
    films = [followup.AnalysedFilm(InputFile(p, f"v{i}"), _fake_result(f"v{i}", date, key))
             for i, (p, date, key) in enumerate([
                 (files[2], "2025-01-01", "a"), (files[0], "2024-01-01", "a"),
                 (files[1], "2024-06-01", "b"), (files[1], None, "a")])]
    groups, notes = followup.group_series(films)
    assert [[f.image_id for f in g] for g in groups] == [["v1", "v0"]]
    assert any("v2: the only film" in n for n in notes)
    assert any("v3: no patient key or study date" in n for n in notes)
    assert [(b.image_id, f.image_id, ref) for b, f, ref in followup.series_pairs(
        [films[1], films[0], films[2]])] == [
        ("v1", "v0", "baseline"), ("v1", "v2", "baseline"), ("v0", "v2", "previous")]


def test_usage_errors(tmp_path, series_files):
    _, files = series_files
    assert _cli("track", files[0], tmp_path, "--out", tmp_path / "o") == 2
    assert _cli("track", files[0], files[0], "--out", tmp_path / "o") == 2
    assert _cli("followup", tmp_path / "empty", "--out", tmp_path / "o") == 2


def _fake_result(image_id, date, key):
    from imaging.export import Status
    from pipelines.film import FilmResult
    row = {"image_id": image_id, "status": Status.OK, "study_date": date, "patient_key": key,
           "laterality": "R", "body_part": "HAND", "view_position": "PA"}
    return FilmResult(row)


@pytest.mark.slow
def test_a_deposit_found_where_the_films_differ_counts_in_its_region(tmp_path):
    """The serial benchmark's hand 3, visits 1 -> 2: the new deposit the follow-up's detector
    misses is found where the films differ (`imaging.subtraction`) and put in the hand
    region at its centroid, so the region rows still add up to the whole film."""
    series = make_series(SeriesSpec("hand", seed=3, changes=("new", "resolution"),
                                    laterality="L"))
    files = [f.dicom for f in write_series(series, tmp_path / "films", "h3")]
    out = tmp_path / "out"
    assert _cli("track", files[0], files[1], "--out", out) == 0
    changes = _rows(out / "changes.csv")
    whole = next(r for r in changes if r["region"] == "all")
    assert whole["category"] == "progression"
    found = [m for m in _rows(out / "matches.csv")
             if m["followup_found_again"] == "true" and not m["baseline_deposit_id"]]
    assert found and all(m["region"] not in ("", "all", "unassigned") for m in found)
    regions = [r for r in changes if r["region"] != "all"]
    assert sum(float(r["followup_area_mm2"]) for r in regions) == pytest.approx(
        float(whole["followup_area_mm2"]))
