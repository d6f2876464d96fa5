"""Finding input films: files and folders, walked recursively in a stable order."""

from __future__ import annotations

import os
from pathlib import Path


def iter_input_files(paths) -> list[Path]:
    """Return every file named or found (recursively) below the given paths, sorted.

    Hidden files and folders (names starting with a dot) are skipped. A path that does not
    exist is returned as is, so the caller reports it like any other unreadable input.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(Path(root) / name for name in sorted(files) if not name.startswith("."))
        else:
            found.append(path)
    return found
