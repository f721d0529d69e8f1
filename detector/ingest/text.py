"""Line-oriented text files (Prometheus dumps, flow logs, auth logs): lines and bad bytes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from .. import quarantine
from .files import InputFile, read_bytes
from .jsonl import RAW_LIMIT

NOT_UTF8 = "not UTF-8"
_SURROGATE = "[\udc80-\udcff]"


def lines(file: InputFile) -> pd.DataFrame:
    """Every line of the file with its 1-based number; `utf8` false where the line holds bytes
    that are not UTF-8 (its text then carries them as surrogate escapes)."""
    data = read_bytes(file)
    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    series = pd.Series(text.split("\n"), dtype="str").str.rstrip("\r")
    if text.endswith("\n"):
        series = series.iloc[:-1]
    bad = series.str.contains(_SURROGATE, regex=True).to_numpy(dtype=bool)
    return pd.DataFrame({"line": np.arange(1, len(series) + 1), "text": series, "utf8": ~bad})


def raw_lines(texts: pd.Series) -> list[str]:
    """Lines as JSON strings for the quarantine's `raw` (bad bytes replaced)."""
    return [json.dumps(t.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                       [:RAW_LIMIT]) for t in texts]


def rejected_lines(source: str, file: str, frame: pd.DataFrame, reason: str) -> pd.DataFrame:
    """Quarantine rows for the lines of `frame` (columns line, text), one reason."""
    return quarantine.rejected(source, file, frame["line"].to_numpy(), reason,
                               raw=raw_lines(frame["text"]))
