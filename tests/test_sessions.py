from __future__ import annotations

import numpy as np
import pandas as pd
from factories import T0, telemetry
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.config import load_settings
from detector.sessions import cut_sessions

SETTINGS = load_settings().sessions  # gap 1800 s, min duration 600 s, active > 5 %


def test_gap_longer_than_limit_splits_shorter_joins():
    a = telemetry("t", 1, 2, 60)
    near = telemetry("t", 1, 2, 60, start=T0 + pd.Timedelta(minutes=80))  # 20 min gap
    far = telemetry("t", 1, 2, 60, start=T0 + pd.Timedelta(hours=5))  # 3 h gap
    sessions, _ = cut_sessions(pd.concat([a, near, far], ignore_index=True), SETTINGS)
    assert len(sessions) == 2
    assert sessions["start"].tolist() == [T0, T0 + pd.Timedelta(hours=5)]


def test_checkpoint_dips_stay_inside_idle_tail_stays_out():
    util = np.full(240, 97.0)
    util[100:103] = 0.0  # a 3-minute checkpoint dip
    util[180:] = 0.0  # the job ended; GPUs idle but still allocated
    tel = telemetry("t", 1, 4, 240, util=util, noise=0.0)
    sessions, samples = cut_sessions(tel, SETTINGS)
    assert len(sessions) == 1
    assert sessions["end"].iloc[0] == T0 + pd.Timedelta(minutes=179)
    assert len(samples) == 4 * 180  # dips in, tail out
    assert (samples["gpu_util"] == 0).sum() == 4 * 3


def test_job_id_separates_overlapping_jobs_of_one_tenant():
    one = telemetry("t", 1, 2, 120, job="train-a")
    two = telemetry("t", 1, 2, 120, job="train-b", start=T0 + pd.Timedelta(minutes=30))
    two["host"] = "other-host"
    sessions, samples = cut_sessions(pd.concat([one, two], ignore_index=True), SETTINGS)
    assert sorted(sessions["job_id"].tolist()) == ["train-a", "train-b"]
    assert samples.groupby("session")["job_id"].nunique().eq(1).all()


def test_short_bursts_and_idle_reservations_make_no_session():
    burst = telemetry("t", 1, 1, 5)
    idle = telemetry("u", 1, 8, 600, util=0.0, noise=0.0)
    sessions, samples = cut_sessions(pd.concat([burst, idle], ignore_index=True), SETTINGS)
    assert sessions.empty and samples.empty


def test_session_ids_are_stable_and_order_independent():
    tel = pd.concat(
        [telemetry("a", 2, 2, 90), telemetry("b", 1, 1, 90, job="j")], ignore_index=True
    )
    first, _ = cut_sessions(tel, SETTINGS)
    again, _ = cut_sessions(tel.sample(frac=1.0, random_state=3), SETTINGS)
    assert first["session_id"].tolist() == again["session_id"].tolist()
    assert first["session_id"].is_unique


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 600), st.integers(1, 120), st.floats(0, 100)),
        min_size=1,
        max_size=8,
    )
)
def test_every_sample_in_at_most_one_session_and_sessions_disjoint(blocks):
    tel = pd.concat(
        [
            telemetry(
                f"t{t}",
                1,
                2,
                minutes,
                util=u,
                noise=0.0,
                start=T0 + pd.Timedelta(minutes=offset),
                seed=i,
            )
            for i, (t, offset, minutes, u) in enumerate(blocks)
        ],
        ignore_index=True,
    )
    sessions, samples = cut_sessions(tel, SETTINGS)
    assert samples.index.is_unique and set(samples.index) <= set(tel.index)
    assert sessions["session_id"].is_unique
    for _, group in sessions.sort_values("start").groupby("tenant_id"):
        assert (group["start"].iloc[1:].to_numpy() > group["end"].iloc[:-1].to_numpy()).all()
    inside = samples.merge(sessions.reset_index(), left_on="session", right_on="index")
    assert (inside["timestamp"].between(inside["start"], inside["end"])).all()
    assert (inside["tenant_id_x"] == inside["tenant_id_y"]).all()
