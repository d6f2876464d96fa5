"""Bad input: every malformed or hostile file reads or raises one of our errors, quickly."""

from __future__ import annotations

import multiprocessing
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imaging import CalcitrackError, NotARadiograph, UnreadableInput, read_radiograph
from imaging.dicom import write_dicom

SECONDS_PER_FILE = 5.0


def _read_one(path: str) -> tuple[str, str, float]:
    start = time.perf_counter()
    try:
        read_radiograph(path)
        outcome = "read"
    except CalcitrackError as exc:
        message = str(exc)
        outcome = "ours" if path in message and "\n" not in message else f"bad message: {message!r}"
    except BaseException as exc:  # noqa: BLE001 - this is what the test looks for
        outcome = f"escaped {type(exc).__name__}: {exc}"
    return path, outcome, time.perf_counter() - start


def test_every_malformed_file_reads_or_raises_our_error_in_seconds(shared_data):
    files = sorted(str(p) for p in (shared_data / "malformed").rglob("*")
                   if p.is_file() and p.suffix.lower() not in (".md", ".json", ".txt")
                   and p.name != "LICENSE")
    assert len(files) >= 599
    problems, outcomes = [], {}
    context = multiprocessing.get_context("spawn")
    with context.Pool(2, maxtasksperchild=200) as pool:
        pending = [(path, pool.apply_async(_read_one, (path,))) for path in files]
        for path, result in pending:
            try:
                _, outcome, seconds = result.get(timeout=SECONDS_PER_FILE * 4)
            except multiprocessing.TimeoutError:
                problems.append(f"{path}: hung")
                continue
            outcomes[outcome.split(":")[0]] = outcomes.get(outcome.split(":")[0], 0) + 1
            if outcome not in ("read", "ours"):
                problems.append(f"{path}: {outcome}")
            elif seconds > SECONDS_PER_FILE:
                problems.append(f"{path}: took {seconds:.1f} s")
        pool.terminate()
    assert not problems, "\n".join(problems[:30])
    assert outcomes.get("ours", 0) > 300  # the corpus is hostile: most files must be refused


@pytest.mark.parametrize("relative, error", [
    ("malformed/pydicom/rtplan_truncated.dcm", NotARadiograph),
    ("malformed/pydicom/SC_rgb_small_odd.dcm", NotARadiograph),
    ("malformed/pydicom/OT-PAL-8-face.dcm", NotARadiograph),
    ("malformed/fo-dicom/multiframe.dcm", NotARadiograph),
    ("malformed/pydicom/MR_truncated.dcm", UnreadableInput),
    ("malformed/pydicom/MR_small_bigendian.dcm", NotARadiograph),
    ("malformed/fuzz_corpus/fuzz_corpus_v3/cat04_pixel_data/TC0291_buf_zero.dcm", UnreadableInput),
    ("malformed/fuzz_corpus/fuzz_corpus_v3/cat04_pixel_data/TC0339_mf_nf_million.dcm",
     UnreadableInput),
    ("malformed/pydicom/zipMR.gz", UnreadableInput),
])
def test_specific_errors(shared_data, relative, error):
    with pytest.raises(error) as caught:
        read_radiograph(shared_data / relative)
    assert str(shared_data / relative) in str(caught.value)
    assert "—" in str(caught.value)  # problem — remedy


def test_absurd_declared_size_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.dcm"
    write_dicom(path, np.zeros((8, 8), np.uint16), spacing_mm=(0.1, 0.1))
    import pydicom

    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = 65535
    ds.save_as(path)
    with pytest.raises(UnreadableInput, match="megapixel limit"):
        read_radiograph(path)


def test_not_an_image_at_all(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("this is a text file, not a film\n" * 20)
    with pytest.raises(UnreadableInput, match="not a DICOM file"):
        read_radiograph(path)


def test_missing_file(tmp_path):
    with pytest.raises(UnreadableInput, match="cannot open"):
        read_radiograph(tmp_path / "absent.dcm")


@pytest.fixture(scope="module")
def valid_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("valid") / "film.dcm"
    rng = np.random.default_rng(1)
    write_dicom(path, rng.integers(0, 4096, (24, 20)).astype(np.uint16), spacing_mm=(0.1, 0.1),
                photometric="MONOCHROME1")
    return path.read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_truncations_and_byte_flips_never_escape(valid_bytes, tmp_path, data):
    corrupted = bytearray(valid_bytes)
    if data.draw(st.booleans(), label="truncate"):
        corrupted = corrupted[:data.draw(st.integers(0, len(corrupted) - 1), label="length")]
    flips = data.draw(st.lists(st.tuples(st.integers(0, max(len(corrupted) - 1, 0)),
                                         st.integers(0, 255)), max_size=8), label="flips")
    for position, value in flips:
        if position < len(corrupted):
            corrupted[position] = value
    path = tmp_path / "corrupt.dcm"
    path.write_bytes(bytes(corrupted))
    try:
        film = read_radiograph(path)
    except CalcitrackError as exc:
        assert str(path) in str(exc)
    else:
        assert film.pixels.ndim == 2 and np.isfinite(film.pixels).all()


def test_plain_images(tmp_path):
    from PIL import Image

    grey16 = (np.arange(40 * 30, dtype=np.uint16).reshape(40, 30) * 50)
    Image.fromarray(grey16).save(tmp_path / "film.png")
    film = read_radiograph(tmp_path / "film.png", user_spacing=0.2)
    assert np.array_equal(film.pixels, grey16) and film.spacing_source.value == "user"
    uncalibrated = read_radiograph(tmp_path / "film.png")
    assert uncalibrated.spacing_mm is None and uncalibrated.notes

    Image.fromarray((grey16 // 256).astype(np.uint8)).save(tmp_path / "film8.tif")
    assert read_radiograph(tmp_path / "film8.tif").shape == (40, 30)

    colour = np.zeros((10, 10, 3), np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(NotARadiograph, match="colour"):
        read_radiograph(tmp_path / "colour.png")

    truncated = (tmp_path / "film.png").read_bytes()[:200]
    (tmp_path / "cut.png").write_bytes(truncated)
    with pytest.raises(UnreadableInput):
        read_radiograph(tmp_path / "cut.png")
