"""Input files -> canonical, typed, validated Arrow batches; every rejected row quarantined."""

from __future__ import annotations

from .batches import Batch, Counts, Source, Unit, open_source
from .canonical import Loaded, collect, duplicate_rows, read_table
from .files import FORMATS, InputFile, Limits, expand
from .validate import duplicates

__all__ = [
    "FORMATS",
    "Batch",
    "Counts",
    "InputFile",
    "Limits",
    "Loaded",
    "Source",
    "Unit",
    "collect",
    "duplicate_rows",
    "duplicates",
    "expand",
    "open_source",
    "read_table",
]
