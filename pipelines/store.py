"""The results store: every film's results in one SQLite database, across runs.

``calcitrack analyze`` records each film here right after writing its CSV rows and mask, so the
database and the CSVs tell the same story: table and column names mirror ``images.csv`` and
``deposits.csv``. On top of the CSVs the store keeps what a single run cannot: which films were
already analysed with which configuration (the key of a resumed batch), patients and studies
across runs, and, from later stages, per-region burden and serial comparisons.

Tables
------
``runs``
    One row per run: ``calcitrack_version``, ``config_hash``, ``config_json``, ``started_at``,
    ``finished_at`` (empty for a run that was interrupted).
``patients``
    ``patient_key`` only: the pseudonymous keyed hash. No names, IDs or birth dates, anywhere.
``studies``
    ``study_key`` (the Study Instance UID, or ``<patient_key>/<study_date>`` when the film has
    none), ``study_instance_uid``, ``patient_key``, ``study_date``.
``images``
    One row per film and configuration, keyed by (``content_hash``, ``config_hash``), or by
    (``source_path``, ``config_hash``) for unreadable and skipped files: the ``images.csv``
    columns plus ``image_pk``, ``content_hash`` (sha256 of the file), ``options_hash``,
    ``run_id`` (the run that recorded it) and ``study_key``.
``deposits``
    The ``deposits.csv`` columns plus ``image_pk``; primary key (``image_pk``, ``deposit_id``).
``regions``, ``comparisons``
    Per-region burden and baseline / follow-up comparisons (filled by later stages).

Durability: one transaction per film, in WAL mode with ``synchronous = FULL``, so a film is
either wholly in the database or not at all, and a committed film survives a killed process
and a power cut alike. The extra fsync per film costs milliseconds against the seconds its
analysis takes. WAL needs a local file system (not a network share): put the database on a
local disk with ``--db`` when the output folder is remote.

The schema version is ``PRAGMA user_version``; `MIGRATIONS` brings any older database up to
date when it is opened, each step in its own transaction.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import math
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from imaging import CalcitrackError

#: Default file name of the database in the output folder.
DATABASE_NAME = "calcitrack.sqlite"
#: How long a writer waits for another process's transaction before giving up.
BUSY_TIMEOUT_S = 30.0

_READ_CHUNK_BYTES = 1 << 20
_CONNECTION_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    f"PRAGMA busy_timeout = {round(BUSY_TIMEOUT_S * 1000)}",
)

_MIGRATION_1 = (
    """CREATE TABLE runs (
        run_id             INTEGER PRIMARY KEY,
        started_at         TEXT NOT NULL,  -- ISO 8601, UTC
        calcitrack_version TEXT NOT NULL,
        config_hash        TEXT NOT NULL,
        config_json        TEXT NOT NULL
    )""",
    """CREATE TABLE patients (
        patient_key TEXT PRIMARY KEY  -- pseudonymous keyed hash, never an identifier
    )""",
    """CREATE TABLE studies (
        study_key          TEXT PRIMARY KEY,  -- study_instance_uid, or patient_key/study_date
        study_instance_uid TEXT UNIQUE,
        patient_key        TEXT REFERENCES patients (patient_key),
        study_date         TEXT
    )""",
    """CREATE TABLE images (
        image_pk              INTEGER PRIMARY KEY,
        content_hash          TEXT,  -- sha256 of the file; NULL when it could not be read
        config_hash           TEXT NOT NULL,
        run_id                INTEGER NOT NULL REFERENCES runs (run_id),
        study_key             TEXT REFERENCES studies (study_key),
        image_id              TEXT NOT NULL,
        source_path           TEXT NOT NULL,
        status                TEXT NOT NULL CHECK (status IN ('ok', 'error', 'skipped')),
        error                 TEXT,
        mask_path             TEXT,
        qc_path               TEXT,
        rows                  INTEGER,
        cols                  INTEGER,
        spacing_row_mm        REAL,
        spacing_col_mm        REAL,
        spacing_source        TEXT,
        nominal_spacing_mm    REAL,
        patient_key           TEXT REFERENCES patients (patient_key),
        study_date            TEXT,
        laterality            TEXT,
        body_part             TEXT,
        view_position         TEXT,
        modality              TEXT,
        sop_instance_uid      TEXT,
        n_deposits            INTEGER,
        total_area_px         INTEGER,
        total_area_mm2        REAL,
        largest_area_px       INTEGER,
        largest_area_mm2      REAL,
        mean_relative_density REAL,
        calcitrack_version    TEXT NOT NULL,
        notes                 TEXT,
        UNIQUE (content_hash, config_hash)
    )""",
    # A file that could not be read has no content hash: its row is keyed by its path.
    """CREATE UNIQUE INDEX images_unread_by_path ON images (source_path, config_hash)
        WHERE content_hash IS NULL""",
    """CREATE TABLE deposits (
        image_pk               INTEGER NOT NULL REFERENCES images (image_pk) ON DELETE CASCADE,
        image_id               TEXT NOT NULL,
        deposit_id             INTEGER NOT NULL,  -- its label in the mask
        region                 TEXT,
        centroid_row           REAL,
        centroid_col           REAL,
        bbox_r0                INTEGER,
        bbox_c0                INTEGER,
        bbox_r1                INTEGER,
        bbox_c1                INTEGER,
        area_px                INTEGER,
        area_mm2               REAL,
        equivalent_diameter_px REAL,
        equivalent_diameter_mm REAL,
        major_axis_mm          REAL,
        minor_axis_mm          REAL,
        eccentricity           REAL,
        solidity               REAL,
        mean_contrast          REAL,
        peak_contrast          REAL,
        noise_sigma            REAL,
        cnr                    REAL,
        relative_density       REAL,
        peak_relative_density  REAL,
        spacing_source         TEXT,
        calcitrack_version     TEXT,
        config_hash            TEXT,
        PRIMARY KEY (image_pk, deposit_id)
    )""",
    """CREATE TABLE regions (
        image_pk             INTEGER NOT NULL REFERENCES images (image_pk) ON DELETE CASCADE,
        region               TEXT NOT NULL,
        n_deposits           INTEGER,
        area_px              INTEGER,
        area_mm2             REAL,
        soft_tissue_area_px  INTEGER,
        soft_tissue_area_mm2 REAL,
        fraction             REAL,  -- calcified share of the region's soft tissue
        PRIMARY KEY (image_pk, region)
    )""",
    """CREATE TABLE comparisons (
        comparison_id      INTEGER PRIMARY KEY,
        run_id             INTEGER NOT NULL REFERENCES runs (run_id),
        baseline_image_pk  INTEGER NOT NULL REFERENCES images (image_pk),
        followup_image_pk  INTEGER NOT NULL REFERENCES images (image_pk),
        region             TEXT NOT NULL,  -- 'all' for the whole film
        baseline_area_px   INTEGER,
        followup_area_px   INTEGER,
        baseline_area_mm2  REAL,
        followup_area_mm2  REAL,
        change_pct         REAL,
        category           TEXT CHECK (category IN ('progression', 'stable', 'improvement')),
        n_matched          INTEGER,
        n_new              INTEGER,
        n_resolved         INTEGER,
        UNIQUE (baseline_image_pk, followup_image_pk, region)
    )""",
)

_MIGRATION_2 = (
    # Interrupted runs keep finished_at empty.
    "ALTER TABLE runs ADD COLUMN finished_at TEXT",
    # A patient's films in time order: burden over time, baseline / follow-up pairing.
    "CREATE INDEX images_by_patient ON images (patient_key, study_date)",
)

_MIGRATION_3 = (
    # The detector measures each deposit's contrast against the tissue just around it.
    "ALTER TABLE deposits ADD COLUMN rim_contrast REAL",
    "ALTER TABLE deposits ADD COLUMN rim_cnr REAL",
)

_MIGRATION_4 = (
    # A resumed batch reuses a film only when the run options that change its results
    # (spacing override, pseudonym key) are the same too: see `ResultsStore.finished_film`.
    "ALTER TABLE images ADD COLUMN options_hash TEXT",
)

_MIGRATION_5 = (
    # Burden per region (imaging.burden): deposits get their region details, images the
    # film's scores, regions every column of regions.csv. BOOLEAN columns read back as bool.
    "ALTER TABLE deposits ADD COLUMN fingertip BOOLEAN",
    "ALTER TABLE deposits ADD COLUMN periarticular BOOLEAN",
    "ALTER TABLE deposits ADD COLUMN joint_distance_mm REAL",
    "ALTER TABLE deposits ADD COLUMN morphology TEXT",
    "ALTER TABLE deposits ADD COLUMN density_weight INTEGER",
    "ALTER TABLE images ADD COLUMN seg_path TEXT",
    "ALTER TABLE images ADD COLUMN sr_path TEXT",
    "ALTER TABLE images ADD COLUMN density_score_mm2 REAL",
    "ALTER TABLE images ADD COLUMN integrated_density_mm2 REAL",
    "ALTER TABLE images ADD COLUMN severity TEXT",
    "ALTER TABLE images ADD COLUMN region_scheme TEXT",
    "ALTER TABLE regions ADD COLUMN image_id TEXT",
    "ALTER TABLE regions ADD COLUMN largest_area_px INTEGER",
    "ALTER TABLE regions ADD COLUMN largest_area_mm2 REAL",
    "ALTER TABLE regions ADD COLUMN mean_relative_density REAL",
    "ALTER TABLE regions ADD COLUMN density_score_px REAL",
    "ALTER TABLE regions ADD COLUMN density_score_mm2 REAL",
    "ALTER TABLE regions ADD COLUMN integrated_density_px REAL",
    "ALTER TABLE regions ADD COLUMN integrated_density_mm2 REAL",
    "ALTER TABLE regions ADD COLUMN n_fingertip INTEGER",
    "ALTER TABLE regions ADD COLUMN n_periarticular INTEGER",
    "ALTER TABLE regions ADD COLUMN n_stone INTEGER",
    "ALTER TABLE regions ADD COLUMN n_mousse INTEGER",
    "ALTER TABLE regions ADD COLUMN n_plate INTEGER",
    "ALTER TABLE regions ADD COLUMN n_net INTEGER",
    "ALTER TABLE regions ADD COLUMN severity TEXT",
    "ALTER TABLE regions ADD COLUMN spacing_source TEXT",
    "ALTER TABLE regions ADD COLUMN calcitrack_version TEXT",
    "ALTER TABLE regions ADD COLUMN config_hash TEXT",
)

_MIGRATION_6 = (
    # The detector's selection measures: flat saturated cores (markers), contact with bone.
    "ALTER TABLE deposits ADD COLUMN core_noise_ratio REAL",
    "ALTER TABLE deposits ADD COLUMN bone_contact REAL",
)

_MIGRATION_7 = (
    # The skin-line selection measures: depth below the skin and its change across a deposit.
    "ALTER TABLE deposits ADD COLUMN skin_depth_mm REAL",
    "ALTER TABLE deposits ADD COLUMN skin_depth_change REAL",
)

_MIGRATION_8 = (
    # Refused comparisons (other anatomy, failed registration) are kept, with the reason.
    "ALTER TABLE comparisons ADD COLUMN status TEXT NOT NULL DEFAULT 'ok' "
    "CHECK (status IN ('ok', 'refused'))",
    "ALTER TABLE comparisons ADD COLUMN reason TEXT",
)

_MIGRATION_9 = (
    # The density-weighted score is summed pixel by pixel (imaging.burden): each deposit's share.
    "ALTER TABLE deposits ADD COLUMN density_score_mm2 REAL",
)

_MIGRATION_10 = (
    # Comparisons look at each film again where the other has deposits (imaging.paired).
    "ALTER TABLE comparisons ADD COLUMN baseline_found_again_px INTEGER",
    "ALTER TABLE comparisons ADD COLUMN followup_found_again_px INTEGER",
)

_MIGRATION_11 = (
    # Deposits one film cannot show are left out of a comparison (imaging.paired).
    "ALTER TABLE comparisons ADD COLUMN baseline_n_unseen INTEGER",
    "ALTER TABLE comparisons ADD COLUMN followup_n_unseen INTEGER",
    "ALTER TABLE comparisons ADD COLUMN baseline_unseen_px INTEGER",
    "ALTER TABLE comparisons ADD COLUMN followup_unseen_px INTEGER",
)

_MIGRATION_12 = (
    # Comparisons carry both films' density scores (imaging.burden), with the pixels found
    # again; deposits their share of the density-weighted score in pixels too.
    "ALTER TABLE deposits ADD COLUMN density_score_px REAL",
    "ALTER TABLE comparisons ADD COLUMN baseline_density_score REAL",
    "ALTER TABLE comparisons ADD COLUMN followup_density_score REAL",
    "ALTER TABLE comparisons ADD COLUMN baseline_integrated_density REAL",
    "ALTER TABLE comparisons ADD COLUMN followup_integrated_density REAL",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_MIGRATION_1, _MIGRATION_2, _MIGRATION_3,
                                           _MIGRATION_4, _MIGRATION_5, _MIGRATION_6,
                                           _MIGRATION_7, _MIGRATION_8, _MIGRATION_9,
                                           _MIGRATION_10, _MIGRATION_11, _MIGRATION_12)
"""Schema migrations in order: migration N (1-based) brings ``user_version`` N-1 to N.

