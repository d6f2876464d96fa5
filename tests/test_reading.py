"""Reading real CR/DX films: every codec, orientation, calibration and metadata."""

from __future__ import annotations

import numpy as np
import pytest

from imaging import SpacingSource, read_radiograph
from imaging.pseudonym import patient_key

ALL_FILMS = [
    "hand_pa_cr_j2k_lossless.dcm",
    "hip_cr_uncompressed.dcm",
    "hip_cr_rle.dcm",
    "tibia_cr_mono1_jpeg_lossless.dcm",
    "tibia_cr_mono1_jpegls_lossless.dcm",
    "chest_dx_mono1_inverse_plut_j2k.dcm",
    "dental_cr_modality_lut_sequence.dcm",
    "chest_cr_mono1_no_file_meta.dcm",
    "cspine_cr_16x16_imager_spacing_only.dcm",
]


def _patch(film, row, col, half=10):
    return float(np.median(film.pixels[row - half:row + half, col - half:col + half]))


@pytest.mark.parametrize("name", ALL_FILMS)
def test_every_real_film_reads(radiographs, name):
    film = read_radiograph(radiographs / name)
    assert film.pixels.dtype == np.float32
    assert film.pixels.ndim == 2 and min(film.shape) >= 16
    assert np.isfinite(film.pixels).all()
    assert not film.pixels.flags.writeable


@pytest.mark.parametrize("first, second", [
    ("hip_cr_uncompressed.dcm", "hip_cr_rle.dcm"),
    ("tibia_cr_mono1_jpeg_lossless.dcm", "tibia_cr_mono1_jpegls_lossless.dcm"),
])
def test_codecs_agree_bit_for_bit(radiographs, first, second):
    a, b = read_radiograph(radiographs / first), read_radiograph(radiographs / second)
    assert np.array_equal(a.pixels, b.pixels)


# (row, col) points picked by looking at the films: inside a bone, in soft tissue, in air.
ORIENTATION_POINTS = {
    "hand_pa_cr_j2k_lossless.dcm": ((1220, 1100), (1610, 855), (730, 290)),    # middle finger
    "hip_cr_uncompressed.dcm": ((1044, 1170), (1588, 1253), (1755, 626)),      # femoral shaft
    "tibia_cr_mono1_jpeg_lossless.dcm": ((687, 859), (687, 704), (687, 515)),  # tibial shaft
}


@pytest.mark.parametrize("name", sorted(ORIENTATION_POINTS))
def test_attenuation_positive_orientation(radiographs, name):
    film = read_radiograph(radiographs / name)
    bone, soft, air = (_patch(film, *point) for point in ORIENTATION_POINTS[name])
    assert bone > soft > air


def test_mono1_with_inverse_plut_shows_spine_brighter_than_lung(radiographs):
    # The DX module pairs INVERSE with MONOCHROME1: one inversion, not two.
    film = read_radiograph(radiographs / "chest_dx_mono1_inverse_plut_j2k.dcm")
    spine, lung = _patch(film, 1050, 1000, 40), _patch(film, 850, 450, 40)
    assert spine > lung
    assert "inverted" in film.photometric


def test_modality_lut_sequence_applied(radiographs):
    import pydicom
    from pydicom.pixels import apply_modality_lut

    path = radiographs / "dental_cr_modality_lut_sequence.dcm"
    ds = pydicom.dcmread(path)
    expected = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    film = read_radiograph(path)
    lut_range = float(expected.min()) + float(expected.max())
    # MONOCHROME1: the LUT output is inverted about the LUT's own range.
    assert np.corrcoef(film.pixels.ravel()[::97], expected.ravel()[::97])[0, 1] < -0.999
    assert film.pixels.max() <= lut_range


@pytest.mark.parametrize("name, spacing, source", [
    ("hand_pa_cr_j2k_lossless.dcm", (0.115, 0.115), SpacingSource.PIXEL_SPACING),
    ("hip_cr_rle.dcm", (0.2, 0.2), SpacingSource.PIXEL_SPACING),
    ("tibia_cr_mono1_jpeg_lossless.dcm", None, SpacingSource.NONE),
    ("cspine_cr_16x16_imager_spacing_only.dcm", (0.1, 0.1), SpacingSource.DETECTOR),
    ("chest_cr_mono1_no_file_meta.dcm", None, SpacingSource.NONE),
])
def test_calibration_from_header(radiographs, name, spacing, source):
    film = read_radiograph(radiographs / name)
    assert film.spacing_source is source
    assert film.spacing_mm == (pytest.approx(spacing) if spacing else None)


def test_user_spacing_overrides_and_is_recorded(radiographs):
    film = read_radiograph(radiographs / "tibia_cr_mono1_jpeg_lossless.dcm", user_spacing=0.16)
    assert film.spacing_mm == (0.16, 0.16) and film.spacing_source is SpacingSource.USER
    assert film.pixel_area_mm2 == pytest.approx(0.0256)


