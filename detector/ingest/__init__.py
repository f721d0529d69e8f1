"""Input files -> canonical, typed, validated Arrow batches; every rejected row quarantined."""

from __future__ import annotations

from .batches import Batch, Counts, Source, Unit, open_source
from .canonical import Loaded, duplicate_rows, read_table
from .files import Limits, expand
from .validate import duplicates

__all__ = [
    "Batch",
    "Counts",
    "Limits",
    "Loaded",
    "Source",
    "Unit",
    "duplicate_rows",
    "duplicates",
    "expand",
    "open_source",
    "read_table",
]