Never edit a released migration; append a new one.
"""

BURDEN_OVER_TIME_SQL = """
SELECT study_date, image_id, body_part, laterality, view_position, n_deposits,
       total_area_px, total_area_mm2, spacing_source, config_hash, image_pk
FROM images
WHERE patient_key = :patient_key
  AND status = 'ok'
  AND study_date IS NOT NULL
  AND (:body_part IS NULL OR body_part = :body_part)
  AND (:laterality IS NULL OR laterality = :laterality)
  AND (:config_hash IS NULL OR config_hash = :config_hash)
ORDER BY study_date, body_part, laterality, image_id, image_pk
"""
"""A patient's deposit burden film by film, in study-date order (undated films left out)."""

_FINISHED_FILM_SQL = """
SELECT * FROM images
WHERE content_hash = :content_hash AND config_hash = :config_hash
  AND options_hash IS :options_hash AND status = 'ok'
"""
_START_RUN_SQL = """
INSERT INTO runs (started_at, calcitrack_version, config_hash, config_json)
VALUES (?, ?, ?, ?)
"""
_FINISH_RUN_SQL = "UPDATE runs SET finished_at = ? WHERE run_id = ?"
_ADD_PATIENT_SQL = "INSERT INTO patients (patient_key) VALUES (?) ON CONFLICT DO NOTHING"
_ADD_STUDY_SQL = """
INSERT INTO studies (study_key, study_instance_uid, patient_key, study_date)
VALUES (:study_key, :study_instance_uid, :patient_key, :study_date)
ON CONFLICT (study_key) DO UPDATE SET
    patient_key = coalesce(excluded.patient_key, patient_key),
    study_date = coalesce(excluded.study_date, study_date)
"""
_FIND_IMAGE_SQL = """
SELECT image_pk FROM images
WHERE config_hash = :config_hash
  AND (content_hash = :content_hash
       OR (:content_hash IS NULL AND content_hash IS NULL AND source_path = :source_path))
"""
_CLEAR_IMAGE_RESULTS_SQL = (
    "DELETE FROM deposits WHERE image_pk = ?",
    "DELETE FROM regions WHERE image_pk = ?",
)
_IMAGES_SQL = """
SELECT * FROM images
WHERE (:patient_key IS NULL OR patient_key = :patient_key)
  AND (:config_hash IS NULL OR config_hash = :config_hash)
  AND (:status IS NULL OR status = :status)
ORDER BY image_id, image_pk
"""
_DEPOSITS_SQL = "SELECT * FROM deposits WHERE image_pk = ? ORDER BY deposit_id"
COMPARISON_COLUMNS = (
    "status", "reason", "baseline_area_px", "followup_area_px", "baseline_area_mm2",
    "followup_area_mm2", "change_pct", "category", "n_matched", "n_new", "n_resolved",
    "baseline_found_again_px", "followup_found_again_px", "baseline_n_unseen",
    "followup_n_unseen", "baseline_unseen_px", "followup_unseen_px", "baseline_density_score",
    "followup_density_score", "baseline_integrated_density", "followup_integrated_density",
)
"""Columns of a ``comparisons`` row besides its keys (a region row of ``changes.csv``)."""
_RECORD_COMPARISON_SQL = f"""
INSERT INTO comparisons (run_id, baseline_image_pk, followup_image_pk, region,
                         {", ".join(COMPARISON_COLUMNS)})
VALUES (:run_id, :baseline_image_pk, :followup_image_pk, :region,
        {", ".join(":" + c for c in COMPARISON_COLUMNS)})
ON CONFLICT (baseline_image_pk, followup_image_pk, region) DO UPDATE SET
    run_id = excluded.run_id,
    {", ".join(f"{c} = excluded.{c}" for c in COMPARISON_COLUMNS)}
"""
_COMPARISONS_SQL = """
SELECT * FROM comparisons
WHERE (:image_pk IS NULL OR baseline_image_pk = :image_pk OR followup_image_pk = :image_pk)
ORDER BY baseline_image_pk, followup_image_pk, region = 'all' DESC, region
"""
_REGIONS_SQL = "SELECT * FROM regions WHERE image_pk = ? ORDER BY rowid"