def test_metadata_is_pseudonymous(radiographs):
    import pydicom

    path = radiographs / "hand_pa_cr_j2k_lossless.dcm"
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    film = read_radiograph(path, pseudonym_key="study-secret")
    meta = film.metadata
    assert meta.patient_key == patient_key(ds.PatientID, ds.get("IssuerOfPatientID"), "study-secret")
    assert meta.patient_key != read_radiograph(path, pseudonym_key="other").metadata.patient_key
    assert str(ds.PatientName) not in repr(meta) and ds.PatientID not in repr(meta)
    assert meta.body_part == "HAND" and meta.study_date == "2011-02-18"
    assert meta.sop_instance_uid == ds.SOPInstanceUID


def test_laterality_and_view(radiographs):
    film = read_radiograph(radiographs / "tibia_cr_mono1_jpeg_lossless.dcm")
    assert film.metadata.laterality == "R" and film.metadata.view_position == "AP"


def test_dental_film_without_body_part_is_read_as_a_jaw(radiographs):
    """Its Body Part Examined is empty and its descriptions say "MODALITYLUT - TEETH"."""
    film = read_radiograph(radiographs / "dental_cr_modality_lut_sequence.dcm")
    assert film.metadata.body_part == "JAW"
    assert any("StudyDescription" in note and "TEETH" in note for note in film.notes)


@pytest.mark.parametrize("tags, part", [
    ({"SeriesDescription": "XRAY LEFT HAND PA"}, "HAND"),
    ({"StudyDescription": "HAND AND WRIST", "SeriesDescription": "Wrist lat"}, "WRIST"),
    ({"StudyDescription": "HAND AND WRIST"}, None),            # two parts named: none is sure
    ({"StudyDescription": "HANDOUT"}, None),                   # words, not substrings
    ({"Modality": "PX", "StudyDescription": "HAND"}, "JAW"),   # a panoramic dental modality
    ({"BodyPartExamined": "FOOT", "StudyDescription": "HAND"}, "FOOT"),
])
def test_body_part_from_descriptions_only_when_not_stated(tmp_path, tags, part):
    import pydicom

    from imaging.dicom import write_dicom

    path = tmp_path / "film.dcm"
    write_dicom(path, np.full((32, 32), 1000, np.uint16), spacing_mm=(0.1, 0.1), body_part="",
                series_description="")
    ds = pydicom.dcmread(path)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path)
    film = read_radiograph(path)
    assert film.metadata.body_part == part
    assert any("Body Part Examined is empty" in note for note in film.notes) == (
        part is not None and "BodyPartExamined" not in tags)


def test_display_window_follows_inversion(radiographs):
    film = read_radiograph(radiographs / "tibia_cr_mono1_jpeg_lossless.dcm")
    # Stored window 550/1024 on 10-bit MONOCHROME1 data: centre maps to 1023 - 550.
    assert film.display_window == (473.0, 1024.0)


@pytest.mark.parametrize("stem", ["RG1", "RG3"])
def test_pydicom_data_films_agree_across_codecs(stem):
    """WG04 films: UNCR is the original, J2KR its lossless copy, UNCI the lossy J2KI decoded."""
    pytest.importorskip("data_store", reason="pydicom-data (the test extra) is not installed")
    from pydicom.data import get_testdata_file

    film = {kind: read_radiograph(get_testdata_file(f"{stem}_{kind}.dcm"))
            for kind in ("UNCR", "J2KR", "UNCI", "J2KI")}
    assert np.array_equal(film["UNCR"].pixels, film["J2KR"].pixels)
    assert np.abs(film["J2KI"].pixels - film["UNCI"].pixels).max() <= 1
    assert np.abs(film["J2KI"].pixels - film["UNCR"].pixels).mean() < 0.01 * np.ptp(
        film["UNCR"].pixels)


def test_zero_pixel_spacing_is_treated_as_missing():
    """RG1 declares PixelSpacing 0\\0: never guess, say so."""
    pytest.importorskip("data_store", reason="pydicom-data (the test extra) is not installed")
    from pydicom.data import get_testdata_file

    film = read_radiograph(get_testdata_file("RG1_UNCR.dcm"))
    assert film.spacing_mm is None and film.spacing_source is SpacingSource.NONE
    assert any("PixelSpacing" in note for note in film.notes)


def test_written_films_are_byte_identical_for_a_uid_seed(tmp_path):
    from imaging.dicom import write_dicom
    from pydicom.uid import JPEG2000Lossless

    stored = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) % 4000)
    paths = [tmp_path / f"{i}.dcm" for i in range(3)]
    for path, seed in zip(paths, ("visit-1", "visit-1", "visit-2")):
        write_dicom(path, stored, spacing_mm=(0.1, 0.1), photometric="MONOCHROME1",
                    modality="DX", uid_seed=seed, transfer_syntax=JPEG2000Lossless)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()
    film = read_radiograph(paths[0])  # DX MONOCHROME1 + INVERSE: one inversion
    assert np.array_equal(film.pixels, (4095 - stored).astype(np.float32))
