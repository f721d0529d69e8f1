"""Input files -> canonical, typed, validated tables; every rejected row quarantined."""

from __future__ import annotations

from .canonical import Loaded, read_table
from .files import FORMATS, InputFile, expand

__all__ = ["FORMATS", "InputFile", "Loaded", "expand", "read_table"]
