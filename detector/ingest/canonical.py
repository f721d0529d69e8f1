"""read_table: files or folders -> one canonical, typed, validated table plus its quarantine."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import quarantine
from ..schema import TableSchema
from .batches import Batch, Counts, Source, open_source
from .options import SourceOptions
from .validate import duplicates, empty_table, raw_json, to_pandas


@dataclass
class Loaded:
    """A canonical table and what happened to every row read (`counts`)."""

    table: pd.DataFrame
    quarantine: pd.DataFrame
    counts: Counts


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
    """Read files and folders as `schema`, in this process (`batches.open_source` says how).
    Every row ends up in exactly one place: the table (typed, schema columns only, in file
    order), the quarantine (with a reason), or outside the [since, until) window."""
    src = open_source(
        paths, schema, source=source, fmt=fmt, since=since, until=until, options=options
    )
    return collect((b for unit in src.units() for b in src.read(unit)), src)


def collect(batches: Iterable[Batch], src: Source) -> Loaded:
    """The batches of `src` as one table; rows whose key repeats an earlier row's are
    quarantined as duplicates."""
    schema, names = src.schema, src.names
    counts, tables, origins, parts = Counts(), [], [], []
    for batch in batches:
        counts.add(batch)
        tables.append(to_pandas(batch.table))
        origins.append(np.c_[np.full(len(batch.rows), batch.file), batch.rows])
        parts.append(batch.rejected)
    table = pd.concat(tables, ignore_index=True) if tables else empty_table(schema)
    origin = np.concatenate(origins) if origins else np.zeros((0, 2), dtype=np.int64)
    dup = duplicates(table, schema.key)
    if dup.any():
        parts.append(duplicate_rows(table[dup], origin[dup], names, schema, src.name))
        counts.demote(int(dup.sum()))
        table = table[~dup].reset_index(drop=True)
    return Loaded(table, _in_order(quarantine.combine(parts), names), counts.check())


def duplicate_rows(
    dups: pd.DataFrame,
    origin: np.ndarray,
    names: Sequence[str],
    schema: TableSchema,
    source: str,
) -> pd.DataFrame:
    """Quarantine rows for duplicates: `origin` holds each one's (file index, row)."""
    files = pd.Series(np.asarray(names, dtype=object)[origin[:, 0]]) if len(origin) else []
    raw = raw_json(dups[schema.names], np.ones(len(dups), dtype=bool))
    key = ",".join(schema.key)
    frame = quarantine.rejected(source, "", origin[:, 1], "duplicate", column=key, raw=raw)
    frame["file"] = files
    return frame


def _in_order(rejected: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """Quarantine rows by input file (in the order given), then row."""
    if not len(rejected):
        return quarantine.empty()
    rank = pd.Series(range(len(names)), index=pd.Index(names)).groupby(level=0).first()
    order = np.lexsort((rejected["row"].to_numpy(), rejected["file"].map(rank).to_numpy()))
    return rejected.iloc[order].reset_index(drop=True)
