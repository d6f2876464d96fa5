"""Writing output files so that a crash never leaves one half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile

#: Name prefix of the temporary files `atomic_output` writes beside their targets.
TEMPORARY_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike):
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    The rename is atomic on POSIX file systems, so readers see the old file or the whole new
    one, never a partial write. The parent folder is created when missing.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_output(target) as tmp:
    ...     _ = pathlib.Path(tmp).write_text("done")
    >>> target.read_text()
    'done'
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=os.path.splitext(path)[1],
                                   dir=folder)
    os.close(handle)
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_output`)."""
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporary files `atomic_output` left below `folder` when a process was killed.

    Run it only while no other process writes there. Returns how many were removed.
    """
    removed = 0
    for root, _, names in os.walk(folder):
        for name in names:
            if name.startswith(TEMPORARY_PREFIX):
                os.unlink(os.path.join(root, name))
                removed += 1
    return removed
