"""Cut per-GPU telemetry into sessions.

A session is a tenant's contiguous GPU activity across all its GPUs and hosts: active samples
(utilisation above a threshold) separated by gaps no longer than `gap_seconds` belong together.
When the exporter knows the job (`job_id`), activity is cut per job instead, so two overlapping
jobs of one tenant stay two sessions. Every sample of the tenant (or job) inside a session's
span, idle ones included (checkpoint dips), belongs to that session; samples outside any span
(idle reservations, idle tails) belong to none.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .config import Sessions
from .timeutil import NS as _NS
from .timeutil import epoch_ns

SESSION_COLUMNS = ["session_id", "tenant_id", "job_id", "start", "end"]


def cut_sessions(
    telemetry: pd.DataFrame, settings: Sessions, spans: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (sessions, samples): one row per session, and the samples that belong to one.

    `samples` is the subset of telemetry rows inside a session, with a `session` column holding
    the row position of its session in `sessions`. `spans`, sessions already found over more
    rows than `telemetry` (one time slice of them: `merge_runs`), fixes the sessions instead:
    `sessions` is then `spans` itself.
    """
    if telemetry.empty:
        sessions = _empty_sessions() if spans is None else spans
        return sessions, telemetry.assign(session=np.zeros(0, dtype=np.int64))
    job = _text_or_blank(telemetry["job_id"])
    group, (tenants, jobs) = factorize_rows(telemetry["tenant_id"], job)
    ts = epoch_ns(telemetry["timestamp"])
    order = _group_time_order(group, ts)
    g, t = group[order], ts[order]
    if spans is None:
        active = telemetry["gpu_util"].to_numpy(float)[order] > settings.active_util_pct
        found = _active_spans(g[active], t[active], settings.gap_seconds)
        found = {k: v[found["count"] >= settings.min_active_samples] for k, v in found.items()}
        index = np.arange(len(found["start"]))
    else:
        found, index = _known_spans(spans, tenants, jobs)
    if not len(found["start"]):
        return cut_sessions(telemetry.iloc[:0], settings, spans)

    # Assign every sample of a group to the span that starts at or before it, if it ends after it.
    span_key = found["group"] * (1 << 42) + (found["start"] - found["start"].min()) // _NS
    sample_key = g * (1 << 42) + (t - found["start"].min()) // _NS
    pos = np.searchsorted(span_key, sample_key, side="right") - 1
    ok = pos >= 0
    pos_ok = pos.clip(0)
    ok &= (found["group"][pos_ok] == g) & (t <= found["end"][pos_ok])
    samples = telemetry.iloc[order[ok]].assign(session=index[pos[ok]])
    if spans is not None:
        return spans, samples

    group = found["group"]
    return _sessions(tenants[group], jobs[group], found["start"], found["end"]), samples


def active_runs(telemetry: pd.DataFrame, settings: Sessions) -> pd.DataFrame:
    """Runs of activity per tenant and job (`job_id` "" when unknown): `start`, `end` (epoch
    ns) and active samples (`count`), before any minimum. The runs of consecutive time slices
    of the same rows merge into their sessions (`merge_runs`)."""
    job = _text_or_blank(telemetry["job_id"])
    group, (tenants, jobs) = factorize_rows(telemetry["tenant_id"], job)
    ts = epoch_ns(telemetry["timestamp"])
    order = _group_time_order(group, ts)
    active = telemetry["gpu_util"].to_numpy(float)[order] > settings.active_util_pct
    runs = _active_spans(group[order][active], ts[order][active], settings.gap_seconds)
    return pd.DataFrame(
        {
            "tenant_id": np.asarray(tenants[runs["group"]], dtype=object),
            "job_id": np.asarray(jobs[runs["group"]], dtype=object),
        }
        | {k: runs[k] for k in ("start", "end", "count")}
    )


def merge_runs(runs: list[pd.DataFrame], settings: Sessions) -> pd.DataFrame:
    """The sessions of rows cut into time slices, from each slice's `active_runs` (at least
    one slice; slices in time order, none overlapping): a run continues the previous one of
    its tenant and job when the gap between them is at most `gap_seconds`, as in one table."""
    table = pd.concat(runs, ignore_index=True)
    group, (tenants, jobs) = factorize_rows(table["tenant_id"], table["job_id"])
    start, end, count = (table[k].to_numpy(np.int64) for k in ("start", "end", "count"))
    order = np.lexsort((start, group))
    group, start, end, count = group[order], start[order], end[order], count[order]
    new = np.ones(len(group), dtype=bool)
    new[1:] = (group[1:] != group[:-1]) | (start[1:] - end[:-1] > settings.gap_seconds * _NS)
    first = np.flatnonzero(new)
    ends = np.maximum.reduceat(end, first) if len(first) else end
    keep = (np.add.reduceat(count, first) if len(first) else count) >= settings.min_active_samples
    g = group[first][keep]
    return _sessions(tenants[g], jobs[g], start[first][keep], ends[keep])