class StoreError(CalcitrackError):
    """The results database cannot be opened or is of an unknown schema version."""


class ResultsStore:
    """A results database (use `ResultsStore.open`, preferably as a context manager).

    Examples
    --------
    >>> with ResultsStore.open(":memory:") as store:
    ...     run_id = store.start_run("0.1.0", "abc123", {"grid": {}})
    ...     store.finished_film("f" * 64, "abc123") is None
    True
    """

    def __init__(self, connection: sqlite3.Connection, path: str):
        self._db = connection
        self.path = path
        self._columns = {table: _table_columns(connection, table)
                         for table in ("images", "deposits", "regions")}
        self._booleans = {table: _boolean_columns(connection, table)
                          for table in ("images", "deposits", "regions")}

    @classmethod
    def open(cls, path: str | os.PathLike) -> ResultsStore:
        """Open the database at `path`, creating it (and its folder) or migrating it as needed.

        Raises
        ------
        StoreError
            The file is not a SQLite database, cannot be opened, or was written by a newer
            calcitrack.
        """
        path = os.fspath(path)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = connect(path)
            try:
                migrate(connection)
            except BaseException:
                connection.close()
                raise
        except sqlite3.DatabaseError as exc:
            raise StoreError(path, f"cannot open the results database ({exc})",
                             "give another path with --db, or move this file away") from None
        return cls(connection, path)

    def close(self) -> None:
        """Close the database (every method commits its own work: nothing is pending)."""
        self._db.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The database's schema version (``PRAGMA user_version``)."""
        return _user_version(self._db)

    def start_run(self, calcitrack_version: str, config_hash: str, config: dict) -> int:
        """Record the start of a run; return its ``run_id``.

        Parameters
        ----------
        calcitrack_version : str
        config_hash : str
        config : dict
            Every analysis parameter (`AnalysisConfig.to_dict`), kept as JSON.
        """
        values = (_now(), calcitrack_version, config_hash,
                  json.dumps(config, sort_keys=True, separators=(",", ":")))
        with _transaction(self._db):
            return self._db.execute(_START_RUN_SQL, values).lastrowid

    def finish_run(self, run_id: int) -> None:
        """Mark a run as completed (a run without ``finished_at`` was interrupted)."""
        with _transaction(self._db):
            self._db.execute(_FINISH_RUN_SQL, (_now(), run_id))

    def finished_film(self, content_hash: str | None, config_hash: str,
                      options_hash: str | None = None
                      ) -> tuple[dict, list[dict], list[dict]] | None:
        """The recorded results of a film analysed with this configuration and these options.

        Only ``ok`` rows count: a resumed run tries failed films again, since failures often
        come from the environment (a locked or half-copied file, memory) or from a reader bug
        fixed since, and a retry costs one failed read.

        Parameters
        ----------
        content_hash : str or None
            `file_content_hash` of the film (None: never finished).
        config_hash : str
        options_hash : str, optional
            Fingerprint of the run options that change results (as given to `record_film`).

        Returns
        -------
        (dict, list of dict, list of dict) or None
            The image row, its deposit rows and region rows, as recorded; None when not
            finished.
        """
        if content_hash is None:
            return None
        query = {"content_hash": content_hash, "config_hash": config_hash,
                 "options_hash": options_hash}
        found = self._db.execute(_FINISHED_FILM_SQL, query).fetchone()
        if found is None:
            return None
        image = self._typed("images", found)
        return image, self.deposits(image["image_pk"]), self.regions(image["image_pk"])

    def record_film(self, run_id: int, content_hash: str | None, image_row: dict,
                    deposit_rows=(), region_rows=(), *, study_instance_uid: str | None = None,
                    options_hash: str | None = None) -> int:
        """Record one film's results in one transaction; return its ``image_pk``.

        The film's previous results with the same (`content_hash`, ``config_hash``) are
        replaced, keeping its ``image_pk``: recording a film twice leaves one image row and
        its deposits once. Its patient and study are added when new.

        Parameters
        ----------
        run_id : int
            From `start_run`.
        content_hash : str or None
            `file_content_hash` of the film; None for a file that could not be read or was
            skipped (not a film), whose row is then keyed by its ``source_path``.
        image_row : dict
            Its ``images.csv`` row (`imaging.export.image_row`).
        deposit_rows : iterable of dict
            Its ``deposits.csv`` rows; there must be ``n_deposits`` of them.
        region_rows : iterable of dict
            Its ``regions.csv`` rows.
        study_instance_uid : str, optional
            Groups the film with the others of its study.
        options_hash : str, optional
            Fingerprint of the run options that change results (see `finished_film`).

        Raises
        ------
        ValueError
            A row has a column the database does not know, or the deposit count differs from
            ``n_deposits``; nothing is recorded.
        sqlite3.IntegrityError
            `run_id` is not a run of this database.
        """
        image = {**image_row, "content_hash": content_hash, "run_id": run_id,
                 "options_hash": options_hash,
                 "study_key": _study_key(study_instance_uid, image_row)}
        self._check_columns("images", image)
        expected = image_row.get("n_deposits") or 0
        with _transaction(self._db):
            if image.get("patient_key") is not None:
                self._db.execute(_ADD_PATIENT_SQL, (image["patient_key"],))
            if image["study_key"] is not None:
                self._db.execute(_ADD_STUDY_SQL, {
                    "study_key": image["study_key"], "study_instance_uid": study_instance_uid,
                    "patient_key": image.get("patient_key"),
                    "study_date": image.get("study_date")})
            image_pk = self._replace_image(image)
            recorded = 0
            for row in deposit_rows:
                self._insert("deposits", {**row, "image_pk": image_pk})
                recorded += 1
            if recorded != expected:
                raise ValueError(f"{image['image_id']}: {recorded} deposit rows for "
                                 f"n_deposits = {expected}; the film was not recorded")
            for row in region_rows:
                self._insert("regions", {**row, "image_pk": image_pk})
        return image_pk

    def image_key(self, content_hash: str | None, config_hash: str,
                  source_path: str | None = None) -> int | None:
        """The ``image_pk`` of a film recorded with this configuration, or None."""
        found = self._db.execute(_FIND_IMAGE_SQL, {"content_hash": content_hash,
                                                   "config_hash": config_hash,
                                                   "source_path": source_path}).fetchone()
        return None if found is None else found["image_pk"]

    def images(self, *, patient_key: str | None = None, config_hash: str | None = None,
               status: str | None = None) -> list[dict]:
        """Image rows, all or those matching every filter given, ordered by ``image_id``."""
        query = {"patient_key": patient_key, "config_hash": config_hash,
                 "status": None if status is None else str(status)}
        return [self._typed("images", row) for row in self._db.execute(_IMAGES_SQL, query)]

    def deposits(self, image_pk: int) -> list[dict]:
        """The deposit rows of one image, in label order."""
        return [self._typed("deposits", row)
                for row in self._db.execute(_DEPOSITS_SQL, (image_pk,))]

    def regions(self, image_pk: int) -> list[dict]:
        """The region rows of one image, in the order recorded (``all`` last)."""
        return [self._typed("regions", row)
                for row in self._db.execute(_REGIONS_SQL, (image_pk,))]

    def _typed(self, table: str, row: sqlite3.Row) -> dict:
        """A row as a dict, BOOLEAN columns as bool (SQLite stores them as 0/1)."""
        values = dict(row)
        for column in self._booleans[table]:
            if values.get(column) is not None:
                values[column] = bool(values[column])
        return values

    def burden_over_time(self, patient_key: str, body_part: str | None = None,
                         laterality: str | None = None,
                         config_hash: str | None = None) -> list[dict]:
        """A patient's analysed films in study-date order, with their burden.

        Runs `BURDEN_OVER_TIME_SQL`. A film analysed with two configurations appears once per
        configuration unless `config_hash` picks one; undated films are left out.
        """
        query = {"patient_key": patient_key, "body_part": body_part,
                 "laterality": laterality, "config_hash": config_hash}
        return [dict(row) for row in self._db.execute(BURDEN_OVER_TIME_SQL, query)]

    def _replace_image(self, image: dict) -> int:
        """Insert the image row, or overwrite the row of the same key; return its key."""
        found = self._db.execute(_FIND_IMAGE_SQL, {
            key: image.get(key) for key in ("content_hash", "config_hash", "source_path")
        }).fetchone()
        if found is None:
            return self._insert("images", image)
        image_pk = found["image_pk"]
        for statement in _CLEAR_IMAGE_RESULTS_SQL:
            self._db.execute(statement, (image_pk,))
        columns = [c for c in self._columns["images"] if c != "image_pk"]
        assignments = ", ".join(f"{c} = :{c}" for c in columns)
        values = {c: _sql_value(image.get(c)) for c in columns}
        self._db.execute(f"UPDATE images SET {assignments} WHERE image_pk = :image_pk",
                         {**values, "image_pk": image_pk})
        return image_pk

    def _insert(self, table: str, row: dict) -> int:
        self._check_columns(table, row)
        columns = list(row)
        placeholders = ", ".join(f":{c}" for c in columns)
        statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"
        return self._db.execute(statement, {c: _sql_value(row[c]) for c in columns}).lastrowid

    def _check_columns(self, table: str, row: dict) -> None:
        unknown = set(row) - set(self._columns[table])
        if unknown:
            raise ValueError(f"the {table} table has no column {', '.join(sorted(unknown))}: "
                             "add a migration to pipelines/store.py")

    def record_comparison(self, run_id: int, baseline_image_pk: int, followup_image_pk: int,
                          region_rows) -> None:
        """Record the change between two recorded films, one row per region, in one transaction.

        A pair compared again (same baseline, follow-up and region) replaces its rows. A
        refused pair has one row, ``region = 'all'``, ``status = 'refused'`` and the reason.

        Parameters
        ----------
        run_id : int
        baseline_image_pk, followup_image_pk : int
            From `record_film`.
        region_rows : iterable of dict
            ``changes.csv`` rows of the pair: ``region`` and `COMPARISON_COLUMNS` (others
            are ignored).
        """
        with _transaction(self._db):
            for row in region_rows:
                values = {c: _sql_value(row.get(c)) for c in COMPARISON_COLUMNS}
                self._db.execute(_RECORD_COMPARISON_SQL, {
                    **values, "run_id": run_id, "baseline_image_pk": baseline_image_pk,
                    "followup_image_pk": followup_image_pk, "region": str(row["region"])})

    def comparisons(self, *, image_pk: int | None = None) -> list[dict]:
        """Comparison rows, all or those involving one image, ``region = 'all'`` first."""
        return [dict(row) for row in self._db.execute(_COMPARISONS_SQL, {"image_pk": image_pk})]


