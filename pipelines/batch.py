"""Batch runs: many films analysed in worker processes or on a Dask cluster, resumable.

`analyze_files` is the engine behind ``calcitrack analyze``. One process (the writer) walks
the inputs, hands each film to a worker as a `FilmTask`, and writes what comes back: masks and
QC images, both CSVs, and the results store. Workers only compute (`run_film_task`), so the
same task runs unchanged in a local process pool or on a Dask cluster, and the outputs are
byte-identical whichever ran it, in input order whatever order films finish in.

Safety
------
- One bad film never stops a batch: a failure, a per-file timeout, a worker killed by the
  memory guard or by a crashing decoder all become that film's error row.
- Resumable: a film whose file content, configuration and result-changing options
  (``--spacing-mm``, pseudonym key, QC) match an ``ok`` row of the results store, and whose
  mask (and QC image) are on disk, is not recomputed; its rows come from the store.
- Nothing half-written: every file is written atomically; the store commits each film in
  one transaction after its mask; the CSVs are rewritten (atomically) every
  `CSV_INTERVAL_S` seconds and at the end, so after a kill they hold the complete rows of
  the films finished seconds before, and a rerun completes them from the store.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import io
import logging
import multiprocessing
import os
import resource
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import pebble

from imaging.config import AnalysisConfig
from imaging.export import (DEPOSIT_COLUMNS, IMAGE_COLUMNS, REGION_COLUMNS, Provenance, Status,
                            encode_png, image_row, write_csv)
from imaging.files import remove_stale_temporaries, write_bytes
from imaging.pseudonym import patient_key, resolve_key
from imaging.regions import UserRegions

from .film import analyze_film
from .inputs import InputFile, plan_inputs
from .progress import BatchProgress
from .report import write_run_report
from .store import DATABASE_NAME, ResultsStore, file_content_hash

#: Seconds between two rewrites of the CSVs during a run (they are always written at the end).
CSV_INTERVAL_S = 2.0
#: Default per-film time limit, in seconds: a 9-megapixel film takes a few seconds.
DEFAULT_TIMEOUT_S = 300.0
#: Default memory guard: address space a worker may add to what it holds after start-up.
DEFAULT_MEMORY_LIMIT_MB = 4096
#: Films handed out per worker ahead of time (keeps workers busy, bounds memory in flight);
#: more on Dask, where each task also waits for a scheduler round trip.
_TASKS_PER_WORKER = 2
_TASKS_PER_DASK_WORKER = 8
#: Exit status of a Dask worker stopped by the per-file watchdog (EX_SOFTWARE).
_EXIT_TIMED_OUT = 70
#: A film whose worker died this many times is recorded as failed (Dask retries it before).
_DASK_ALLOWED_FAILURES = 1
#: Dask sets MALLOC_TRIM_THRESHOLD_ in its workers, which switches off glibc's adaptive mmap
#: threshold: every large array is then a fresh mmap with its page faults, and the analysis
#: ran 1.5-2x slower than in a local worker. None unsets it.
_DASK_WORKER_ENVIRONMENT = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


@dataclass(frozen=True)
class Workers:
    """Where and how the per-film tasks run.

    Attributes
    ----------
    jobs : int
        Local worker processes (ignored with Dask).
    timeout_s : float or None
        A film still running after this long is stopped and recorded as failed. A local
        pool stops its worker; on Dask, which cannot stop one task, a watchdog in the task
        ends the worker process (its nanny starts a new one; the film is retried once).
    memory_limit_mb : float or None
        Memory guard per worker: local workers get this much address space beyond their
        start-up size (an allocation past it fails the film, not the worker); a local Dask
        cluster gives each worker this memory limit (its nanny restarts a worker above it).
    dask_scheduler : str, optional
        Address of an existing Dask distributed scheduler (``tcp://host:8786``).
    dask_local : int, optional
        Start a local Dask cluster with this many single-threaded worker processes.
    """

    jobs: int = 1
    timeout_s: float | None = DEFAULT_TIMEOUT_S
    memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB
    dask_scheduler: str | None = None
    dask_local: int | None = None

    def __post_init__(self):
        if self.jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {self.jobs}")
        if self.dask_scheduler and self.dask_local:
            raise ValueError("give either a Dask scheduler address or a local cluster size")
        if self.dask_local is not None and self.dask_local < 1:
            raise ValueError(f"a local Dask cluster needs at least 1 worker, got "
                             f"{self.dask_local}")
        for name in ("timeout_s", "memory_limit_mb"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")

    @property
    def uses_dask(self) -> bool:
        return bool(self.dask_scheduler or self.dask_local)


@dataclass(frozen=True)
class FilmTask:
    """Everything a worker needs to analyse one film (picklable)."""

    path: str
    image_id: str
    config: AnalysisConfig
    user_spacing: tuple[float, float] | None
    pseudonym_key: str
    qc: bool
    user_regions: UserRegions | None = None
    dicom_results: bool = False
    watchdog_s: float | None = None
    """Stop the whole worker process past this time (for Dask workers, which cannot be told
    to stop one task; local pools stop their workers themselves)."""


@dataclass(frozen=True)
class FilmOutput:
    """What a worker returns: the film's rows and its images as PNG bytes.

    Attributes
    ----------
    image : dict
        The ``images.csv`` row.
    deposits : tuple of dict
        The ``deposits.csv`` rows.
    regions : tuple of dict
        The ``regions.csv`` rows.
    study_instance_uid : str or None
    mask_png, qc_png : bytes or None
        The label image and QC overlay, encoded (small to send back from a cluster).
    seg_dcm, sr_dcm : bytes or None
        The DICOM SEG and SR files, when asked for.
    peak_memory_mb : float or None
        Peak resident memory of the worker process so far.
    content_hash : str or None
        sha256 of the file (set by the writer, which keys the results store with it).
    """

    image: dict
    deposits: tuple[dict, ...] = ()
    regions: tuple[dict, ...] = ()
    study_instance_uid: str | None = None
    mask_png: bytes | None = None
    qc_png: bytes | None = None
    seg_dcm: bytes | None = None
    sr_dcm: bytes | None = None
    peak_memory_mb: float | None = None
    content_hash: str | None = None

    @property
    def status(self) -> Status:
        return Status(self.image["status"])


@dataclass(frozen=True)
class RunSummary:
    """Counts of one run."""

    out_dir: Path
    n_inputs: int
    n_ok: int
    n_failed: int
    n_skipped: int
    n_deposits: int
    n_reused: int = 0
    peak_worker_memory_mb: float | None = None
    outputs: tuple[FilmOutput, ...] = ()
    """Every input's rows, in input order (images travel as files in the output folder)."""

    @property
    def n_films(self) -> int:
        """Inputs that were analysed (ok or failed)."""
        return self.n_ok + self.n_failed


def run_film_task(task: FilmTask) -> FilmOutput:
    """Analyse one film in a worker and encode its images (the unit of parallel work)."""
    cv2.setNumThreads(1)  # one film per core: OpenCV's own threads would only compete
    watchdog = None
    if task.watchdog_s is not None:
        watchdog = threading.Timer(task.watchdog_s, _stop_worker, args=(task,))
        watchdog.daemon = True
        watchdog.start()
    try:
        result = analyze_film(task.path, task.image_id, task.config,
                              user_spacing=task.user_spacing, pseudonym_key=task.pseudonym_key,
                              qc=task.qc, user_regions=task.user_regions,
                              dicom_results=task.dicom_results)
    finally:
        if watchdog is not None:
            watchdog.cancel()
    return FilmOutput(
        image=result.image, deposits=result.deposits, regions=result.regions,
        study_instance_uid=result.study_instance_uid,
        mask_png=None if result.labels is None else encode_png(result.labels),
        qc_png=None if result.overlay is None else encode_png(result.overlay),
        seg_dcm=_dicom_bytes(result.segmentation), sr_dcm=_dicom_bytes(result.report),
        peak_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _stop_worker(task: FilmTask) -> None:
    print(f"calcitrack: {task.path} ran over the per-file time limit of {task.watchdog_s:g} s; "
          "stopping this worker", file=sys.stderr, flush=True)
    os._exit(_EXIT_TIMED_OUT)


def _dicom_bytes(dataset) -> bytes | None:
    if dataset is None:
        return None
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def options_hash(user_spacing, pseudonym_key: str | None, qc: bool,
                 user_regions: UserRegions | None = None, dicom_results: bool = False) -> str:
    """Fingerprint of the run options that change a film's outputs besides the configuration.

    The pseudonym key enters through a keyed hash of a fixed text, so the fingerprint does
    not reveal it; user regions by a hash of their polygons.

    Examples
    --------
    >>> options_hash(None, "k", True) == options_hash(None, "k", True)
    True
    >>> options_hash((0.1, 0.1), "k", True) != options_hash(None, "k", True)
    True
    """
    spacing = "none" if user_spacing is None else ",".join(f"{v!r}" for v in user_spacing)
    key_check = patient_key("calcitrack options check", key=resolve_key(pseudonym_key))
    regions = "auto" if user_regions is None else user_regions.fingerprint()
    return (f"spacing={spacing};key={key_check};qc={int(bool(qc))};regions={regions};"
            f"dicom={int(bool(dicom_results))}")


def analyze_files(paths, out_dir: str | os.PathLike, config: AnalysisConfig, *,
                  user_spacing=None, pseudonym_key: str | None = None, qc: bool = True,
                  user_regions: UserRegions | None = None, dicom_results: bool = False,
                  db_path: str | os.PathLike | None = None, workers: Workers = Workers(),
                  progress_stream=None) -> RunSummary:
    """Analyse every film below `paths` and write the outputs in `out_dir`.

    Nothing is written when no input is a film. See the module docstring for what a killed
    or resumed run does.

    Parameters
    ----------
    paths : iterable of str or os.PathLike
        Files or folders (walked recursively).
    out_dir : str or os.PathLike
    config : AnalysisConfig
    user_spacing, pseudonym_key, qc, user_regions, dicom_results
        As for `pipelines.film.analyze_film`.
    db_path : str or os.PathLike, optional
        The results store (default: `DATABASE_NAME` in `out_dir`).
    workers : Workers
        Where the films are analysed.
    progress_stream : file, optional
        Where to show progress (`BatchProgress`: a live bar on a terminal, log lines
        otherwise) and failures; None for a silent run.

    Returns
    -------
    RunSummary
    """
    out_dir = Path(out_dir)
    inputs = plan_inputs(paths)
    n_skipped = sum(item.skip_reason is not None for item in inputs)
    if n_skipped == len(inputs):
        return RunSummary(out_dir, len(inputs), 0, 0, n_skipped, 0)
    if out_dir.is_dir():
        remove_stale_temporaries(out_dir)
    provenance = Provenance.of(config)
    key = resolve_key(pseudonym_key)
    options = options_hash(user_spacing, key, qc, user_regions, dicom_results)
    tables = _Tables(out_dir, len(inputs))
    peak_memory = []
    progress = (BatchProgress(len(inputs), stream=progress_stream)
                if progress_stream is not None else contextlib.nullcontext())
    with ResultsStore.open(out_dir / DATABASE_NAME if db_path is None else db_path) as store, \
            _open_pool(workers) as pool, progress:
        run_id = store.start_run(provenance.calcitrack_version, provenance.config_hash,
                                 config.to_dict())

        def finish(index: int, output: FilmOutput, content_hash: str | None,
                   line: str | None = None, reused: bool = False) -> None:
            if not reused:
                _write_images(out_dir, output)
                store.record_film(run_id, content_hash, output.image, output.deposits,
                                  output.regions, study_instance_uid=output.study_instance_uid,
                                  options_hash=options)
            tables.set(index, dataclasses.replace(output, content_hash=content_hash), reused)
            if output.peak_memory_mb is not None:
                peak_memory.append(output.peak_memory_mb)
            if progress_stream is not None:
                if reused:
                    progress.reuse(output.status)
                else:
                    progress.advance(output.status, line)

        pending: dict = {}

        def collect(block: bool) -> None:
            for future in pool.finished(pending, block=block):
                index, item, content_hash = pending.pop(future)
                output = pool.outcome(future, item, provenance)
                finish(index, output, content_hash, _failure_line(output))

        try:
            for index, item in enumerate(inputs):
                if item.skip_reason is not None:
                    # Skipped files are rows, not progress lines: archives hold many. They are
                    # not hashed (an archive's videos and PDFs can be large): the store keys
                    # their rows by path.
                    finish(index, _skipped_output(item, provenance), None)
                    continue
                content_hash = file_content_hash(item.path)
                earlier = _finished_output(store, out_dir, item, content_hash,
                                           provenance.config_hash, options)
                if earlier is not None:
                    finish(index, earlier, content_hash, reused=True)
                    continue
                while len(pending) >= pool.capacity:
                    collect(block=True)
                task = FilmTask(os.fspath(item.path), item.image_id, config, user_spacing, key, qc,
                                user_regions, dicom_results)
                pending[pool.submit(task)] = (index, item, content_hash)
                collect(block=False)
                tables.write_if_due()
            while pending:
                collect(block=True)
                tables.write_if_due()
        finally:
            tables.write()
        store.finish_run(run_id)
    statuses = tables.statuses()
    return RunSummary(out_dir, len(inputs), statuses[Status.OK], statuses[Status.ERROR],
                      statuses[Status.SKIPPED], tables.n_deposits(), tables.n_reused,
                      max(peak_memory, default=None), tables.outputs())


class _Tables:
    """Every input's output in input order; the CSVs rewritten at most every `CSV_INTERVAL_S`."""

    def __init__(self, out_dir: Path, n_inputs: int):
        self._out_dir = out_dir
        self._outputs: list[FilmOutput | None] = [None] * n_inputs
        self._written_at = time.monotonic()
        self._changed = False
        self.n_reused = 0

    def set(self, index: int, output: FilmOutput, reused: bool) -> None:
        self._outputs[index] = output
        self._changed = True
        self.n_reused += reused

    def write_if_due(self) -> None:
        if self._changed and time.monotonic() - self._written_at >= CSV_INTERVAL_S:
            self.write()

    def write(self) -> None:
        done = [output for output in self._outputs if output is not None]
        if not done:
            return
        write_csv(self._out_dir / "images.csv", [output.image for output in done], IMAGE_COLUMNS)
        write_csv(self._out_dir / "deposits.csv",
                  [row for output in done for row in output.deposits], DEPOSIT_COLUMNS)
        write_csv(self._out_dir / "regions.csv",
                  [row for output in done for row in output.regions], REGION_COLUMNS)
        write_run_report(self._out_dir, done)
        self._written_at = time.monotonic()
        self._changed = False

    def statuses(self) -> dict:
        counts = dict.fromkeys(Status, 0)
        for output in self._outputs:
            if output is not None:
                counts[output.status] += 1
        return counts

    def outputs(self) -> tuple[FilmOutput, ...]:
        """Rows only: the PNG and DICOM bytes are written already."""
        return tuple(dataclasses.replace(output, mask_png=None, qc_png=None, seg_dcm=None,
                                         sr_dcm=None)
                     for output in self._outputs if output is not None)

    def n_deposits(self) -> int:
        return sum(len(output.deposits) for output in self._outputs if output is not None)


def _write_images(out_dir: Path, output: FilmOutput) -> None:
    for column, data in (("mask_path", output.mask_png), ("qc_path", output.qc_png),
                         ("seg_path", output.seg_dcm), ("sr_path", output.sr_dcm)):
        if data is not None:
            write_bytes(out_dir / output.image[column], data)


def _skipped_output(item: InputFile, provenance: Provenance) -> FilmOutput:
    return FilmOutput(image_row(item.image_id, os.fspath(item.path), provenance,
                                status=Status.SKIPPED, notes=(f"skipped: {item.skip_reason}",)))


def _finished_output(store: ResultsStore, out_dir: Path, item: InputFile,
                     content_hash: str | None, config_hash: str,
                     options: str) -> FilmOutput | None:
    """The film's results from an earlier run, when complete on disk; else None."""
    found = store.finished_film(content_hash, config_hash, options)
    if found is None:
        return None
    image, deposits, regions = found
    written = [image[column] for column in ("mask_path", "qc_path", "seg_path", "sr_path")
               if image[column]]
    if (image["image_id"] != item.image_id
            or not all((out_dir / path).is_file() for path in written)):
        return None
    image = {column: image[column] for column in IMAGE_COLUMNS}
    image["source_path"] = os.fspath(item.path)
    return FilmOutput(image, tuple({column: row[column] for column in DEPOSIT_COLUMNS}
                                   for row in deposits),
                      tuple({column: row[column] for column in REGION_COLUMNS}
                            for row in regions))


def _failure_line(output: FilmOutput) -> str | None:
    return output.image["error"] if output.status is Status.ERROR else None


# --- worker pools --------------------------------------------------------------------------

@contextlib.contextmanager
def _open_pool(workers: Workers):
    pool = _DaskPool(workers) if workers.uses_dask else _ProcessPool(workers)
    try:
        yield pool
    except BaseException:
        pool.close(cancel=True)
        raise
    pool.close(cancel=False)


def _error_output(item: InputFile, provenance: Provenance, message: str) -> FilmOutput:
    return FilmOutput(image_row(item.image_id, os.fspath(item.path), provenance,
                                status=Status.ERROR, error=f"{item.path}: {message}"))


class _ProcessPool:
    """Local worker processes (pebble), each film with a time limit and a memory guard."""

    def __init__(self, workers: Workers):
        self._timeout_s = workers.timeout_s
        self.capacity = workers.jobs * _TASKS_PER_WORKER
        self._pool = pebble.ProcessPool(max_workers=workers.jobs, initializer=_guard_memory,
                                        initargs=(workers.memory_limit_mb,),
                                        context=_worker_context())

    def submit(self, task: FilmTask):
        return self._pool.schedule(run_film_task, args=(task,), timeout=self._timeout_s)

    @staticmethod
    def finished(futures, block: bool):
        done, _ = concurrent.futures.wait(list(futures), timeout=None if block else 0,
                                          return_when=concurrent.futures.FIRST_COMPLETED)
        return done

    def outcome(self, future, item: InputFile, provenance: Provenance) -> FilmOutput:
        try:
            return future.result()
        except concurrent.futures.TimeoutError:
            return _error_output(item, provenance,
                                 f"analysis stopped after the per-file time limit of "
                                 f"{self._timeout_s:g} s — the file may be pathological; raise "
                                 "--timeout if films this slow are expected")
        except pebble.ProcessExpired as exc:
            return _error_output(item, provenance,
                                 f"the worker analysing this film died (exit code "
                                 f"{exc.exitcode}) — out of memory, or a crash in an image "
                                 "decoder; please report it with this file")
        except Exception as exc:  # the task itself catches errors: this is a transport failure
            return _error_output(item, provenance, f"worker failure: {type(exc).__name__} "
                                                   f"({str(exc)[:200]})")

    def close(self, cancel: bool) -> None:
        if cancel:
            self._pool.stop()
        else:
            self._pool.close()
        self._pool.join()


def _worker_context():
    """Workers fork from a clean server process, never from this one.

    Forking a process whose OpenCV (or BLAS) thread pool has run leaves the child with a pool
    whose threads are gone: its first OpenCV call can deadlock. The fork server imports the
    analysis once, runs nothing, and so forks clean workers quickly.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["pipelines.batch"])
    return context


def _guard_memory(limit_mb: float | None) -> None:
    """Worker start-up: cap the address space at its current size plus `limit_mb`."""
    if limit_mb is None:
        return
    with open("/proc/self/statm") as statm:  # sizes in pages; the first is the whole VM
        current = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = current + int(limit_mb * 2**20)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


class _DaskPool:
    """The same tasks on a Dask distributed cluster (an existing one, or a local one)."""

    def __init__(self, workers: Workers):
        import dask  # imported only when asked for: it is slow to import
        import distributed

        self._distributed = distributed
        self._timeout_s = workers.timeout_s
        self._cluster = None
        if workers.dask_local:
            memory = ("auto" if workers.memory_limit_mb is None
                      else f"{workers.memory_limit_mb:g}MiB")
            with dask.config.set({"distributed.scheduler.allowed-failures":
                                  _DASK_ALLOWED_FAILURES, **_DASK_WORKER_ENVIRONMENT}):
                self._cluster = distributed.LocalCluster(
                    n_workers=workers.dask_local, threads_per_worker=1, processes=True,
                    memory_limit=memory, dashboard_address=None, silence_logs=logging.ERROR)
            self._client = distributed.Client(self._cluster)
        else:
            try:
                self._client = distributed.Client(workers.dask_scheduler, timeout="30s")
            except OSError as exc:
                raise ConnectionError(f"cannot reach the Dask scheduler at "
                                      f"{workers.dask_scheduler} ({exc}); check the address "
                                      "and that `dask scheduler` is running") from None
        n_workers = max(len(self._client.scheduler_info()["workers"]), 1)
        self.capacity = n_workers * _TASKS_PER_DASK_WORKER

    def submit(self, task: FilmTask):
        task = dataclasses.replace(task, watchdog_s=self._timeout_s)
        return self._client.submit(run_film_task, task, pure=False)

    def finished(self, futures, block: bool):
        if not block:
            return [future for future in futures if future.done()]
        return self._distributed.wait(list(futures), return_when="FIRST_COMPLETED").done

    def outcome(self, future, item: InputFile, provenance: Provenance) -> FilmOutput:
        try:
            return future.result()
        except self._distributed.KilledWorker:
            return _error_output(item, provenance,
                                 f"the Dask workers analysing this film died repeatedly — it "
                                 f"ran over the per-file time limit ({self._timeout_s:g} s, "
                                 "--timeout) or the workers' memory limit; raise them if "
                                 "such films are expected")
        except Exception as exc:
            return _error_output(item, provenance, f"Dask task failed: {type(exc).__name__} "
                                                   f"({str(exc)[:200]})")

    def close(self, cancel: bool) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()
