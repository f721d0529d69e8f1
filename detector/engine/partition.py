"""The partition pass: telemetry -> tenant-hash partitions on disk, in bounded memory.

Parquet inputs (a file, a folder, hive partitions such as `day=2026-10-05/tenant_id=t001/`) are
streamed batch by batch with pyarrow datasets; every batch is validated exactly as `read_table`
validates a file, and its accepted rows are appended to the partition of their tenant. Other
formats (CSV, JSON Lines, exporter text, a live Prometheus) are read whole by `read_table` and
then partitioned the same way. All of a tenant's rows land in one partition, in input order, so
a partition holds complete sessions: a session that crosses a file boundary is cut exactly as
if the data were one table. Duplicates (same key as an earlier row) share a tenant, and so a
partition; they are quarantined when the partition is read (`read_partition`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .. import quarantine
from ..errors import InputError
from ..ingest import expand
from ..ingest.readers import _arrow_to_pandas
from ..ingest.validate import check_columns, raw_json, validate
from ..schema import FLOAT, STRING, TELEMETRY, TIMESTAMP

BATCH_ROWS = 1 << 18          # rows decoded and validated at a time (no more are read ahead)
ROWS_PER_PARTITION = 1 << 19  # default partition size: ~0.5 GiB of working memory in features
_ORIGIN = ("_file", "_row")   # where an accepted row came from, for duplicate quarantine
# Partition files are Arrow IPC with LZ4: written and read back ~5x faster than Parquet, and
# they only live for one run.
_IPC = pa.ipc.IpcWriteOptions(compression="lz4")


def arrow_schema() -> pa.Schema:
    """The on-disk schema of a partition: the canonical telemetry columns, then the origin."""
    kinds = {TIMESTAMP: pa.timestamp("ns", tz="UTC"), FLOAT: pa.float64(), STRING: pa.string()}
    fields = [pa.field(c.name, kinds[c.kind]) for c in TELEMETRY.columns]
    return pa.schema([*fields, pa.field("_file", pa.int32()), pa.field("_row", pa.int64())])


@dataclass
class Partitions:
    """Partition files (one per non-empty partition) and what happened to every row read."""

    paths: list[Path]
    files: list[str]                       # input file names, indexed by `_file`
    rows_read: int = 0
    rows_accepted: int = 0                 # streamed rows, before duplicates (per partition)
    rows_out_of_window: int = 0
    rejected: list[pd.DataFrame] = field(default_factory=list)

    @property
    def quarantine(self) -> pd.DataFrame:
        return quarantine.combine(self.rejected)


def partition_of(tenant: pd.Series, n_partitions: int) -> np.ndarray:
    """Stable partition number of each tenant id (the same in every process and run)."""
    codes, names = pd.factorize(tenant)
    hashed = pd.util.hash_array(np.asarray(names, dtype=str).astype(object))
    return (hashed % np.uint64(n_partitions)).astype(np.int64)[codes]


def streamable(paths: Sequence[Path], fmt: str) -> bool:
    """True when every input is plain (not gzip) Parquet, which the pass streams."""
    return bool(paths) and fmt in ("auto", "parquet") and all(
        f.fmt == "parquet" and not f.gzip for f in expand(paths, fmt))


def count_rows(paths: Sequence[Path]) -> int:
    """Rows in Parquet inputs, from their footers."""
    return sum(pq.ParquetFile(f.path).metadata.num_rows for f in expand(paths, "parquet"))


def auto_partitions(rows: int) -> int:
    return max(1, math.ceil(rows / ROWS_PER_PARTITION))


class _Writer:
    """Appends accepted rows to the partition files of their tenants."""

    def __init__(self, out_dir: Path, n_partitions: int) -> None:
        self.out_dir, self.n = Path(out_dir), n_partitions
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.schema = arrow_schema()
        self.writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}

    def write(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        part = partition_of(frame["tenant_id"], self.n)
        order = np.argsort(part, kind="stable")
        table = pa.Table.from_pandas(frame[self.schema.names].take(order), schema=self.schema,
                                     preserve_index=False)
        part = part[order]
        starts = np.r_[0, np.flatnonzero(np.diff(part)) + 1]
        for start, stop in zip(starts, np.r_[starts[1:], len(part)], strict=True):
            p = int(part[start])
            if p not in self.writers:
                self.writers[p] = pa.ipc.new_file(self.path(p), self.schema, options=_IPC)
            self.writers[p].write_table(table.slice(start, stop - start))

    def path(self, p: int) -> Path:
        return self.out_dir / f"part-{p:05d}.arrow"

    def close(self) -> list[Path]:
        for writer in self.writers.values():
            writer.close()
        return [self.path(p) for p in sorted(self.writers)]


def partition_telemetry(paths: Sequence[Path], out_dir: Path, n_partitions: int, *,
                        fmt: str = "auto", since: pd.Timestamp | None = None,
                        until: pd.Timestamp | None = None,
                        loaded: Sequence[pd.DataFrame] = (),
                        progress: Callable[[int], None] | None = None) -> Partitions:
    """Stream `paths` (Parquet) and already validated tables (`loaded`) into partitions.

    `progress` is called with the number of rows read after every batch.
    """
    writer = _Writer(out_dir, n_partitions)
    files = expand(paths, fmt) if paths else []
    result = Partitions([], [f.name for f in files])
    try:
        for index, file in enumerate(files):
            for typed, ok, rejected, n in _validated_batches(file.path, file.name):
                result.rows_read += n
                result.rejected.append(rejected)
                keep = ok & ~_outside(typed["timestamp"], since, until)
                result.rows_out_of_window += int(ok.sum() - keep.sum())
                accepted = typed[keep]
                accepted = accepted.assign(_file=np.int32(index),
                                           _row=typed["_row"].to_numpy()[keep])
                result.rows_accepted += len(accepted)
                writer.write(accepted)
                if progress:
                    progress(n)
        for table in loaded:
            writer.write(table.assign(_file=np.int32(-1), _row=np.int64(0)))
    finally:
        result.paths = writer.close()
    return result


def _validated_batches(path: Path, name: str
                       ) -> Iterator[tuple[pd.DataFrame, np.ndarray, pd.DataFrame, int]]:
    """(typed, ok, quarantine, rows) per batch of one Parquet file; hive keys become columns."""
    try:
        pfile = pq.ParquetFile(str(path))
        names = pfile.schema_arrow.names
        keys = {k: v for k, v in hive_keys(path).items() if k not in names}
        present = check_columns(TELEMETRY, [*names, *keys], name)
        columns = [c for c in present if c not in keys]
        row = 0
        for batch in pfile.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            frame = _arrow_to_pandas(pa.Table.from_batches([batch]), TELEMETRY)
            for key, value in keys.items():
                frame[key] = value
            rows = np.arange(row + 1, row + len(frame) + 1)
            typed, ok, rejected = validate(frame, rows, TELEMETRY, source=TELEMETRY.name,
                                           file=name)
            row += len(frame)
            yield typed.assign(_row=rows), ok, rejected, len(frame)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"cannot read Parquet: {exc}", path=name) from exc


def hive_keys(path: Path) -> dict[str, str]:
    """Schema columns given by the `column=value` folders of a hive-partitioned path."""
    pairs = (part.split("=", 1) for part in path.parent.parts if "=" in part)
    return {key: unquote(value) for key, value in pairs if key in TELEMETRY.names}


def _outside(ts: pd.Series, since: pd.Timestamp | None, until: pd.Timestamp | None
             ) -> np.ndarray:
    outside = np.zeros(len(ts), dtype=bool)
    if since is not None:
        outside |= (ts < _utc(since)).fillna(False).to_numpy(dtype=bool)
    if until is not None:
        outside |= (ts >= _utc(until)).fillna(False).to_numpy(dtype=bool)
    return outside


def _utc(value: pd.Timestamp) -> pd.Timestamp:
    value = pd.Timestamp(value)
    return value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")


def read_partition(path: Path, files: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(telemetry, quarantine) of one partition: duplicates of an earlier row are quarantined."""
    with pa.memory_map(str(path)) as source:
        frame = pa.ipc.open_file(source).read_all().to_pandas()
    dup = frame.duplicated(subset=list(TELEMETRY.key), keep="first").to_numpy()
    parts = []
    if dup.any():
        dups = frame[dup]
        for index, group in dups.groupby("_file", sort=True):
            name = files[index] if index >= 0 else "prometheus"
            mask = np.ones(len(group), dtype=bool)
            parts.append(quarantine.rejected(
                TELEMETRY.name, name, group["_row"], "duplicate", column=",".join(TELEMETRY.key),
                raw=raw_json(group[TELEMETRY.names], mask)))
        frame = frame[~dup]
    telemetry = frame.drop(columns=list(_ORIGIN)).reset_index(drop=True)
    return telemetry, quarantine.combine(parts)
