"""Batch runs: parallel and Dask runs agree byte for byte, resume, survive kill -9, guard time."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from imaging.config import AnalysisConfig, config_from_dict
from imaging.dicom import write_dicom
from pipelines.batch import Workers, analyze_files
from pipelines.cli import main
from pipelines.store import DATABASE_NAME

SPACING_MM = 0.2
SHAPE = (300, 300)
SAMPLE_IMAGES = Path(__file__).resolve().parents[1] / "sample_images"
#: Malformed files taken from every subfolder of ../shared/data/malformed (the whole set runs
#: in test_bad_input; here they only need to be mixed into a batch).
MALFORMED_PER_FOLDER = 3


def _write_disc_films(folder: Path, disc_film, count: int) -> None:
    for seed in range(count):
        film = disc_film(SHAPE, SPACING_MM, 26.0,
                         [(-12, 12, 1.5), (10, -14, 2.0 + 0.3 * seed)], seed)
        write_dicom(folder / f"patient{seed}" / f"hand{seed}.dcm", film,
                    spacing_mm=(SPACING_MM, SPACING_MM), patient_id=f"P{seed}")


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, disc_film, shared_data) -> Path:
    """Small films, malformed DICOM from ../shared/data and junk, in nested folders."""
    folder = tmp_path_factory.mktemp("archive")
    _write_disc_films(folder / "films", disc_film, 6)
    for source in sorted((shared_data / "malformed").iterdir()):
        if source.is_dir():
            for path in sorted(p for p in source.rglob("*") if p.is_file())[:MALFORMED_PER_FOLDER]:
                target = folder / "malformed" / source.name / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
    junk = folder / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("visit notes, not a film\n")
    (junk / "empty.dcm").write_bytes(b"")
    (junk / "noextension").write_bytes(os.urandom(4096))
    return folder


def _outputs(out: Path) -> dict[str, bytes]:
    """Every output file except the database, by relative path."""
    return {path.relative_to(out).as_posix(): path.read_bytes()
            for path in sorted(out.rglob("*"))
            if path.is_file() and not path.name.startswith(DATABASE_NAME)}


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_one_two_jobs_and_a_dask_cluster_give_identical_outputs(mixed_folder, tmp_path):
    config = AnalysisConfig()
    summaries, outputs = {}, {}
    for name, workers in (("jobs1", Workers(jobs=1)), ("jobs2", Workers(jobs=2)),
                          ("dask2", Workers(dask_local=2))):
        out = tmp_path / name
        summaries[name] = analyze_files([mixed_folder], out, config, workers=workers)
        outputs[name] = _outputs(out)
    summary = summaries["jobs1"]
    assert summary.n_ok >= 6 and summary.n_failed > 10 and summary.n_skipped >= 2
    assert summary.n_inputs == summary.n_ok + summary.n_failed + summary.n_skipped
    assert outputs["jobs1"] == outputs["jobs2"] == outputs["dask2"]
    images = _read_csv(tmp_path / "jobs1" / "images.csv")
    assert len(images) == summary.n_inputs, "every input file has its row"
    assert all(row["error"] for row in images if row["status"] == "error")
    assert {row["source_path"].split("/junk/")[-1] for row in images
            if row["status"] == "skipped"} >= {"notes.txt", "noextension"}
    assert summaries["jobs2"].peak_worker_memory_mb < 1536


def test_a_rerun_reuses_finished_films_and_a_new_configuration_recomputes(mixed_folder,
                                                                          tmp_path):
    out = tmp_path / "out"
    first = analyze_files([mixed_folder / "films"], out, AnalysisConfig(), workers=Workers(jobs=2))
    before = _outputs(out)
    mtimes = {path: path.stat().st_mtime_ns for path in (out / "masks").iterdir()}
    again = analyze_files([mixed_folder / "films"], out, AnalysisConfig(), workers=Workers(jobs=2))
    assert again.n_reused == first.n_ok == 6
    assert _outputs(out) == before, "reused rows must be written exactly as computed"
    assert {path: path.stat().st_mtime_ns for path in (out / "masks").iterdir()} == mtimes

    other = config_from_dict({"detection": {"min_area_mm2": 1.0}})
    changed = analyze_files([mixed_folder / "films"], out, other, workers=Workers(jobs=2))
    assert changed.n_reused == 0 and changed.n_ok == 6
    respaced = analyze_files([mixed_folder / "films"], out, AnalysisConfig(),
                             user_spacing=(0.25, 0.25), workers=Workers(jobs=2))
    assert respaced.n_reused == 0


def test_a_film_over_the_time_limit_fails_alone(mixed_folder, tmp_path, disc_film):
    """A film far over the limit (a 3000 x 3000 film: seconds) gets an error row; the six
    small films (a tenth of a second each) of the same batch are analysed. (Pebble checks
    its time limits every 0.1 s, so the limit sits well clear of both.)"""
    slow = tmp_path / "films" / "slow.dcm"
    write_dicom(slow, disc_film((3000, 3000), SPACING_MM, 26.0, [(-12, 12, 1.5)]),
                spacing_mm=(SPACING_MM, SPACING_MM), patient_id="SLOW")
    out = tmp_path / "out"
    summary = analyze_files([mixed_folder / "films", slow], out, AnalysisConfig(),
                            workers=Workers(jobs=2, timeout_s=1.0))
    assert (summary.n_ok, summary.n_failed) == (6, 1)
    failed = [row for row in _read_csv(out / "images.csv") if row["status"] == "error"]
    assert failed[0]["source_path"].endswith("slow.dcm")
    assert "time limit of 1 s" in failed[0]["error"]


def test_a_film_over_the_time_limit_on_dask_is_an_error_row(tmp_path):
    out = tmp_path / "out"
    summary = analyze_files([SAMPLE_IMAGES / "hand_patient1_v1.dcm"], out, AnalysisConfig(),
                            workers=Workers(dask_local=1, timeout_s=0.2))
    (row,) = _read_csv(out / "images.csv")
    assert summary.n_failed == 1 and row["status"] == "error"
    assert "time limit (0.2 s, --timeout)" in row["error"]


def test_a_film_over_the_memory_guard_fails_with_the_remedy(mixed_folder, tmp_path):
    out = tmp_path / "out"
    summary = analyze_files([SAMPLE_IMAGES / "lower_leg_patient3.dcm"], out, AnalysisConfig(),
                            workers=Workers(jobs=1, memory_limit_mb=40))
    assert summary.n_failed == 1
    (row,) = _read_csv(out / "images.csv")
    assert "memory" in row["error"] and "--memory-limit-mb" in row["error"]


def test_progress_goes_to_a_log_when_not_on_a_terminal(mixed_folder, tmp_path, capsys):
    assert main(["analyze", str(mixed_folder / "films"), str(mixed_folder / "junk"), "--out",
                 str(tmp_path / "out"), "--no-qc", "--jobs", "2"]) == 1  # empty.dcm fails
    err = capsys.readouterr().err
    assert "calcitrack: 9/9 files (ok 6, failed 1, skipped 2)" in err
    assert "films/s" in err and "empty.dcm" in err
    assert "6 films analysed, 1 failed, 2 skipped" in err


@pytest.mark.parametrize("arguments", [["--jobs", "0"], ["--timeout", "-1"],
                                       ["--dask-local", "2", "--dask-scheduler", "tcp://x:1"]])
def test_bad_worker_options_are_usage_errors(tmp_path, arguments, capsys):
    assert main(["analyze", str(tmp_path), "--out", str(tmp_path / "out"), *arguments]) == 2


# --- kill -9 midway and restart --------------------------------------------------------------

def _ok_rows(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(database, timeout=5) as db:
            return db.execute("SELECT count(*) FROM images WHERE status = 'ok'").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def test_a_run_killed_midway_resumes_without_duplicates_or_recomputation(tmp_path):
    films = tmp_path / "films"
    films.mkdir()
    for path in sorted(SAMPLE_IMAGES.glob("*.dcm")):
        shutil.copyfile(path, films / path.name)
    out = tmp_path / "out"
    database = out / DATABASE_NAME
    command = [sys.executable, "-m", "pipelines.cli", "analyze", str(films), "--out", str(out),
               "--jobs", "1"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 120
    while _ok_rows(database) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed midway"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    with sqlite3.connect(database) as db:
        finished = dict(db.execute("SELECT image_id, run_id FROM images WHERE status = 'ok'"))
        assert 2 <= len(finished) < 5
    for mask in (out / "masks").glob("*.png"):  # whatever is there is whole
        assert cv2.imread(str(mask), cv2.IMREAD_UNCHANGED) is not None
    if (out / "images.csv").exists():
        rows = _read_csv(out / "images.csv")
        assert all(row["calcitrack_version"] for row in rows), "rows are complete"
    mtimes = {image_id: (out / "masks" / f"{image_id}.png").stat().st_mtime_ns
              for image_id in finished}

    assert subprocess.run(command, cwd=Path(__file__).resolve().parents[1],
                          capture_output=True).returncode == 0
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT image_id, run_id FROM images").fetchall()
        deposits = db.execute("SELECT count(*) FROM deposits").fetchone()[0]
        runs = db.execute("SELECT run_id, finished_at FROM runs ORDER BY run_id").fetchall()
    assert len(rows) == 5 and len({image_id for image_id, _ in rows}) == 5
    assert {image_id: run_id for image_id, run_id in rows if image_id in finished} == finished
    assert runs[0][1] is None and runs[-1][1] is not None  # the killed run stays unfinished
    assert {image_id: (out / "masks" / f"{image_id}.png").stat().st_mtime_ns
            for image_id in finished} == mtimes, "finished films were not recomputed"
    images = _read_csv(out / "images.csv")
    assert sorted(row["image_id"] for row in images) == sorted(image_id for image_id, _ in rows)
    assert sum(int(row["n_deposits"]) for row in images) == deposits
    assert len(_read_csv(out / "deposits.csv")) == deposits
    assert not [path for path in out.rglob(".tmp-*")], "no temporary files are left"