def connect(path: str | os.PathLike) -> sqlite3.Connection:
    """Open a SQLite connection with the store's settings (no migration).

    WAL journal, ``synchronous = FULL``, foreign keys enforced, a busy timeout of
    `BUSY_TIMEOUT_S`; autocommit mode, so transactions are the explicit ones of
    `ResultsStore`.
    """
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    connection.row_factory = sqlite3.Row
    try:
        for pragma in _CONNECTION_PRAGMAS:
            connection.execute(pragma)
    except BaseException:
        connection.close()
        raise
    return connection


def migrate(connection: sqlite3.Connection, up_to: int | None = None) -> int:
    """Apply the `MIGRATIONS` a database lacks, each in its own transaction.

    The version is read again inside each write transaction, so processes opening a new
    database at the same time do not apply a migration twice.

    Parameters
    ----------
    connection : sqlite3.Connection
        From `connect`.
    up_to : int, optional
        Stop at this schema version (default: the latest).

    Returns
    -------
    int
        The schema version reached.

    Raises
    ------
    StoreError
        The database is newer than this calcitrack.
    """
    latest = len(MIGRATIONS)
    target = latest if up_to is None else up_to
    version = _user_version(connection)
    if version > latest:
        file = connection.execute("PRAGMA database_list").fetchone()["file"]
        raise StoreError(file or None, f"the results database has schema version {version}, "
                                       f"newer than this calcitrack's {latest}",
                         "upgrade calcitrack, or write the results to another database")
    for number, statements in enumerate(MIGRATIONS[:target], start=1):
        with _transaction(connection):
            if _user_version(connection) >= number:
                continue
            for statement in statements:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number}")
    return _user_version(connection)


