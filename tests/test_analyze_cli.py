"""`calcitrack analyze` end to end: the output contract, not the detector's accuracy."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import imaging
from imaging.config import AnalysisConfig, load_config
from imaging.dicom import write_dicom
from pipelines.inputs import image_ids, skip_reason
from pipelines.cli import main

SPACING_MM = 0.2
SHAPE = (400, 400)


@pytest.fixture(scope="module")
def films(tmp_path_factory, disc_film) -> Path:
    folder = tmp_path_factory.mktemp("films")
    stored = disc_film(SHAPE, SPACING_MM, 34.0, [(-15, 15, 1.5), (12, -18, 2.0), (18, 14, 1.0)])
    write_dicom(folder / "visit1_hand.dcm", stored, spacing_mm=(SPACING_MM, SPACING_MM))
    write_dicom(folder / "uncalibrated" / "visit1_hand.dcm", stored, spacing_mm=None)
    whole = (folder / "visit1_hand.dcm").read_bytes()
    (folder / "broken.dcm").write_bytes(whole[: len(whole) // 3])
    (folder / "README.md").write_text("# films for the test\n")
    cv2.imwrite(str(folder / "visit1_hand.truth.png"), np.zeros(SHAPE, np.uint16))
    return folder


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def run(films, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    code = main(["analyze", str(films), "--out", str(out)])
    images = {row["image_id"]: row for row in _read_csv(out / "images.csv")}
    deposits = _read_csv(out / "deposits.csv")
    return code, out, images, deposits


def test_some_failed_gives_exit_code_1_and_every_input_a_row(run):
    code, _, images, _ = run
    assert code == 1
    assert {i: r["status"] for i, r in images.items()} == {
        "README.md": "skipped", "broken": "error", "uncalibrated__visit1_hand": "ok",
        "visit1_hand": "ok", "visit1_hand.truth": "skipped"}


def test_a_broken_file_gets_a_one_line_error_naming_it(run):
    row = run[2]["broken"]
    assert "broken.dcm" in row["error"] and "—" in row["error"] and "\n" not in row["error"]
    assert row["mask_path"] == "" and row["n_deposits"] == ""


def test_skipped_files_say_why(run):
    images = run[2]
    assert "neither DICOM" in images["README.md"]["notes"]
    assert "ground-truth" in images["visit1_hand.truth"]["notes"]


def test_masks_have_the_source_shape_and_agree_with_the_deposit_areas(run):
    _, out, images, deposits = run
    checked = 0
    for image_id, image in images.items():
        if image["status"] != "ok":
            continue
        mask = cv2.imread(str(out / image["mask_path"]), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint16
        assert mask.shape == (int(image["rows"]), int(image["cols"])) == SHAPE
        counts = np.bincount(mask.ravel())
        rows = [d for d in deposits if d["image_id"] == image_id]
        assert sorted(int(d["deposit_id"]) for d in rows) == [
            label for label in range(1, counts.size) if counts[label]]
        assert int(image["n_deposits"]) == len(rows)
        assert int(image["total_area_px"]) == sum(int(d["area_px"]) for d in rows)
        for deposit in rows:
            assert int(deposit["area_px"]) == counts[int(deposit["deposit_id"])]
        if image["spacing_source"] == "none":
            continue
        pixel_area = float(image["spacing_row_mm"]) * float(image["spacing_col_mm"])
        for deposit in rows:
            expected = counts[int(deposit["deposit_id"])] * pixel_area
            assert float(deposit["area_mm2"]) == pytest.approx(expected, rel=1e-5)
        total = sum(float(d["area_mm2"]) for d in rows)
        assert float(image["total_area_mm2"]) == pytest.approx(total, rel=1e-5)
        checked += len(rows)
    # Guards against a vacuous check: the calibrated film's blobs and bone bar give the
    # detector something to label, whatever it makes of them.
    assert checked > 0


def test_the_uncalibrated_film_has_pixels_but_no_mm(run):
    _, _, images, deposits = run
    image = images["uncalibrated__visit1_hand"]
    assert image["spacing_source"] == "none"
    assert image["spacing_row_mm"] == image["spacing_col_mm"] == ""
    assert image["total_area_mm2"] == image["largest_area_mm2"] == ""
    assert image["total_area_px"] != "" and float(image["nominal_spacing_mm"]) > 0
    for deposit in (d for d in deposits if d["image_id"] == "uncalibrated__visit1_hand"):
        assert deposit["spacing_source"] == "none" and int(deposit["area_px"]) > 0
        assert deposit["area_mm2"] == deposit["equivalent_diameter_mm"] == ""
        assert deposit["major_axis_mm"] == deposit["minor_axis_mm"] == ""
    assert images["visit1_hand"]["spacing_source"] == "pixel_spacing"
    assert images["visit1_hand"]["total_area_mm2"] != ""


def test_every_row_carries_the_provenance(run):
    _, _, images, deposits = run
    expected = (imaging.__version__, AnalysisConfig().config_hash)
    for row in [*images.values(), *deposits]:
        assert (row["calcitrack_version"], row["config_hash"]) == expected


def test_qc_overlays_are_valid_images(run):
    _, out, images, _ = run
    for image in images.values():
        if image["status"] == "ok":
            overlay = cv2.imread(str(out / image["qc_path"]))
            assert overlay is not None and overlay.ndim == 3


def test_no_temporary_files_are_left(run):
    out = run[1]
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]


def test_a_second_run_gives_byte_identical_tables_and_masks(run, films, tmp_path):
    _, out, images, _ = run
    assert main(["analyze", str(films), "--out", str(tmp_path)]) == 1
    for name in ("images.csv", "deposits.csv"):
        assert (out / name).read_bytes() == (tmp_path / name).read_bytes()
    for image in images.values():
        if image["mask_path"]:
            mask = image["mask_path"]
            assert (out / mask).read_bytes() == (tmp_path / mask).read_bytes()


def test_no_qc_writes_no_overlays(films, tmp_path):
    assert main(["analyze", str(films / "visit1_hand.dcm"), "--out", str(tmp_path),
                 "--no-qc"]) == 0
    (row,) = _read_csv(tmp_path / "images.csv")
    assert row["qc_path"] == "" and (tmp_path / row["mask_path"]).is_file()
    assert not (tmp_path / "qc").exists()


def test_an_invalid_config_key_is_a_one_line_usage_error(films, tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text("[detection]\nseed_cnr = 4.0\nno_such_setting = 1.0\n")
    code = main(["analyze", str(films), "--out", str(tmp_path / "out"), "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "no_such_setting" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_folder_without_films_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["analyze", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert "no input files found" in capsys.readouterr().err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("nothing here\n")
    assert main(["analyze", str(tmp_path / "notes"), "--out", str(tmp_path / "out")]) == 2
    assert "all skipped" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_config_show_round_trips_through_load_config(tmp_path, capsys):
    assert main(["config", "--show"]) == 0
    shown = tmp_path / "shown.toml"
    shown.write_text(capsys.readouterr().out)
    assert load_config(shown) == AnalysisConfig()
    # whole numbers stay whole: the hash of the shown defaults is the defaults' hash
    assert load_config(shown).config_hash == AnalysisConfig().config_hash

    overrides = tmp_path / "overrides.toml"
    overrides.write_text("max_megapixels = 100\n[grid]\nspacing_mm = 0.25\n"
                         "[detection]\nscales_mm = [2.0, 1.0]\n"
                         "[registration]\nshrink_factors = [8, 2]\nsmoothing_mm = [3.2, 0]\n"
                         "[compare.repeatability]\nrelative_sdd = 0.3\n")
    assert main(["config", "--show", "--config", str(overrides)]) == 0
    text = capsys.readouterr().out
    assert "spacing_mm = 0.25  # default: 0.2" in text
    shown.write_text(text)
    loaded = load_config(shown)
    assert loaded == load_config(overrides)
    assert loaded.config_hash != AnalysisConfig().config_hash
    # resolution levels keep their order, coarsest first
    assert loaded.registration.shrink_factors == (8, 2)
    assert loaded.registration.smoothing_mm == (3.2, 0.0)
    assert loaded.compare.repeatability.relative_sdd == 0.3


def test_image_ids_are_sanitised_relative_paths_made_unique():
    assert image_ids(["/d/visit1/hand.dcm", "/d/visit2/hand.dcm", "/d/visit2/Hand 2.png",
                      "/d/visit2/1.2.840.5"]) == [
        "visit1__hand", "visit2__hand", "visit2__Hand_2", "visit2__1.2.840.5"]
    ids = image_ids(["/d/a.dcm", "/d/A.png", "/d/a b.dcm", "/d/a_b.dcm"])
    assert len({i.lower() for i in ids}) == 4
    assert all(i.startswith(("a-", "A-", "a_b-")) for i in ids)
    assert image_ids(["/only/film.dcm"]) == ["film"]


def test_skip_reason_recognises_films_by_content(tmp_path, films):
    (tmp_path / "film_without_extension").write_bytes((films / "visit1_hand.dcm").read_bytes())
    (tmp_path / "image.bin").write_bytes(cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1])
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "empty.dcm").write_bytes(b"")
    assert skip_reason(tmp_path / "film_without_extension") is None
    assert skip_reason(tmp_path / "image.bin") is None
    assert skip_reason(tmp_path / "empty.dcm") is None  # named DICOM: the reader reports it
    assert skip_reason(tmp_path / "missing.dcm") is None
    assert skip_reason(tmp_path / "empty") == "empty file"
    assert skip_reason(films / "README.md") is not None


def test_a_missing_file_is_an_error_row_not_a_crash(films, tmp_path, capsys):
    missing = films / "no_such_film.dcm"
    code = main(["analyze", str(missing), str(films / "broken.dcm"), "--out", str(tmp_path)])
    assert code == 1
    rows = {row["image_id"]: row for row in _read_csv(tmp_path / "images.csv")}
    assert rows["no_such_film"]["status"] == "error"
    assert "no_such_film.dcm" in rows["no_such_film"]["error"]
    err = capsys.readouterr().err
    assert "Traceback" not in err and "0 films analysed, 2 failed" in err


# --- burden per region, user regions, DICOM SEG/SR -------------------------------------------

def test_regions_csv_sums_to_the_film_totals(run):
    _, out, images, deposits = run
    regions = _read_csv(out / "regions.csv")
    for image_id, image in images.items():
        if image["status"] != "ok":
            assert not [r for r in regions if r["image_id"] == image_id]
            continue
        rows = [r for r in regions if r["image_id"] == image_id]
        assert rows[-1]["region"] == "all"
        assert int(rows[-1]["n_deposits"]) == int(image["n_deposits"])
        assert int(rows[-1]["area_px"]) == int(image["total_area_px"])
        parts = rows[:-1]  # none when the film is one region ('all')
        names = {r["region"] for r in rows}
        assert {d["region"] for d in deposits if d["image_id"] == image_id} <= names
        if parts:
            assert sum(int(r["n_deposits"]) for r in parts) == int(image["n_deposits"])
            assert sum(int(r["area_px"]) for r in parts) == int(image["total_area_px"])
        assert rows[-1]["severity"] == image["severity"]


def _write_geojson(path: Path, features, units="mm") -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "units": units,
                                "features": features}))
    return path


def _square(name, x0, y0, x1, y1):
    return {"type": "Feature", "properties": {"name": name},
            "geometry": {"type": "Polygon",
                         "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}


def test_user_regions_from_geojson_name_the_deposits(films, tmp_path):
    half = 30.0  # mm from the left edge: no deposit of the film lies near it
    zones = _write_geojson(tmp_path / "zones.geojson", [
        _square("left", 0, 0, half, SHAPE[0] * SPACING_MM),
        _square("right", half, 0, SHAPE[1] * SPACING_MM, SHAPE[0] * SPACING_MM)])
    out = tmp_path / "out"
    assert main(["analyze", str(films / "visit1_hand.dcm"), "--out", str(out), "--no-qc",
                 "--regions", str(zones)]) == 0
    deposits = _read_csv(out / "deposits.csv")
    assert deposits and {d["region"] for d in deposits} <= {"left", "right"}
    for deposit in deposits:
        expected = "left" if float(deposit["centroid_col"]) * SPACING_MM < half else "right"
        assert deposit["region"] == expected
    (image,) = _read_csv(out / "images.csv")
    assert image["region_scheme"] == "user"


@pytest.mark.parametrize("content, message", [
    ("{not json", "JSON"),
    ('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, '
     '"geometry": {"type": "Point", "coordinates": [1, 2]}}]}', "Polygon"),
])
def test_an_invalid_region_file_is_a_usage_error_naming_it(films, tmp_path, capsys, content,
                                                           message):
    zones = tmp_path / "zones.geojson"
    zones.write_text(content)
    assert main(["analyze", str(films / "visit1_hand.dcm"), "--out", str(tmp_path / "out"),
                 "--regions", str(zones)]) == 2
    err = capsys.readouterr().err
    assert "zones.geojson" in err and message in err
    assert not (tmp_path / "out" / "images.csv").exists()


def test_dicom_results_are_a_seg_and_an_sr_that_highdicom_reads(films, tmp_path):
    import highdicom as hd
    import pydicom

    out = tmp_path / "out"
    assert main(["analyze", str(films / "visit1_hand.dcm"), "--out", str(out), "--no-qc",
                 "--dicom-results"]) == 0
    (image,) = _read_csv(out / "images.csv")
    seg = hd.seg.segread(out / image["seg_path"])
    source = pydicom.dcmread(films / "visit1_hand.dcm")
    mask = cv2.imread(str(out / image["mask_path"]), cv2.IMREAD_UNCHANGED)
    segment = seg.get_pixels_by_source_instance(
        [source.SOPInstanceUID], segment_numbers=[1]).squeeze()
    assert np.array_equal(segment > 0, mask > 0)
    sr = pydicom.dcmread(out / image["sr_path"])
    assert sr.Modality == "SR" and sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comp. 3D
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    report = hd.sr.srread(out / image["sr_path"])
    groups = report.content.get_planar_roi_measurement_groups()
    assert len(groups) == len(_read_csv(out / "regions.csv"))
