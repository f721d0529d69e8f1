"""A partition larger than `slice_rows` (one huge tenant): features in memory bounded by a slice.

The partition's files are cut by time, at grid boundaries, into slices of at most `slice_rows`
rows (one grid bucket is never cut), written beside them in input order. A first pass over the
slices finds each one's runs of activity, merged into the partition's sessions
(`sessions.merge_runs`); a second assigns each slice's samples to those sessions and
summarises them (`features.summary`); the summaries merge, in time order, into the features
one table would give. Duplicates share a timestamp, so each is found in its slice.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import quarantine
from ..config import Settings
from ..features.summary import Summary, merge, summarise
from ..features.workload import summary_features
from ..sessions import active_runs, cut_sessions, merge_runs
from ..timeutil import NS
from .partition import ROWS_PER_PARTITION, SCHEMA, Stopwatch, read_partition

SLICE_ROWS = 2 * ROWS_PER_PARTITION  # default: larger partitions are cut in time slices
_IPC = pa.ipc.IpcWriteOptions(compression=None, emit_dictionary_deltas=True)


def partition_rows(paths: Sequence[Path]) -> int:
    """Rows in a partition's files (read from their batch headers)."""
    return sum(sum(len(batch) for batch in _batches(path)) for path in paths)


def sliced_features(
    paths: Sequence[Path], files: Sequence[str], settings: Settings, slice_rows: int
) -> tuple[pd.DataFrame, pd.DataFrame, int, dict[str, float]]:
    """(sessions with workload features, duplicate rows, rows, seconds per step) of one
    partition, read one time slice at a time."""
    seconds = Stopwatch(read=0.0, sessions=0.0, workload=0.0)
    folder = Path(paths[0]).parent.parent / f"slices-{Path(paths[0]).stem}"
    try:
        grid_ns = settings.sessions.grid_seconds * NS
        slices = seconds.run("read", _split, paths, folder, grid_ns, slice_rows)
        runs, rejected, rows = [], [], 0
        for slice_paths in slices:
            telemetry, dup = seconds.run("read", read_partition, slice_paths, files)
            runs.append(seconds.run("sessions", active_runs, telemetry, settings.sessions))
            rejected.append(dup)
            rows += len(telemetry)
        sessions = merge_runs(runs, settings.sessions)
        summary: Summary | None = None
        for slice_paths in slices:
            telemetry, _ = seconds.run("read", read_partition, slice_paths, files)
            _, samples = seconds.run(
                "sessions", cut_sessions, telemetry, settings.sessions, sessions
            )
            part = seconds.run("workload", summarise, len(sessions), samples, settings)
            summary = part if summary is None else merge(summary, part)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert summary is not None  # a partition has rows
    workload = seconds.run("workload", summary_features, sessions, summary, settings)
    features = pd.concat([sessions, workload], axis=1)
    return features, quarantine.combine(rejected), rows, seconds


def _split(paths: Sequence[Path], folder: Path, grid_ns: int, slice_rows: int) -> list[list[Path]]:
    """Write the rows of `paths` into time slices in `folder`: per slice, its files (one per
    partition file it has rows from, in input order)."""
    counts: dict[int, int] = {}
    for path in paths:
        for batch in _batches(path):
            seen, n = np.unique(_buckets(batch, grid_ns), return_counts=True)
            for b, c in zip(seen.tolist(), n.tolist(), strict=True):
                counts[b] = counts.get(b, 0) + c
    cuts, rows = [], 0
    for bucket in sorted(counts):  # a slice ends where the next bucket would overfill it
        if rows and rows + counts[bucket] > slice_rows:
            cuts.append(bucket)
            rows = 0
        rows += counts[bucket]
    folder.mkdir(parents=True, exist_ok=True)
    slices: list[list[Path]] = [[] for _ in range(len(cuts) + 1)]
    for j, path in enumerate(paths):
        writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        try:
            for batch in _batches(path):
                which = np.searchsorted(cuts, _buckets(batch, grid_ns), side="right")
                for i in np.unique(which).tolist():
                    if i not in writers:
                        slices[i].append(folder / f"s{i:05d}-f{j:04d}.arrow")
                        writers[i] = pa.ipc.new_file(slices[i][-1], SCHEMA, options=_IPC)
                    writers[i].write_batch(batch.filter(pa.array(which == i)))
        finally:
            for writer in writers.values():
                writer.close()
    return slices


def _batches(path: Path) -> Iterator[pa.RecordBatch]:
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def _buckets(batch: pa.RecordBatch, grid_ns: int) -> np.ndarray:
    ts = batch.column("timestamp").cast(pa.timestamp("ns", "UTC")).cast(pa.int64())
    return ts.to_numpy() // grid_ns
