"""Attach analyst labels and simulator truth to sessions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError


def label_sessions(sessions: pd.DataFrame, labels: pd.DataFrame) -> pd.Series:
    """Per session: "incident", "benign" or NA.

    A label names a session by `session_id`, or a tenant and a time range (`tenant_id`,
    `start`, `end`) that covers every session of that tenant overlapping it. When labels
    disagree on a session, "incident" wins.
    """
    out = pd.Series(pd.NA, index=sessions.index, dtype="string")
    by_id = labels.dropna(subset=["session_id"])
    if len(by_id):
        incident = by_id.groupby("session_id")["label"].agg(lambda s: (s == "incident").any())
        hit = sessions["session_id"].map(incident)
        out[hit.notna()] = np.where(hit[hit.notna()].astype(bool), "incident", "benign")
    ranged = labels[labels["session_id"].isna()].dropna(subset=["tenant_id", "start", "end"])
    if len(ranged):
        pairs = sessions.reset_index()[["index", "tenant_id", "start", "end"]].merge(
            ranged[["tenant_id", "start", "end", "label"]], on="tenant_id", suffixes=("", "_l")
        )
        pairs = pairs[(pairs["start"] <= pairs["end_l"]) & (pairs["end"] >= pairs["start_l"])]
        worst = pairs.groupby("index")["label"].agg(
            lambda s: "incident" if (s == "incident").any() else "benign"
        )
        fill = out.loc[worst.index].isna() | (worst == "incident")
        out.loc[worst.index[fill.to_numpy()]] = worst[fill.to_numpy()]
    return out


def match_truth(sessions: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """For each session, the truth row (scenario, restricted_training) it overlaps most.

    Where both tables carry `job_id`, a session matches rows of its own job only.
    """
    needed = {"tenant_id", "start", "end", "scenario", "restricted_training"}
    if missing := needed - set(truth.columns):
        raise InputError(f"truth table lacks column(s) {sorted(missing)}")
    t = truth.assign(
        start=pd.to_datetime(truth["start"], utc=True),
        end=pd.to_datetime(truth["end"], utc=True),
        restricted_training=truth["restricted_training"]
        .astype(str)
        .str.lower()
        .isin(["true", "1", "yes"]),
    )
    keys = ["tenant_id"]
    if "job_id" in t and "job_id" in sessions:
        # Jobs known on both sides match by job; bare-metal sessions by time alone.
        t = t.assign(job_id=t["job_id"].astype("string").fillna(""))
        sessions = sessions.assign(job_id=sessions["job_id"].astype("string").fillna(""))
        keys.append("job_id")
    pairs = sessions.reset_index()[["index", *keys, "start", "end"]].merge(
        t[[*keys, "start", "end", "scenario", "restricted_training"]], on=keys, suffixes=("", "_t")
    )
    end = pairs["end"].where(pairs["end"] < pairs["end_t"], pairs["end_t"])
    start = pairs["start"].where(pairs["start"] > pairs["start_t"], pairs["start_t"])
    pairs = pairs.assign(overlap=(end - start).dt.total_seconds())
    pairs = pairs[pairs["overlap"] >= 0].sort_values("overlap", ascending=False)
    best = pairs.drop_duplicates("index").set_index("index")
    out = pd.DataFrame(index=sessions.index)
    out["scenario"] = best["scenario"].reindex(sessions.index).fillna("unmatched")
    out["restricted_training"] = best["restricted_training"].reindex(sessions.index).fillna(False)
    return out
