"""Exporters: CSV cells and files, 16-bit label images, rows and QC overlays (no detector)."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
from PIL import Image

import imaging
from imaging import Radiograph, SpacingSource
from imaging.anatomy import Anatomy
from imaging.burden import DepositInfo
from imaging.config import AnalysisConfig
from imaging.deposits import DepositFindings, DepositSearch
from imaging.export import (
    DEPOSIT_COLUMNS,
    IMAGE_COLUMNS,
    QC_LONG_SIDE_PX,
    Provenance,
    Status,
    deposit_rows,
    encode_png,
    format_cell,
    image_row,
    label_image,
    qc_overlay,
    write_csv,
)
from imaging.files import write_bytes
from imaging.measure import DepositMeasures
from imaging.preprocess import AnalysisGrid

PROVENANCE = Provenance("9.9.9", "abcdef012345")


def _film(shape=(60, 80), spacing=(0.2, 0.25), window=None) -> Radiograph:
    pixels = np.linspace(0, 1000, shape[0] * shape[1], dtype=np.float32).reshape(shape)
    source = SpacingSource.NONE if spacing is None else SpacingSource.PIXEL_SPACING
    return Radiograph(pixels, spacing, source, "film.dcm", display_window=window)


def _findings(film: Radiograph, labels: np.ndarray) -> DepositFindings:
    """Findings with hand-made measures: mm values present even for uncalibrated films, as a
    careless detector might give, to check the exporter leaves them out."""
    deposits = []
    for label in range(1, int(labels.max()) + 1):
        rows, cols = np.nonzero(labels == label)
        deposits.append(DepositMeasures(
            label=label, area_px=rows.size, area_mm2=rows.size * 0.05,
            centroid_row=float(rows.mean()), centroid_col=float(cols.mean()),
            bbox=(int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1),
            equivalent_diameter_mm=1.0, equivalent_diameter_px=5.0, major_axis_mm=1.2,
            minor_axis_mm=0.8, eccentricity=0.5, solidity=1.0, mean_contrast=10.0,
            peak_contrast=20.0, noise_sigma=2.0, cnr=5.0, rim_contrast=8.0, rim_cnr=4.0,
            relative_density=0.5 * label,
            peak_relative_density=float("nan")))
    grid_shape = (film.shape[0] // 2, film.shape[1] // 2)
    bone = np.zeros(grid_shape, bool)
    bone[:, :5] = True
    excluded = np.zeros(grid_shape, bool)
    excluded[-4:, :] = True
    anatomy = Anatomy(np.ones(grid_shape, bool), bone, excluded, 100.0, 50.0)
    spacing = film.spacing_mm or (0.15, 0.15)
    grid = AnalysisGrid(np.zeros(grid_shape, np.float32), 0.4, film.shape, spacing,
                        nominal=film.spacing_mm is None)
    search = DepositSearch(grid, anatomy, anatomy.soft_tissue, np.zeros(grid_shape, np.float32),
                           np.zeros(grid_shape, np.float32))
    return DepositFindings(labels.astype(np.int32), tuple(deposits), search)


def _labels(shape=(60, 80)) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    labels[10:14, 30:35] = 1
    labels[40:41, 60:62] = 2
    return labels


@pytest.mark.parametrize("value, text", [
    (None, ""), (float("nan"), ""), (np.float32("nan"), ""), (0.1 + 0.2, "0.3"),
    (-0.0, "0"), (123456789.0, "1.23457e+08"), (np.float32(0.1), "0.1"), (2.5e-7, "2.5e-07"),
    (7, "7"), (np.int64(65535), "65535"), (True, "true"), ("two\nlines", "two lines"),
    (Status.SKIPPED, "skipped"), (SpacingSource.NONE, "none"),
])
def test_cells_are_formatted_stably(value, text):
    assert format_cell(value) == text


def test_csv_has_the_columns_in_order_and_empty_cells_for_missing_values(tmp_path):
    path = tmp_path / "table.csv"
    write_csv(path, [{"b": 1.5, "a": None}, {"a": "x"}], ("a", "b", "c"))
    assert path.read_text(encoding="utf-8") == "a,b,c\n,1.5,\nx,,\n"


def test_a_failed_csv_write_leaves_the_old_file_and_no_temporary_files(tmp_path):
    path = tmp_path / "table.csv"
    write_csv(path, [{"a": 1}], ("a",))
    with pytest.raises(ValueError):
        write_csv(path, [{"a": 2}, {"not_a_column": 3}], ("a",))
    assert path.read_text() == "a\n1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_label_png_round_trips_16_bit_values_and_shape(tmp_path):
    labels = np.zeros((7, 5), np.int32)
    labels[0, 0], labels[3, 4], labels[6, 1] = 1, 256, 65535
    path = tmp_path / "mask.png"
    write_bytes(path, encode_png(label_image(labels)))
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and back.shape == (7, 5)
    np.testing.assert_array_equal(back, labels)
    with Image.open(path) as image:
        assert image.mode.startswith("I") and image.size == (5, 7)
    assert [p.name for p in tmp_path.iterdir()] == ["mask.png"]


@pytest.mark.parametrize("bad, message", [
    (np.full((2, 2), 65536, np.int32), "16-bit"),
    (np.full((2, 2), -1, np.int32), "negative"),
    (np.zeros((2, 2), np.float32), "integer"),
    (np.zeros((2, 2, 2), np.int32), "2-D"),
])
def test_label_images_that_do_not_fit_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        label_image(bad)


def _infos(findings):
    regions = ("digit2", "palm")
    return tuple(DepositInfo(deposit.label, regions[index % 2], False, index == 0,
                             0.5 if index == 0 else 9.0, "stone", 2, 2.0 * deposit.area_px,
                             1, 1.5)
                 for index, deposit in enumerate(findings.deposits))


def test_calibrated_rows_carry_areas_in_mm2_from_the_film_spacing():
    film = _film(spacing=(0.2, 0.25))
    findings = _findings(film, _labels())
    row = image_row("f", "film.dcm", PROVENANCE, radiograph=film, findings=findings,
                    mask_path="masks/f.png")
    assert tuple(row) == IMAGE_COLUMNS
    assert row["status"] is Status.OK and row["spacing_source"] is SpacingSource.PIXEL_SPACING
    assert (row["n_deposits"], row["total_area_px"], row["largest_area_px"]) == (2, 22, 20)
    assert row["total_area_mm2"] == pytest.approx(22 * 0.05)
    assert row["largest_area_mm2"] == pytest.approx(20 * 0.05)
    assert row["mean_relative_density"] == pytest.approx((20 * 0.5 + 2 * 1.0) / 22)
    assert row["nominal_spacing_mm"] is None
    deposits = deposit_rows("f", film, findings, PROVENANCE, _infos(findings))
    assert [tuple(r) for r in deposits] == [DEPOSIT_COLUMNS] * 2
    assert [r["deposit_id"] for r in deposits] == [1, 2]
    assert deposits[0]["area_mm2"] == pytest.approx(1.0)
    assert deposits[0]["density_score_mm2"] == pytest.approx(2.0)
    assert [r["region"] for r in deposits] == ["digit2", "palm"]
    assert [r["periarticular"] for r in deposits] == [True, False]
    assert all(r["config_hash"] == "abcdef012345" for r in deposits)


def test_uncalibrated_rows_have_pixels_but_never_mm():
    film = _film(spacing=None)
    findings = _findings(film, _labels())
    row = image_row("f", "film.dcm", PROVENANCE, radiograph=film, findings=findings)
    assert row["spacing_source"] is SpacingSource.NONE
    assert row["spacing_row_mm"] is None and row["spacing_col_mm"] is None
    assert row["total_area_px"] == 22 and row["nominal_spacing_mm"] == 0.15
    assert row["total_area_mm2"] is None and row["largest_area_mm2"] is None
    assert "uncalibrated" in row["notes"]
    for deposit in deposit_rows("f", film, findings, PROVENANCE, _infos(findings)):
        assert deposit["area_px"] > 0 and deposit["equivalent_diameter_px"] == 5.0
        assert all(deposit[name] is None for name in
                   ("area_mm2", "equivalent_diameter_mm", "major_axis_mm", "minor_axis_mm",
                    "density_score_mm2"))


def test_an_error_row_keeps_what_is_known():
    film = _film()
    row = image_row("f", "film.dcm", PROVENANCE, status=Status.ERROR, radiograph=film,
                    error="film.dcm: broken — fix it")
    assert row["error"] == "film.dcm: broken — fix it" and row["rows"] == 60
    assert row["n_deposits"] is None and row["mask_path"] is None
    assert row["calcitrack_version"] == "9.9.9"


def test_provenance_names_this_package_and_the_configuration():
    config = AnalysisConfig()
    assert Provenance.of(config) == Provenance(imaging.__version__, config.config_hash)


@pytest.mark.parametrize("shape, window", [((60, 80), None), ((3000, 1000), (500.0, 400.0))])
def test_qc_overlay_is_a_colour_image_scaled_to_view(shape, window):
    film = _film(shape, window=window)
    labels = np.zeros(shape, np.int32)
    labels[10:14, 30:35] = 1
    overlay = qc_overlay(film, _findings(film, labels), "f")
    assert overlay.dtype == np.uint8 and overlay.ndim == 3 and overlay.shape[2] == 3
    low, high = QC_LONG_SIDE_PX
    film_rows = round(shape[0] * min(max(max(shape), low), high) / max(shape))
    assert overlay.shape[0] > film_rows  # the title band sits above the film
    assert max(overlay.shape[:2]) <= high + 100
    red = (overlay[..., 2] > 200) & (overlay[..., 0] < 120) & (overlay[..., 1] < 120)
    assert red.any()  # the deposit is outlined


def test_csv_rows_read_back_with_the_csv_module(tmp_path):
    film = _film()
    findings = _findings(film, _labels())
    path = tmp_path / "deposits.csv"
    write_csv(path, deposit_rows("f", film, findings, PROVENANCE, _infos(findings)),
              DEPOSIT_COLUMNS)
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["area_px"] for r in rows] == ["20", "2"]
    assert rows[0]["peak_relative_density"] == ""  # NaN is an empty cell