def _known_spans(
    spans: pd.DataFrame, tenants: np.ndarray, jobs: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """`spans` of the groups (tenants, jobs) present, as group codes sorted by (group, start),
    and each one's row position in `spans`."""
    code = {(t, j): i for i, (t, j) in enumerate(zip(tenants, jobs, strict=True))}
    job = spans["job_id"].astype("string").fillna("")
    group = np.array(
        [code.get(key, -1) for key in zip(spans["tenant_id"], job, strict=True)], dtype=np.int64
    )
    start, end = epoch_ns(spans["start"]), epoch_ns(spans["end"])
    index = np.flatnonzero(group >= 0)
    index = index[np.lexsort((start[index], group[index]))]
    return {"group": group[index], "start": start[index], "end": end[index]}, index


def _sessions(
    tenants: np.ndarray, jobs: np.ndarray, start: np.ndarray, end: np.ndarray
) -> pd.DataFrame:
    """The sessions table (jobs: "" when unknown), with ids."""
    job = pd.Series(np.asarray(jobs, dtype=object), dtype="string")
    sessions = pd.DataFrame(
        {
            "tenant_id": np.asarray(tenants, dtype=object),
            "job_id": job.mask(job == ""),
            "start": pd.to_datetime(start, utc=True),
            "end": pd.to_datetime(end, utc=True),
        }
    )
    sessions.insert(0, "session_id", session_ids(sessions))
    return sessions


def _empty_sessions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "session_id": pd.Series(dtype=object),
            "tenant_id": pd.Series(dtype=object),
            "job_id": pd.Series(dtype="string"),
            "start": pd.Series(dtype="datetime64[ns, UTC]"),
            "end": pd.Series(dtype="datetime64[ns, UTC]"),
        }
    )


def _text_or_blank(values: pd.Series) -> pd.Series:
    """Text with "" for missing; categoricals stay categoricals (factorized by their codes)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        if "" not in values.cat.categories:
            values = values.cat.add_categories("")
        return values.fillna("")
    return values.astype("string").fillna("")


def factorize_rows(*columns: pd.Series | np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Codes of the distinct rows of `columns` in order of first appearance (as factorizing
    their MultiIndex would give, without building one), and each column's value per code."""
    key, span, parts = np.zeros(len(columns[0]), dtype=np.int64), 1, []
    for column in columns:
        codes, values = _codes(column)
        if span * max(len(values), 1) >= 1 << 62:  # keep the combined key in int64
            key, distinct = pd.factorize(key)
            span = len(distinct)
        key = key * len(values) + codes
        span *= max(len(values), 1)
        parts.append((codes, values))
    # any one-to-one key gives the same codes: they number the rows' first appearances
    group, _ = pd.factorize(key)
    first = first_rows(group)
    return group, [np.asarray(values, dtype=object)[codes[first]] for codes, values in parts]


def _codes(column: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes 0..len(values)-1 of a column (missing values included) and the value of
    each code. Categoricals and small-range integers need no hashing."""
    if isinstance(column, pd.Series) and isinstance(column.dtype, pd.CategoricalDtype):
        values = np.r_[
            np.array([np.nan], dtype=object), np.asarray(column.cat.categories, dtype=object)
        ]
        return column.cat.codes.to_numpy().astype(np.int64) + 1, values
    array = column if isinstance(column, np.ndarray) else None
    if array is not None and array.dtype.kind == "i" and len(array):
        low, high = int(array.min()), int(array.max())
        if high - low < max(len(array), 1 << 16):
            return array.astype(np.int64) - low, np.arange(low, high + 1)
    return pd.factorize(column, use_na_sentinel=False)


def first_rows(codes: np.ndarray) -> np.ndarray:
    """Row of each code's first appearance, for codes numbered in order of first appearance."""
    if not len(codes):
        return np.zeros(0, dtype=np.int64)
    seen = np.maximum.accumulate(codes)
    return np.flatnonzero(np.r_[True, codes[1:] > seen[:-1]])


def _active_spans(g: np.ndarray, t: np.ndarray, gap_seconds: float) -> dict[str, np.ndarray]:
    """Spans [start, end] of contiguous activity per group and their active samples (`count`),
    sorted by (group, start), from the active samples' groups and times in (group, time)
    order."""
    new = np.ones(len(g), dtype=bool)
    new[1:] = (g[1:] != g[:-1]) | (np.diff(t) > gap_seconds * _NS)
    seg = np.cumsum(new) - 1
    starts = t[new]
    ends = np.maximum.reduceat(t, np.flatnonzero(new)) if len(t) else t
    count = np.bincount(seg, minlength=len(starts))
    return {"group": g[new], "start": starts, "end": ends, "count": count}


def _group_time_order(group: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Row order by group, then time, stable (as `np.lexsort((ts, group))`). Telemetry
    usually comes in time order, so a stable sort by group alone (a radix sort of small
    codes) is checked first."""
    small = group.astype(np.int16) if len(group) and group.max() < 1 << 15 else group
    order = np.argsort(small, kind="stable")
    g, t = group[order], ts[order]
    if ((g[1:] != g[:-1]) | (t[1:] >= t[:-1])).all():
        return order
    return np.lexsort((ts, group))


def session_ids(sessions: pd.DataFrame) -> pd.Series:
    """Stable ids: a hash of tenant, job and start, so the same input gives the same id."""
    key = pd.DataFrame(
        {
            "tenant_id": sessions["tenant_id"].astype(str),
            "job_id": sessions["job_id"].astype("string").fillna("").astype(str),
            "start": epoch_ns(sessions["start"]),
        }
    )
    hashed = pd.util.hash_pandas_object(key, index=False).to_numpy(np.uint64)
    return pd.Series([f"{h:016x}" for h in hashed], index=sessions.index, dtype=object)
