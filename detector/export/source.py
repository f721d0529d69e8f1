"""The newest scores file and its run report, reloaded when either changes on disk."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import GpuwatchError
from ..runinfo import RunReport
from .metrics import score_families
from .options import ExportOptions
from .sidecar import read_run_sidecar, sidecar_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    path: Path
    scores: pd.DataFrame
    report: RunReport | None


def newest_scores(path: Path) -> Path | None:
    """``path`` itself if it is a file, else the newest ``*.parquet`` in it (None if absent)."""
    if path.is_file():
        return path
    if not path.is_dir():
        return None
    files = [p for p in path.glob("*.parquet") if p.is_file() and not p.name.startswith(".")]
    return max(files, key=lambda p: (p.stat().st_mtime_ns, p.name), default=None)


class ScoresSource:
    """Holds the last good snapshot; a file that fails to load leaves it in place."""

    def __init__(self, path: Path, options: ExportOptions) -> None:
        self.path = Path(path)
        self.options = options
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._snapshot: Snapshot | None = None
        self.error: str | None = None

    def current(self) -> Snapshot | None:
        """Reload if the newest scores file or its sidecar changed, then return the snapshot."""
        with self._lock:
            scores = newest_scores(self.path)
            if scores is None:
                self.error = f"no scores file at {self.path}"
                return self._snapshot
            stamp = (scores, _stat(scores), _stat(sidecar_path(scores)))
            if stamp != self._stamp:
                self._load(scores, stamp)
            return self._snapshot

    def _load(self, scores: Path, stamp: tuple) -> None:
        try:
            frame = pd.read_parquet(scores)
            list(score_families(frame, self.options))  # validate before serving it
            report = read_run_sidecar(scores)
        except (OSError, ValueError, GpuwatchError) as exc:
            self.error = f"{scores}: cannot load scores: {exc}"
            log.warning("%s (keeping the previous snapshot)", self.error)
            return
        self._stamp, self.error = stamp, None
        self._snapshot = Snapshot(scores, frame, report)
        log.info("loaded %d sessions from %s", len(frame), scores)


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size
