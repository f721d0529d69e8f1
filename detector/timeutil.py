"""Timestamps as integers, whatever resolution pandas chose for the column."""

from __future__ import annotations

import numpy as np
import pandas as pd

NS = 1_000_000_000


def epoch_ns(ts: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch (UTC) of a datetime column, as int64."""
    return pd.DatetimeIndex(ts).as_unit("ns").asi8


def epoch_s(ts: pd.Series) -> np.ndarray:
    """Whole seconds since the epoch (UTC), floored."""
    return epoch_ns(ts) // NS


def utc(value: pd.Timestamp | str | None) -> pd.Timestamp | None:
    """A timestamp in UTC (naive means UTC); None stays None."""
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
