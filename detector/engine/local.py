"""The in-process engine: partitions one after another, or a few at a time in forked worker
processes (one per core), so memory holds at most `workers` partitions at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config import Settings
from ..features.workload import workload_features
from ..sessions import cut_sessions
from .partition import Stopwatch, read_partition, worker_pool
from .slices import SLICE_ROWS, partition_rows, sliced_features


@dataclass
class PartResult:
    """Sessions of one partition with their workload features, and its duplicate rows."""

    features: pd.DataFrame
    quarantine: pd.DataFrame
    rows: int
    seconds: dict[str, float]


def partition_features(
    paths: Sequence[Path], files: Sequence[str], settings: Settings, slice_rows: int = SLICE_ROWS
) -> PartResult:
    """Read one partition, cut its sessions and compute their workload features; a partition
    of more than `slice_rows` rows one time slice at a time (`slices`)."""
    if partition_rows(paths) > slice_rows:
        return PartResult(*sliced_features(paths, files, settings, slice_rows))
    seconds = Stopwatch()
    telemetry, rejected = seconds.run("read", read_partition, paths, files)
    sessions, samples = seconds.run("sessions", cut_sessions, telemetry, settings.sessions)
    workload = seconds.run("workload", workload_features, sessions, samples, settings)
    return PartResult(pd.concat([sessions, workload], axis=1), rejected, len(telemetry), seconds)


def run_local(
    paths: Sequence[Sequence[Path]],
    files: Sequence[str],
    settings: Settings,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    slice_rows: int = SLICE_ROWS,
) -> list[PartResult]:
    """Every partition, in partition order: in this process, or with `workers` > 1 in that
    many forked processes (each partition is independent, so the results are the same)."""

    def done(result: PartResult) -> PartResult:
        if progress:
            progress(1)
        return result

    if workers <= 1 or len(paths) <= 1:
        return [done(partition_features(path, files, settings, slice_rows)) for path in paths]
    with worker_pool(min(workers, len(paths))) as pool:
        futures = [
            pool.submit(partition_features, path, list(files), settings, slice_rows)
            for path in paths
        ]
        return [done(future.result()) for future in futures]