def file_content_hash(path: str | os.PathLike) -> str | None:
    """The sha256 of a file's bytes (hex), read in chunks; None when it cannot be read.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> film = pathlib.Path(tempfile.mkdtemp()) / "film.dcm"
    >>> _ = film.write_bytes(b"abc")
    >>> file_content_hash(film)[:16]
    'ba7816bf8f01cfea'
    >>> file_content_hash(film.with_name("missing.dcm")) is None
    True
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_READ_CHUNK_BYTES):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection):
    """``BEGIN IMMEDIATE`` … ``COMMIT``, or ``ROLLBACK`` if the block raises.

    IMMEDIATE takes the write lock at once, so a second writer waits (busy timeout) at the
    start instead of failing halfway.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if connection.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _user_version(connection: sqlite3.Connection) -> int:
    return connection.execute("PRAGMA user_version").fetchone()[0]


def _table_columns(connection: sqlite3.Connection, table: str) -> tuple[str, ...]:
    return tuple(row["name"] for row in connection.execute(f"PRAGMA table_info({table})"))


def _boolean_columns(connection: sqlite3.Connection, table: str) -> frozenset[str]:
    return frozenset(row["name"] for row in connection.execute(f"PRAGMA table_info({table})")
                     if row["type"].upper() == "BOOLEAN")


def _study_key(study_instance_uid: str | None, image_row: dict) -> str | None:
    if study_instance_uid:
        return study_instance_uid
    patient_key, study_date = image_row.get("patient_key"), image_row.get("study_date")
    if patient_key and study_date:
        return f"{patient_key}/{study_date}"
    return None


def _sql_value(value):
    """A row value as SQLite stores it: enums by value, NumPy scalars as Python, NaN as NULL."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
