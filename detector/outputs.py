"""One run's outputs as a set: scores, run report, quarantine and metrics change together.

A run writes its files into a staging folder beside the scores (``.scores.parquet.runs/``),
fsyncs them, renames the folder to its run id and then swaps one symlink, ``current``, onto it.
Each output path the user named is a fixed symlink through ``current``
(``scores.parquet -> .scores.parquet.runs/current/scores.parquet``), so one ``rename`` switches
all four at once: a reader sees the previous run's set or the new one, never a mix, even when
the run is killed at any point. A reader that must pair files (``gpuwatch serve``) resolves
``current`` once and reads everything from that run's folder.

One lock file per output (``fcntl.flock``) keeps two runs off the same set: the second waits
up to ``wait`` seconds, then fails with one line. The kernel releases it when the run dies; the
engine's forked workers close their copy of the lock at fork, so workers orphaned by a
``kill -9`` of their parent do not keep holding it. Leftovers of a killed run (staging folders,
half-made links, run folders never swapped in) are removed by the next run, under the lock.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import GpuwatchError

CURRENT = "current"
LOCK = "lock"
STAGING = ".staging-"
LINK_TMP = ".link-"
METRICS = "metrics.prom"
POLL_SECONDS = 0.2


_HELD: set[int] = set()  # this process's lock descriptors, closed in forked children


def _close_held_locks() -> None:
    for fd in _HELD:
        os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_locks)


class OutputError(GpuwatchError):
    """The output set cannot be locked or written."""


@dataclass(frozen=True)
class Stage:
    """Where one run writes its files before they are swapped in together."""

    folder: Path
    scores: Path
    quarantine: Path
    metrics: Path | None


@dataclass(frozen=True)
class OutputSet:
    """The output paths of ``gpuwatch score``: all symlinks into the current run's folder."""

    scores: Path
    quarantine: Path
    metrics: Path | None = None

    @property
    def root(self) -> Path:
        """``out/.scores.parquet.runs``: the lock, ``current`` and the run folders."""
        return self.scores.parent / f".{self.scores.name}.runs"

    @property
    def quarantine_name(self) -> str:
        """The quarantine's name inside a run folder (its format follows the user's suffix)."""
        return "quarantine" + (self.quarantine.suffix or ".csv")

    def members(self) -> dict[str, Path]:
        """{name inside a run folder: the path the user sees}; the scores come last."""
        names = {
            f"{self.scores.name}.run.json": self.scores.with_name(self.scores.name + ".run.json"),
            self.quarantine_name: self.quarantine,
        }
        if self.metrics is not None:
            names[METRICS] = self.metrics
        names[self.scores.name] = self.scores
        return names

    @contextmanager
    def locked(self, wait: float = 0.0) -> Iterator[None]:
        """Hold this output's lock (waiting up to ``wait`` seconds), tidy leftovers, yield."""
        try:
            self.root.mkdir(exist_ok=True)
            fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"{self.scores}: cannot create the output lock: {exc}") from exc
        try:
            _acquire(fd, wait, self.scores)
            _HELD.add(fd)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._tidy()
            self._adopt_plain_files()
            yield
        finally:
            _HELD.discard(fd)
            os.close(fd)  # releases the lock

    @contextmanager
    def stage(self, run_id: str) -> Iterator[Stage]:
        """A fresh staging folder; removed unless ``commit`` swapped it in."""
        folder = self.root / f"{STAGING}{run_id}-{os.getpid()}"
        folder.mkdir()
        stage = Stage(
            folder,
            folder / self.scores.name,
            folder / self.quarantine_name,
            folder / METRICS if self.metrics is not None else None,
        )
        try:
            yield stage
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def carry(self, stage: Stage, *, skip: tuple[str, ...] = ()) -> None:
        """Hard-link the current set's files (but ``skip``) into ``stage``: a failed run keeps
        the last scores, report and quarantine and replaces only what it names."""
        current = self.current()
        if current is None:
            return
        for name in self.members():
            source = current / name
            if name in skip or not source.is_file():
                continue
            _link_or_copy(source, stage.folder / name)

    def current(self) -> Path | None:
        """The folder of the run now swapped in (None before the first run)."""
        link = self.root / CURRENT
        try:
            return self.root / os.readlink(link)
        except OSError:
            return None

    def commit(self, stage: Stage, run_id: str) -> Path:
        """Make ``stage`` the current set in one atomic rename; returns its run folder."""
        try:
            for path in stage.folder.iterdir():
                _fsync_file(path)
            _fsync_dir(stage.folder)
            previous = self.current()
            folder = self.root / run_id
            os.rename(stage.folder, folder)
            _swap_link(self.root / CURRENT, run_id)
            _fsync_dir(self.root)
            self._link_members()
        except OSError as exc:
            raise OutputError(f"{self.scores}: cannot swap the new outputs in: {exc}") from exc
        self._prune(keep={folder.name, previous.name if previous else ""})
        return folder

    def _link_members(self) -> None:
        """Point every user-facing path at ``current/NAME`` (normally already so)."""
        for name, path in self.members().items():
            target = os.path.relpath(self.root / CURRENT / name, path.parent)
            if path.is_symlink() and os.readlink(path) == target:
                continue
            _swap_link(path, target)
            _fsync_dir(path.parent)

    def _tidy(self) -> None:
        """Remove what a killed run left: staging folders, link temps, unswapped run folders."""
        current = self.current()
        self._prune(keep={current.name} if current else set())
        for path in self.members().values():
            for tmp in path.parent.glob(f"{LINK_TMP}{path.name}-*"):
                tmp.unlink(missing_ok=True)

    def _prune(self, keep: set[str]) -> None:
        """Remove the run folders and temps of the root that are not in ``keep``. The previous
        set stays one run longer, for a reader that resolved ``current`` just before a swap."""
        for entry in self.root.iterdir():
            if entry.name in keep or entry.name in (LOCK, CURRENT):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def _adopt_plain_files(self) -> None:
        """Outputs of an older gpuwatch (plain files, no ``current``) become the first set,
        unchanged, so the switch to links shows the same files throughout."""
        if self.current() is not None:
            return
        found = {
            name: path
            for name, path in self.members().items()
            if path.is_file() and not path.is_symlink()
        }
        if not found:
            return
        with self.stage("adopted") as stage:
            for name, path in found.items():
                _link_or_copy(path, stage.folder / name)
            self.commit(stage, "adopted")


def _acquire(fd: int, wait: float, out: Path) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise OutputError(
                    f"{out}: another gpuwatch run (pid {holder}) is writing this output; "
                    "try later or give --wait SECONDS"
                ) from None
            time.sleep(POLL_SECONDS)


def _swap_link(path: Path, target: str) -> None:
    """Replace ``path`` by a symlink to ``target`` in one rename (temp name unique per pid)."""
    tmp = path.with_name(f"{LINK_TMP}{path.name}-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, path)


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(source, dest)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def resolve_current(path: Path) -> Path:
    """The real file behind an output link, resolved once, so that files read from its
    folder all belong to one run; ``path`` itself when it is a plain file."""
    return Path(os.path.realpath(path))
