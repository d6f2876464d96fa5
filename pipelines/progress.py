"""Progress of a batch: a live bar on a terminal, plain periodic log lines otherwise.

Counts files done, failed and skipped, the rate of films analysed in this run and the time
left. Films reused from an earlier run (a resumed batch) count as done but not in the rate,
so the estimate stays honest after a restart.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn)

from imaging.export import Status

#: Seconds between two plain log lines when the output is not a terminal.
LOG_INTERVAL_S = 10.0


class BatchProgress:
    """Show the progress of `total` input files (use as a context manager).

    Parameters
    ----------
    total : int
        Input files in the run.
    stream : file, optional
        Where to show it (default: standard error).
    live : bool, optional
        Live bar (default: when `stream` is a terminal) or plain lines.
    interval_s : float
        Seconds between plain lines.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> with BatchProgress(2, stream=out, live=False) as progress:
    ...     progress.advance(Status.OK)
    ...     progress.advance(Status.ERROR, "b.dcm: not a DICOM file")
    >>> print(out.getvalue().splitlines()[-2])
    error    b.dcm: not a DICOM file
    """

    def __init__(self, total: int, *, stream=None, live: bool | None = None,
                 interval_s: float = LOG_INTERVAL_S):
        self.total = total
        self.counts: Counter = Counter()
        self.reused = 0
        self._stream = sys.stderr if stream is None else stream
        self._live = self._stream.isatty() if live is None else live
        self._interval_s = interval_s
        self._started = time.monotonic()
        self._last_line = self._started
        self._analysed = 0
        self._bar = None

    def __enter__(self) -> BatchProgress:
        if self._live:
            self._bar = Progress(
                TextColumn("[bold]calcitrack"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                TextColumn("{task.fields[speed]}"),
                console=Console(file=self._stream), transient=False)
            self._bar.start()
            self._task = self._bar.add_task("films", total=self.total, counts="", speed="")
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._refresh()
            self._bar.stop()
        else:
            self._print(self.status_line())

    @property
    def done(self) -> int:
        """Files finished so far (reused ones included)."""
        return sum(self.counts.values())

    def reuse(self, status: Status) -> None:
        """Count a file whose results an earlier run already holds."""
        self.reused += 1
        self.counts[Status(status)] += 1
        self._tick()

    def advance(self, status: Status, line: str | None = None) -> None:
        """Count a file handled in this run; `line` (e.g. a failure) is printed above."""
        status = Status(status)
        self.counts[status] += 1
        if status is not Status.SKIPPED:
            self._analysed += 1
        if line is not None:
            self._print(f"{status:<8} {line}")
        self._tick()

    def status_line(self) -> str:
        """One line: done / total, outcomes, rate and time left."""
        return (f"calcitrack: {self.done}/{self.total} files ({self._counts_text()}) "
                f"{self._speed_text()}")

    def _counts_text(self) -> str:
        text = (f"ok {self.counts[Status.OK]}, failed {self.counts[Status.ERROR]}, "
                f"skipped {self.counts[Status.SKIPPED]}")
        return f"{text}, reused {self.reused}" if self.reused else text

    def _speed_text(self) -> str:
        elapsed = time.monotonic() - self._started
        if not self._analysed or elapsed <= 0:
            return ""
        rate = self._analysed / elapsed
        left = (self.total - self.done) / rate
        return f"{rate:.2f} films/s, ETA {_duration(left)}"

    def _tick(self) -> None:
        if self._bar is not None:
            self._refresh()
            return
        now = time.monotonic()
        if now - self._last_line >= self._interval_s:
            self._last_line = now
            self._print(self.status_line())

    def _refresh(self) -> None:
        self._bar.update(self._task, completed=self.done, counts=self._counts_text(),
                         speed=self._speed_text())

    def _print(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self._stream, flush=True)


def _duration(seconds: float) -> str:
    """Examples
    --------
    >>> _duration(3725)
    '1h02m05s'
    >>> _duration(42.4)
    '42s'
    """
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{seconds:02d}s"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
