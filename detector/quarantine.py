"""Rejected input rows: where they came from and why, so that read = accepted + quarantined."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

COLUMNS = ["source", "file", "row", "column", "reason", "raw"]


def rejected(
    source: str,
    file: str | os.PathLike,
    rows: Sequence[int] | pd.Index,
    reason: str | Sequence[str],
    column: str | Sequence[str] = "",
    raw: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Quarantine rows of one file (`rows` are 1-based data row numbers); one reason and
    column for every row, or one each."""
    rows = list(rows)
    return pd.DataFrame(
        {
            "source": source,
            "file": str(file),
            "row": pd.array(rows, dtype="int64"),
            "column": column if isinstance(column, str) else list(column),
            "reason": reason if isinstance(reason, str) else list(reason),
            "raw": list(raw) if raw is not None else [""] * len(rows),
        },
        columns=COLUMNS,
    )


def empty() -> pd.DataFrame:
    return rejected("", "", [], "")


def combine(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else empty()


def write(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the quarantine table as CSV (or Parquet when the name says so)."""
    path = os.fspath(path)
    if path.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
