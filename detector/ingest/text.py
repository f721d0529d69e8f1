"""Line-oriented text files (Prometheus dumps, flow logs, auth logs): lines and bad bytes."""

from __future__ import annotations

import json
from itertools import compress

import numpy as np
import pandas as pd

from .. import quarantine
from .files import InputFile, read_bytes

NOT_UTF8 = "not UTF-8"
NOT_OBJECT = "not a JSON object"
RAW_LIMIT = 1000  # characters of a bad line kept


def is_utf8(chunk: bytes) -> bool:
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def lines(file: InputFile) -> pd.DataFrame:
    """Every line of the file with its 1-based number; `utf8` false where the line holds bytes
    that are not UTF-8 (in `text` they are replaced by U+FFFD)."""
    data = read_bytes(file).removeprefix(b"\xef\xbb\xbf")
    chunks = data.split(b"\n")
    if data.endswith(b"\n"):
        chunks.pop()
    text = data.decode("utf-8", "replace")
    utf8 = np.ones(len(chunks), dtype=bool)
    if "\ufffd" in text:  # rare: find the lines that are not UTF-8, one by one
        utf8 = np.array([is_utf8(c) for c in chunks], dtype=bool)
    series = pd.Series(text.split("\n")[: len(chunks)], dtype="str").str.rstrip("\r")
    return pd.DataFrame({"line": np.arange(1, len(chunks) + 1), "text": series, "utf8": utf8})


def rejected_lines(source: str, file: str, frame: pd.DataFrame, reason: str) -> pd.DataFrame:
    """Quarantine rows for the lines of `frame` (columns line, text), one reason."""
    raw = [json.dumps(text[:RAW_LIMIT]) for text in frame["text"]]
    return quarantine.rejected(source, file, frame["line"].to_numpy(), reason, raw=raw)


def objects(values: list, source: str, file: str) -> tuple[list[dict], np.ndarray, pd.DataFrame]:
    """The objects among parsed JSON `values` with their 1-based positions, and quarantine rows
    for the other values."""
    is_object = np.array([isinstance(v, dict) for v in values], dtype=bool)
    rows = np.arange(1, len(values) + 1)
    raw = [json.dumps(v)[:RAW_LIMIT] for v in compress(values, ~is_object)]
    rejected = quarantine.rejected(source, file, rows[~is_object], NOT_OBJECT, raw=raw)
    return list(compress(values, is_object)), rows[is_object], rejected
