"""Scoring a sub-window never raises a tenant that the whole period clears: origin evidence
comes from the access history, not from the window, and a window sees part of a session."""

from __future__ import annotations

import pandas as pd

from detector.config import load_settings
from detector.pipeline import Inputs, build_features, score, train
from detector.runinfo import RunReport
from detector.simulate import simulate


def test_twelve_hour_windows_raise_no_tenant_the_whole_period_clears(tmp_path):
    settings = load_settings()
    simulate(tmp_path, 34, 2, 31, interval_s=120)
    files = (tmp_path / "telemetry.parquet",), (tmp_path / "access.jsonl.gz",)

    def scores(since=None, until=None) -> pd.DataFrame:
        inputs = Inputs(*files, tmp_path / "tenants.csv", since=since, until=until)
        return build_features(inputs, settings).sessions

    whole_table = scores()
    stored, _ = train(whole_table, settings)
    whole = score(whole_table, stored, RunReport())
    t0 = pd.Timestamp("2026-10-05", tz="UTC")
    parts = pd.concat(
        [
            score(scores(t0 + pd.Timedelta(hours=h), t0 + pd.Timedelta(hours=h + 12)), stored,
                  RunReport())
            for h in range(0, 48, 12)
        ],
        ignore_index=True,
    )  # fmt: skip
    cleared = set(whole.loc[~whole.groupby("tenant_id")["alert"].transform("any"), "tenant_id"])
    raised = set(parts.loc[parts["alert"], "tenant_id"]) & cleared
    assert whole["alert"].any() and not raised
