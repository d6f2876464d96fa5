"""The results store: migrations, idempotent ingest, crash safety, and `analyze` recording."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import multiprocessing
import os
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from imaging.dicom import write_dicom
from imaging.export import DEPOSIT_COLUMNS, IMAGE_COLUMNS, REGION_COLUMNS, format_cell
from pipelines.cli import main
from pipelines.store import (
    DATABASE_NAME,
    MIGRATIONS,
    ResultsStore,
    StoreError,
    connect,
    file_content_hash,
    migrate,
)

CONFIG_HASH = "0123456789ab"
PATIENT = "a1b2c3d4e5f60718"
TABLES = {"runs", "patients", "studies", "images", "deposits", "regions", "comparisons"}


def _content_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _image_row(image_id: str, n_deposits: int | None = 2, *, status: str = "ok",
               study_date: str | None = "2024-01-15", patient_key: str | None = PATIENT,
               config_hash: str = CONFIG_HASH, total_area_mm2: float | None = 1.5) -> dict:
    row = dict.fromkeys(IMAGE_COLUMNS)
    row.update(image_id=image_id, source_path=f"/films/{image_id}.dcm", status=status,
               rows=100, cols=80, spacing_row_mm=0.1, spacing_col_mm=0.1,
               spacing_source="pixel_spacing", patient_key=patient_key, study_date=study_date,
               laterality="L", body_part="HAND", n_deposits=n_deposits,
               total_area_px=None if n_deposits is None else 10 * n_deposits,
               total_area_mm2=total_area_mm2, calcitrack_version="0.1.0",
               config_hash=config_hash)
    return row


def _deposit_rows(image_id: str, count: int, config_hash: str = CONFIG_HASH) -> list[dict]:
    rows = []
    for label in range(1, count + 1):
        row = dict.fromkeys(DEPOSIT_COLUMNS)
        row.update(image_id=image_id, deposit_id=np.uint16(label), region="film",
                   centroid_row=np.float64(label + 0.5), centroid_col=float("nan"),
                   area_px=np.int64(10), area_mm2=0.1, spacing_source="pixel_spacing",
                   calcitrack_version="0.1.0", config_hash=config_hash)
        rows.append(row)
    return rows


def _query(path, sql: str, *params) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql, params).fetchall()


def _count(path, sql: str, *params) -> int:
    return _query(path, sql, *params)[0][0]


def _deposits_complete(path) -> bool:
    """True when every image row has exactly its n_deposits deposit rows."""
    return not _query(path, "SELECT image_pk FROM images AS i WHERE coalesce(n_deposits, 0) != "
                            "(SELECT count(*) FROM deposits AS d WHERE d.image_pk = i.image_pk)")


@pytest.fixture
def store(tmp_path):
    with ResultsStore.open(tmp_path / DATABASE_NAME) as opened:
        yield opened


@pytest.fixture
def run_id(store):
    return store.start_run("0.1.0", CONFIG_HASH, {"grid": {"spacing_mm": 0.2}})


# --- schema and migrations -------------------------------------------------------------------

def test_a_new_database_gets_every_table_at_the_latest_version(tmp_path):
    path = tmp_path / "new" / "results.sqlite"
    with ResultsStore.open(path) as store:
        assert store.schema_version == len(MIGRATIONS) >= 4
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master "
                                                 "WHERE type = 'table'")}
        assert tables == TABLES
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_connections_enforce_foreign_keys_and_sync_fully(tmp_path):
    db = connect(tmp_path / "x.sqlite")
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    db.close()


def test_a_version_1_database_is_migrated_and_keeps_its_rows(tmp_path):
    path = tmp_path / "v1.sqlite"
    db = connect(path)
    assert migrate(db, up_to=1) == 1
    db.execute("INSERT INTO runs (started_at, calcitrack_version, config_hash, config_json) "
               "VALUES ('2025-01-01T00:00:00+00:00', '0.0.9', 'old', '{}')")
    db.execute("INSERT INTO images (content_hash, config_hash, run_id, image_id, source_path, "
               "status, calcitrack_version, patient_key, study_date) "
               "VALUES ('h', 'old', 1, 'hand', '/films/hand.dcm', 'ok', '0.0.9', NULL, NULL)")
    assert "finished_at" not in {r["name"] for r in db.execute("PRAGMA table_info(runs)")}
    db.close()

    with ResultsStore.open(path) as store:
        assert store.schema_version == len(MIGRATIONS)
        (image,) = store.images()
        assert (image["image_id"], image["config_hash"]) == ("hand", "old")
        store.finish_run(1)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT finished_at IS NOT NULL FROM runs").fetchone()[0] == 1
        indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master "
                                                  "WHERE type = 'index'")}
        assert "images_by_patient" in indexes


def test_migrating_twice_changes_nothing(tmp_path):
    path = tmp_path / "x.sqlite"
    ResultsStore.open(path).close()
    db = connect(path)
    assert migrate(db) == len(MIGRATIONS)
    db.close()


def test_a_database_from_a_newer_calcitrack_is_refused(tmp_path):
    path = tmp_path / "future.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer than this calcitrack"):
        ResultsStore.open(path)


def test_a_file_that_is_not_a_database_is_a_store_error_naming_it(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_bytes(b"not a database at all, just some text " * 100)
    with pytest.raises(StoreError, match="notes.sqlite.*--db"):
        ResultsStore.open(path)


def test_every_csv_column_has_a_database_column(store):
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        def columns(table):
            return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        assert set(IMAGE_COLUMNS) <= columns("images")
        assert set(DEPOSIT_COLUMNS) <= columns("deposits")
        assert set(REGION_COLUMNS) <= columns("regions")


def test_no_table_has_room_for_names_or_birth_dates(store):
    forbidden = {"name", "birth", "birthdate", "dob", "sex", "age"}
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        for table in TABLES:
            for (column,) in db.execute(f"SELECT name FROM pragma_table_info('{table}')"):
                assert not forbidden & set(column.split("_")), (table, column)
                assert "patient" not in column or column == "patient_key", (table, column)
        assert [row[1] for row in db.execute("PRAGMA table_info(patients)")] == ["patient_key"]


# --- recording films -------------------------------------------------------------------------

def test_recording_a_film_twice_leaves_one_row_and_its_deposits_once(store, run_id):
    first = store.record_film(run_id, _content_hash("hand"), _image_row("hand", 3),
                              _deposit_rows("hand", 3), study_instance_uid="1.2.3")
    second = store.record_film(run_id, _content_hash("hand"), _image_row("hand", 3),
                               _deposit_rows("hand", 3), study_instance_uid="1.2.3")
    assert first == second
    (image,) = store.images()
    assert image["content_hash"] == _content_hash("hand") and image["study_key"] == "1.2.3"
    assert [d["deposit_id"] for d in store.deposits(first)] == [1, 2, 3]
    assert _count(store.path, "SELECT count(*) FROM deposits") == 3
    assert _count(store.path, "SELECT count(*) FROM patients") == 1
    assert _count(store.path, "SELECT count(*) FROM studies") == 1


def test_recording_again_replaces_the_deposits(store, run_id):
    store.record_film(run_id, _content_hash("hand"), _image_row("hand", 3),
                      _deposit_rows("hand", 3))
    image_pk = store.record_film(run_id, _content_hash("hand"), _image_row("hand", 1),
                                 _deposit_rows("hand", 1))
    assert store.images()[0]["n_deposits"] == 1
    assert len(store.deposits(image_pk)) == 1


def test_values_are_stored_as_plain_sqlite_values(store, run_id):
    image_pk = store.record_film(run_id, _content_hash("hand"), _image_row("hand", 1),
                                 _deposit_rows("hand", 1))
    (deposit,) = store.deposits(image_pk)
    assert deposit["deposit_id"] == 1 and deposit["area_px"] == 10
    assert deposit["centroid_row"] == 1.5 and deposit["centroid_col"] is None  # NaN: empty


def test_another_configuration_is_another_row(store, run_id):
    store.record_film(run_id, _content_hash("hand"), _image_row("hand", 0), [])
    store.record_film(run_id, _content_hash("hand"), _image_row("hand", 0, config_hash="other"),
                      [])
    assert sorted(row["config_hash"] for row in store.images()) == [CONFIG_HASH, "other"]
    assert len(store.images(config_hash="other")) == 1


def test_only_ok_films_of_the_same_configuration_and_options_are_finished(store, run_id):
    store.record_film(run_id, _content_hash("ok"), _image_row("ok", 2), _deposit_rows("ok", 2),
                      options_hash="opts")
    store.record_film(run_id, _content_hash("notes"), _image_row("notes", None,
                                                                 status="skipped"), [])
    store.record_film(run_id, _content_hash("bad"), _image_row("bad", None, status="error"), [])
    image, deposits, regions = store.finished_film(_content_hash("ok"), CONFIG_HASH, "opts")
    assert image["image_id"] == "ok" and [row["deposit_id"] for row in deposits] == [1, 2]
    assert regions == []
    assert store.finished_film(_content_hash("ok"), CONFIG_HASH) is None  # other options
    assert store.finished_film(_content_hash("ok"), "other", "opts") is None
    assert store.finished_film(_content_hash("notes"), CONFIG_HASH) is None
    assert store.finished_film(_content_hash("bad"), CONFIG_HASH) is None
    assert store.finished_film(_content_hash("never seen"), CONFIG_HASH) is None
    assert store.finished_film(None, CONFIG_HASH) is None


def test_an_unreadable_file_is_keyed_by_its_path(store, run_id):
    for _ in range(2):
        store.record_film(run_id, None, _image_row("gone", None, status="error"), [])
    store.record_film(run_id, None, _image_row("other", None, status="error"), [])
    assert [row["image_id"] for row in store.images()] == ["gone", "other"]


def test_a_deposit_count_that_disagrees_records_nothing(store, run_id):
    with pytest.raises(ValueError, match="2 deposit rows for n_deposits = 3"):
        store.record_film(run_id, _content_hash("hand"), _image_row("hand", 3),
                          _deposit_rows("hand", 2))
    assert store.images() == []
    assert _count(store.path, "SELECT count(*) FROM patients") == 0


def test_an_unknown_column_is_refused(store, run_id):
    with pytest.raises(ValueError, match="no column favourite_colour"):
        store.record_film(run_id, _content_hash("hand"),
                          {**_image_row("hand", 0), "favourite_colour": "red"}, [])


def test_foreign_keys_are_enforced(store):
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        store.record_film(999, _content_hash("hand"), _image_row("hand", 0), [])
    assert store.images() == []


def test_runs_record_provenance_and_completion(store, run_id):
    store.finish_run(run_id)
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        row = db.execute("SELECT calcitrack_version, config_hash, config_json, "
                         "finished_at >= started_at FROM runs").fetchone()
    assert row == ("0.1.0", CONFIG_HASH, '{"grid":{"spacing_mm":0.2}}', 1)


def test_burden_over_time_is_in_study_date_order(store, run_id):
    films = [("visit3", "2024-09-01", 3.0), ("visit1", "2023-02-10", 1.0),
             ("visit2", "2024-01-15", 2.0), ("undated", None, 9.0)]
    for image_id, date, area in films:
        store.record_film(run_id, _content_hash(image_id),
                          _image_row(image_id, 0, study_date=date, total_area_mm2=area), [])
    store.record_film(run_id, _content_hash("failed"),
                      _image_row("failed", None, status="error", study_date="2024-03-01"), [])
    store.record_film(run_id, _content_hash("someone else"),
                      _image_row("someone else", 0, patient_key="ffff"), [])
    burden = store.burden_over_time(PATIENT)
    assert [(row["study_date"], row["total_area_mm2"]) for row in burden] == [
        ("2023-02-10", 1.0), ("2024-01-15", 2.0), ("2024-09-01", 3.0)]
    assert store.burden_over_time(PATIENT, body_part="HAND", laterality="L") == burden
    assert store.burden_over_time(PATIENT, laterality="R") == []
    assert store.burden_over_time(PATIENT, config_hash="other") == []


def test_file_content_hash_is_the_sha256_of_the_bytes(tmp_path):
    film = tmp_path / "film.dcm"
    film.write_bytes(os.urandom(3 << 20))  # several read chunks
    assert file_content_hash(film) == hashlib.sha256(film.read_bytes()).hexdigest()


# --- crash safety ----------------------------------------------------------------------------

N_COMPLETE = 3


def _record_then_hang(path: str, midway) -> None:
    """Record N_COMPLETE films, then hang halfway through the deposits of the next one."""
    with ResultsStore.open(path) as store:
        run_id = store.start_run("0.1.0", CONFIG_HASH, {})
        for index in range(N_COMPLETE):
            image_id = f"film{index}"
            store.record_film(run_id, _content_hash(image_id), _image_row(image_id, 50),
                              _deposit_rows(image_id, 50))

        def deposits_then_hang():
            yield from _deposit_rows("last", 50)[:25]
            midway.set()
            time.sleep(120)

        store.record_film(run_id, _content_hash("last"), _image_row("last", 50),
                          deposits_then_hang())


def test_a_writer_killed_mid_film_leaves_a_consistent_database(tmp_path):
    path = str(tmp_path / DATABASE_NAME)
    context = multiprocessing.get_context("fork")
    midway = context.Event()
    writer = context.Process(target=_record_then_hang, args=(path, midway))
    writer.start()
    try:
        assert midway.wait(timeout=60), "the writer never reached the last film"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
    assert writer.exitcode == -signal.SIGKILL

    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert _count(path, "SELECT count(*) FROM images") == N_COMPLETE
    assert _count(path, "SELECT count(*) FROM images WHERE image_id = 'last'") == 0
    assert _deposits_complete(path)

    with ResultsStore.open(path) as store:
        run_id = store.start_run("0.1.0", CONFIG_HASH, {})
        store.record_film(run_id, _content_hash("last"), _image_row("last", 50),
                          _deposit_rows("last", 50))
        assert len(store.images()) == N_COMPLETE + 1
    assert _deposits_complete(path)


# --- calcitrack analyze records into the store -----------------------------------------------

SPACING_MM = 0.2
SHAPE = (300, 300)


def _film_with_blobs(disc_film, seed: int) -> np.ndarray:
    return disc_film(SHAPE, SPACING_MM, 26.0, [(-12, 12, 1.5), (10, -14, 2.0 + seed * 0.3)], seed)


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_analyze_twice_records_each_film_once_and_agrees_with_the_csvs(tmp_path, disc_film):
    films, out = tmp_path / "films", tmp_path / "out"
    for visit, date in ((1, "20230210"), (2, "20240115")):
        write_dicom(films / f"visit{visit}_hand.dcm", _film_with_blobs(disc_film, visit),
                    spacing_mm=(SPACING_MM, SPACING_MM), patient_id="MRN-0042",
                    patient_name="Doe^Jane", study_date=date, laterality="L")
    (films / "notes.txt").write_text("not a film\n")

    for _ in range(2):
        assert main(["analyze", str(films), "--out", str(out), "--no-qc"]) == 0

    images = _read_csv(out / "images.csv")
    deposits = _read_csv(out / "deposits.csv")
    assert len(images) == 3 and deposits, "the films should give deposits to compare"
    with ResultsStore.open(out / DATABASE_NAME) as store:
        recorded = {row["image_id"]: row for row in store.images()}
        assert len(store.images()) == len(recorded) == len(images)
        for row in images:
            image = recorded[row["image_id"]]
            assert {c: format_cell(image[c]) for c in IMAGE_COLUMNS} == row
            assert [{c: format_cell(d[c]) for c in DEPOSIT_COLUMNS}
                    for d in store.deposits(image["image_pk"])] == [
                d for d in deposits if d["image_id"] == row["image_id"]]
            if row["mask_path"]:
                assert (out / row["mask_path"]).is_file()
        patient_key = recorded["visit1_hand"]["patient_key"]
        burden = store.burden_over_time(patient_key)
        assert [b["image_id"] for b in burden] == ["visit1_hand", "visit2_hand"]
        assert [format_cell(b["total_area_mm2"]) for b in burden] == [
            row["total_area_mm2"] for row in images if row["status"] == "ok"]
    assert _count(out / DATABASE_NAME, "SELECT count(*) FROM runs "
                                       "WHERE finished_at IS NOT NULL") == 2
    assert _count(out / DATABASE_NAME, "SELECT count(*) FROM studies") == 2
    stored = b"".join(path.read_bytes() for path in out.glob(DATABASE_NAME + "*"))
    assert b"Doe" not in stored and b"MRN-0042" not in stored


def test_analyze_writes_to_the_database_given_with_db(tmp_path, disc_film):
    films = tmp_path / "films"
    write_dicom(films / "hand.dcm", _film_with_blobs(disc_film, 0), spacing_mm=(SPACING_MM, SPACING_MM))
    database = tmp_path / "elsewhere" / "study.sqlite"
    assert main(["analyze", str(films), "--out", str(tmp_path / "out"), "--no-qc",
                 "--db", str(database)]) == 0
    assert _count(database, "SELECT count(*) FROM images") == 1
    assert not (tmp_path / "out" / DATABASE_NAME).exists()


def test_analyze_with_an_unusable_database_is_a_one_line_usage_error(tmp_path, capsys, disc_film):
    films = tmp_path / "films"
    write_dicom(films / "hand.dcm", _film_with_blobs(disc_film, 0), spacing_mm=(SPACING_MM, SPACING_MM))
    database = tmp_path / "broken.sqlite"
    database.write_bytes(b"garbage " * 200)
    assert main(["analyze", str(films), "--out", str(tmp_path / "out"), "--db",
                 str(database)]) == 2
    err = capsys.readouterr().err
    assert "broken.sqlite" in err and "--db" in err and "Traceback" not in err
