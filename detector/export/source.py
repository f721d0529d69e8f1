"""The newest scores file and its run report, rendered once, reloaded when either changes.

An output of `gpuwatch score` is a symlink into the current run's folder: it is resolved once,
and the scores and the report are both read from that folder, so they always belong to one run
(a report whose run id differs from the scores' is refused). A snapshot replaces the last good
one only after its whole exposition rendered: a file that cannot be read, lacks a column or
holds a null id leaves the last good snapshot in place and is named in ``error``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prometheus_client import generate_latest
from prometheus_client.core import Metric

from ..errors import InputError
from ..outputs import resolve_current
from ..runinfo import RunReport
from .collector import registry_of
from .metrics import run_families, score_families, success_families
from .options import ExportOptions
from .sidecar import read_run_sidecar, sidecar_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """One run's scores and report, with their exposition rendered once."""

    name: str  # the scores file's name (never a full path: it is shown over HTTP)
    scores: pd.DataFrame
    report: RunReport | None
    run_text: bytes  # the run families of the report ("" without one)
    score_text: bytes  # the last-success and score families


def render(produce: Callable[[], Iterable[Metric]]) -> bytes:
    """The text exposition of some families."""
    return generate_latest(registry_of(produce))


def newest_scores(path: Path) -> Path | None:
    """``path`` itself if it is a file, else the newest ``*.parquet`` in it (None if absent)."""
    if path.is_file():
        return path
    if not path.is_dir():
        return None
    files = [p for p in path.glob("*.parquet") if p.is_file() and not p.name.startswith(".")]
    return max(files, key=lambda p: (p.stat().st_mtime_ns, p.name), default=None)


class ScoresSource:
    """Holds the last good snapshot; a file that fails to load or render leaves it in place."""

    def __init__(self, path: Path, options: ExportOptions) -> None:
        self.path = Path(path)
        self.options = options
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._snapshot: Snapshot | None = None
        self.error: str | None = None

    def current(self) -> Snapshot | None:
        """Reload if the newest scores file or its report changed, then return the snapshot."""
        with self._lock:
            scores = newest_scores(self.path)
            if scores is None:
                self.error = f"no scores file {self.path.name}"
                return self._snapshot
            real = resolve_current(scores)
            stamp = (real, _stat(real), _stat(sidecar_path(real)))
            if stamp != self._stamp:
                self._load(scores, real, stamp)
            return self._snapshot

    def _load(self, scores: Path, real: Path, stamp: tuple) -> None:
        try:
            frame = pd.read_parquet(real)
            report = read_run_sidecar(real)
            _check_pair(frame, report)
            snapshot = Snapshot(
                scores.name,
                frame,
                report,
                render(lambda: run_families(report)) if report else b"",
                render(lambda: self._score_families(frame, report)),
            )
        except Exception as exc:  # whatever stops it rendering, the file is refused
            self.error = _without_folders(f"{scores.name}: cannot load scores: {exc}", scores, real)
            self._stamp = stamp  # not retried until the file changes again
            log.warning("%s (keeping the previous snapshot)", self.error)
            return
        self._stamp, self.error, self._snapshot = stamp, None, snapshot
        log.info("loaded %d sessions from %s", len(frame), scores)

    def _score_families(self, frame: pd.DataFrame, report: RunReport | None) -> Iterable[Metric]:
        if report is not None and report.success:
            yield from success_families(report)
        yield from score_families(frame, self.options)


def _check_pair(scores: pd.DataFrame, report: RunReport | None) -> None:
    """Refuse a run report written by another run than the scores'."""
    if report is None or "run_id" not in scores or scores.empty:
        return
    runs = set(scores["run_id"].astype(str))
    if runs != {report.run_id}:
        raise InputError(
            f"the run report is of run {report.run_id}, the scores of {', '.join(sorted(runs))}"
        )


def _without_folders(message: str, *paths: Path) -> str:
    """``message`` without the folders of ``paths``: responses never show where files live."""
    for path in paths:
        for folder in {str(path.parent), str(path.absolute().parent)}:
            message = message.replace(folder + os.sep, "")
    return message


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size
