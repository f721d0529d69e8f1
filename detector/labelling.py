"""Analyst verdicts: session ids by prefix, label rows in the labels contract, and the labels file.

A label row carries the session's tenant, start and end beside its id. Session ids are a hash of
tenant, job and start (`sessions.session_ids`): the same data cut the same way gives the same id
in every run, but a session whose start moves (more history read, other session settings) gets a
new id. `resolve_labels` then falls back to the tenant and time range, so a verdict keeps
applying, and reports every label that matches no session at all.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import columns as c
from .errors import InputError
from .ingest import read_table
from .schema import LABEL_VALUES, LABELS

APPEND_SUFFIXES = (".csv",)
CANDIDATES_SHOWN = 5  # ambiguous prefixes list at most this many candidates


def match_prefixes(ids: Sequence[str], prefixes: Sequence[str]) -> list[list[str]]:
    """For each prefix, the ids it starts (case-insensitive); ids are compared in lower case."""
    ordered = np.sort(np.asarray([str(i).lower() for i in ids], dtype=object))
    wanted = [str(p).strip().lower() for p in prefixes]
    lo = np.searchsorted(ordered, wanted, side="left")
    hi = np.searchsorted(ordered, [p + "\uffff" for p in wanted], side="right")
    return [list(ordered[a:b]) if p else [] for p, a, b in zip(wanted, lo, hi, strict=True)]


def resolve_ids(ids: Sequence[str], prefixes: Sequence[str], where: str) -> list[str]:
    """The full id each prefix names; one InputError naming every unknown or ambiguous prefix."""
    found = match_prefixes(ids, prefixes)
    unknown = [p for p, hits in zip(prefixes, found, strict=True) if not hits]
    ambiguous = [
        f"{p!r} matches {len(hits)}: {', '.join(h[:12] for h in hits[:CANDIDATES_SHOWN])}"
        + (", ..." if len(hits) > CANDIDATES_SHOWN else "")
        for p, hits in zip(prefixes, found, strict=True)
        if len(hits) > 1
    ]
    problems = []
    if unknown:
        problems.append(f"unknown session id(s): {', '.join(map(str, unknown))}")
    if ambiguous:
        problems.append(f"ambiguous (give more characters): {'; '.join(ambiguous)}")
    if problems:
        raise InputError(" | ".join(problems), path=where)
    return [hits[0] for hits in found]


def session_rows(scores: pd.DataFrame, prefixes: Sequence[str], where: str) -> pd.DataFrame:
    """The scores row each prefix names, in the order given."""
    full = resolve_ids(scores[c.SESSION_ID].astype(str).tolist(), prefixes, where)
    by_id = scores.assign(_key=scores[c.SESSION_ID].astype(str).str.lower()).set_index("_key")
    return by_id.loc[full].reset_index(drop=True)


def new_labels(
    sessions: pd.DataFrame, label: str, analyst: str, note: str | None, now: pd.Timestamp
) -> pd.DataFrame:
    """Label rows (the labels contract) for sessions of the scores table."""
    _check_label(label)
    return pd.DataFrame(
        {
            "session_id": sessions[c.SESSION_ID].astype(str).to_numpy(),
            "tenant_id": sessions[c.TENANT].astype(str).to_numpy(),
            "start": pd.to_datetime(sessions[c.START], utc=True).to_numpy(),
            "end": pd.to_datetime(sessions[c.END], utc=True).to_numpy(),
            "label": label,
            "analyst": analyst,
            "note": note,
            "labeled_at": now,
        },
        columns=LABELS.names,
    ).astype({"start": "datetime64[ns, UTC]", "end": "datetime64[ns, UTC]"})


def import_labels(
    path: Path, scores: pd.DataFrame, where: str, analyst: str, now: pd.Timestamp
) -> pd.DataFrame:
    """Label rows from a CSV of verdicts (`session_id` prefix or `tenant_id`, `start`, `end`;
    `label`; optional `analyst`, `note`, `labeled_at`). All or nothing: the first bad row is an
    InputError naming it; ids resolve against the scores like `gpuwatch label` does."""
    loaded = read_table([path], LABELS)
    if len(loaded.quarantine):
        first = loaded.quarantine.iloc[0]
        more = (
            f" (and {len(loaded.quarantine) - 1} more bad rows)"
            if len(loaded.quarantine) > 1
            else ""
        )
        raise InputError(
            f"{first['reason']}{more}",
            path=str(path),
            row=int(first["row"]),
            column=first["column"],
        )
    table = loaded.table.reset_index(drop=True)
    if table.empty:
        raise InputError("no labels in the file", path=str(path))
    by_id = table["session_id"].notna()
    if by_id.any():
        picked = session_rows(scores, table.loc[by_id, "session_id"].tolist(), where)
        table.loc[by_id, "session_id"] = picked[c.SESSION_ID].astype(str).to_numpy()
        table.loc[by_id, "tenant_id"] = picked[c.TENANT].astype(str).to_numpy()
        table.loc[by_id, "start"] = pd.to_datetime(picked[c.START], utc=True).to_numpy()
        table.loc[by_id, "end"] = pd.to_datetime(picked[c.END], utc=True).to_numpy()
    ranged = table[~by_id]
    if len(ranged):
        hits = _overlaps(scores, ranged)
        missing = ranged.index.difference(hits["label_row"].unique())
        if len(missing):
            rows = ", ".join(str(i + 1) for i in missing)
            raise InputError(
                f"row(s) {rows}: tenant and time range match no session of {where}", path=str(path)
            )
    table["analyst"] = table["analyst"].fillna(analyst)
    table["labeled_at"] = table["labeled_at"].fillna(now)
    return table[LABELS.names]


def append_labels(path: Path, labels: pd.DataFrame) -> None:
    """Append label rows to a CSV labels file (created with its header), under an exclusive lock
    so two analysts labelling at once do not interleave rows."""
    if path.suffix not in APPEND_SUFFIXES:
        raise InputError(
            f"labels are appended to a {' or '.join(APPEND_SUFFIXES)} file", path=str(path)
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", newline="") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        header = fh.readline().strip()
        if header and header.split(",") != LABELS.names:
            raise InputError(
                f"has columns {header!r}, expected {','.join(LABELS.names)}", path=str(path)
            )
        fh.seek(0, os.SEEK_END)
        out = labels.assign(
            **{
                k: labels[k].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
                for k in ("start", "end", "labeled_at")
            }
        )
        out.to_csv(fh, header=not header, index=False, lineterminator="\n")


@dataclass(frozen=True)
class Resolved:
    """Labels ready for training and the ones that name no session of the data."""

    labels: pd.DataFrame  # the labels contract; ids that changed become tenant + range labels
    by_range: int  # labels whose id is gone but whose tenant and time range still match
    unmatched: pd.DataFrame  # labels that match no session: reported, never silently dropped


def resolve_labels(sessions: pd.DataFrame, labels: pd.DataFrame) -> Resolved:
    """Match labels to sessions: by id (any unique prefix, case-insensitive), else by tenant and
    overlapping time range. Labels whose id matches nothing but whose range does become range
    labels; labels that match neither are returned in `unmatched`, with a `reason`."""
    labels = labels.reset_index(drop=True)
    given = labels["session_id"]
    has_id = given.notna()
    ids = sessions[c.SESSION_ID].astype(str).tolist()
    hits = pd.Series(
        match_prefixes(ids, given[has_id].astype(str).tolist()), index=given.index[has_id]
    ).reindex(labels.index)
    lower_to_id = {i.lower(): i for i in ids}
    full = hits.map(lambda h: lower_to_id[h[0]] if isinstance(h, list) and len(h) == 1 else None)
    out = labels.assign(session_id=full)
    ranged = out[full.isna()].dropna(subset=["tenant_id", "start", "end"])
    in_range = labels.index.isin(_overlaps(sessions, ranged)["label_row"].unique())
    matched = full.notna().to_numpy() | in_range
    ambiguous = hits.map(lambda h: isinstance(h, list) and len(h) > 1).to_numpy(bool)
    unmatched = labels[~matched].assign(
        reason=np.where(
            ambiguous[~matched],
            "session id prefix is ambiguous, and no tenant and time range match",
            np.where(
                has_id.to_numpy()[~matched],
                "no session has this id, and no tenant and time range match",
                "no session of the tenant overlaps the time range",
            ),
        )
    )
    by_range = int((has_id.to_numpy() & full.isna().to_numpy() & in_range).sum())
    return Resolved(out[matched].reset_index(drop=True), by_range, unmatched)


def _overlaps(sessions: pd.DataFrame, ranged: pd.DataFrame) -> pd.DataFrame:
    """(label_row, session row) pairs where a range label's tenant and time overlap a session."""
    pairs = (
        ranged[["tenant_id", "start", "end"]]
        .rename(columns={"start": "l_start", "end": "l_end"})
        .reset_index(names="label_row")
        .merge(
            sessions[[c.TENANT, c.START, c.END]].reset_index(names="session_row"),
            left_on="tenant_id",
            right_on=c.TENANT,
        )
    )
    keep = (pairs[c.START] <= pairs["l_end"]) & (pairs[c.END] >= pairs["l_start"])
    return pairs.loc[keep, ["label_row", "session_row"]]


def _check_label(value: object) -> None:
    if value not in LABEL_VALUES:
        raise InputError(f"label {value!r} is not one of {', '.join(LABEL_VALUES)}")
