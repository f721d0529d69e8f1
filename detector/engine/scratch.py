"""What a killed run (``kill -9`` skips every cleanup) must not leave behind: its partition
folder, marked with the owner's pid so that the next run removes it once that process is gone,
and its forked workers, which would otherwise wait forever on their task queue (each holding
its share of memory: ~0.5 GB on the samples)."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import shutil
import signal
import sys
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


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """In a forked worker (Linux): be killed when the process that forked it dies."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before prctl took effect
        os._exit(1)
