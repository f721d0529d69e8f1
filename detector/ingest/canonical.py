"""read_table: files or folders -> one canonical, typed, validated table plus its quarantine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import quarantine
from ..schema import TableSchema
from .files import expand
from .formats import read_any
from .nvml import merge_long
from .options import SourceOptions
from .readers import RawFile
from .validate import duplicates, empty_table, raw_json, validate

WINDOW_COLUMN = "timestamp"  # since/until apply to tables that have it (telemetry, access)


@dataclass
class Loaded:
    """A canonical table and what happened to every row read.

    rows_read == rows_accepted + rows_quarantined + rows_out_of_window.
    """

    table: pd.DataFrame
    quarantine: pd.DataFrame
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    rows_out_of_window: int


def read_table(
    paths: Sequence[str | Path] | str | Path,
    schema: TableSchema,
    *,
    source: str | None = None,
    fmt: str = "auto",
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
    options: SourceOptions | None = None,
) -> Loaded:
    """Read files and folders (Parquet, CSV, JSON Lines, JSON; optionally gzip) as `schema`.

    Every row ends up in exactly one place: the table (typed, schema columns only, in file
    order), the quarantine (with a reason), or outside the [since, until) window. Duplicates
    (same `schema.key` as an earlier row, across all files) are quarantined. Foreign formats
    (`files.FOREIGN`) are mapped onto the schema first, as `options` say; with `fmt="auto"` the
    content decides where the extension is not enough (`sniff.py`).
    """
    options = options or SourceOptions()
    files = expand(paths, fmt)
    raws = merge_long(
        [read_any(f, schema, source or schema.name, options, auto=fmt == "auto") for f in files]
    )
    return load_raw(raws, schema, source=source, since=since, until=until)


def load_raw(
    raws: Sequence[RawFile],
    schema: TableSchema,
    *,
    source: str | None = None,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
) -> Loaded:
    """Validate what readers got (one RawFile per file or query) into a Loaded table."""
    source = source or schema.name
    since, until = _utc(since), _utc(until)
    tables, origins, frames, parts = [], [], [], []
    rows_read = out_of_window = 0
    for index, raw in enumerate(raws):
        file = raw.file
        rows_read += raw.n_rows
        typed, ok, rejected = validate(raw.frame, raw.rows, schema, source=source, file=file.name)
        parts.append(_ordered(quarantine.combine([raw.rejected, rejected]), index))
        keep = ok & ~_outside(typed, since, until)
        out_of_window += int(ok.sum() - keep.sum())
        tables.append(typed[keep])
        origins.append(
            pd.DataFrame(
                {
                    "file": index,
                    "name": file.name,
                    "row": raw.rows[keep],
                    "pos": np.flatnonzero(keep),
                }
            )
        )
        frames.append(raw.frame)
    table = pd.concat(tables, ignore_index=True) if tables else empty_table(schema)
    origin = pd.concat(origins, ignore_index=True)
    dup = duplicates(table, schema.key)
    if dup.any():
        parts.append(_duplicates(origin[dup], frames, source, schema.key))
        table = table[~dup].reset_index(drop=True)
    rejected = quarantine.combine(parts)
    if len(rejected):
        rejected = (
            rejected.sort_values(["_file", "row"], kind="stable")
            .drop(columns="_file")
            .reset_index(drop=True)
        )
    else:
        rejected = quarantine.empty()
    loaded = Loaded(table, rejected, rows_read, len(table), len(rejected), out_of_window)
    assert loaded.rows_read == (
        loaded.rows_accepted + loaded.rows_quarantined + loaded.rows_out_of_window
    ), "ingest lost or invented rows"
    return loaded


def _utc(value: pd.Timestamp | str | None) -> pd.Timestamp | None:
    if value is None:
        return None
    value = pd.Timestamp(value)
    return value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")


def _outside(
    table: pd.DataFrame, since: pd.Timestamp | None, until: pd.Timestamp | None
) -> np.ndarray:
    outside = np.zeros(len(table), dtype=bool)
    if WINDOW_COLUMN not in table.columns:
        return outside
    ts = table[WINDOW_COLUMN]
    if since is not None:
        outside |= (ts < since).fillna(False).to_numpy(dtype=bool)
    if until is not None:
        outside |= (ts >= until).fillna(False).to_numpy(dtype=bool)
    return outside


def _ordered(part: pd.DataFrame, index: int) -> pd.DataFrame:
    return part.assign(_file=index)


def _duplicates(
    dups: pd.DataFrame, raws: list[pd.DataFrame], source: str, key: Sequence[str]
) -> pd.DataFrame:
    """Quarantine rows for duplicates, with the values as read from their file."""
    parts = []
    for index, group in dups.groupby("file", sort=True):
        frame = raws[index]
        mask = np.zeros(len(frame), dtype=bool)
        mask[group["pos"].to_numpy()] = True
        part = quarantine.rejected(
            source,
            group["name"].iloc[0],
            group["row"],
            "duplicate",
            column=",".join(key),
            raw=raw_json(frame, mask),
        )
        parts.append(_ordered(part, index))
    return pd.concat(parts, ignore_index=True)
