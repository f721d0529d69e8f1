"""Partition folders marked with their owner's pid, so that the next run removes the folders
of a run that was killed (``kill -9`` skips every cleanup) once that process is gone."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "gpuwatch-parts-"


def scratch_dir(parent: Path | None = None) -> tempfile.TemporaryDirectory[str]:
    """A new partition folder ``gpuwatch-parts-PID-*`` in ``parent`` (default: $TMPDIR),
    after removing the folders there whose owner process no longer exists."""
    folder = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    remove_stale(folder)
    return tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-", dir=parent)


def remove_stale(folder: Path) -> list[Path]:
    """Remove the partition folders in ``folder`` of processes that have ended; returns them."""
    removed = []
    for path in folder.glob(f"{PREFIX}*-*"):
        pid = path.name.removeprefix(PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
