"""Linked accounts: entities from shared principals, billing and prefixes; in-step groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from factories import T0, access, telemetry

from detector.config import load_settings
from detector.features import session_features
from detector.features.entities import entity_name
from detector.sessions import cut_sessions

SETTINGS = load_settings()
LATER = T0 + pd.Timedelta(hours=2)  # starts after the first sample of the data: a real start


def checkpointing(tenant: str, hosts: int, seed: int, dips: list[int]) -> pd.DataFrame:
    """Six hours of training on `hosts` nodes with two-minute checkpoint dips at `dips`
    (minutes from the start)."""
    util = np.full(360, 97.0)
    for minute in dips:
        util[minute : minute + 2] = 3.0
    return telemetry(tenant, hosts, 8, 360, start=LATER, util=util, seed=seed)


def features_of(tel: pd.DataFrame, acc: pd.DataFrame, tenants=None) -> pd.DataFrame:
    sessions, samples = cut_sessions(tel, SETTINGS.sessions)
    return session_features(sessions, samples, acc, SETTINGS, tenants).set_index("tenant_id")


def background() -> pd.DataFrame:
    return telemetry("early", 1, 1, 600, util=50.0, seed=9)  # the data starts with it


def test_a_job_split_across_accounts_is_one_group_and_one_entity():
    dips = [40, 95, 150, 205, 260, 315]
    tel = pd.concat(
        [background()]
        + [checkpointing(f"part{k}", 1, k, dips) for k in range(3)]
        + [checkpointing("other", 2, 7, [30, 100, 170, 240, 310])],
        ignore_index=True,
    )
    acc = pd.concat(
        [access(t, [T0], "US") for t in ("early", "part0", "part1", "part2", "other")],
        ignore_index=True,
    )
    f = features_of(tel, acc)
    parts = f.loc[["part0", "part1", "part2"]]
    assert (parts["group_sessions"] == 3).all() and f.loc["other", "group_sessions"] == 1
    assert parts["group_flop"].nunique() == 1
    assert parts["group_flop"].iloc[0] == pytest.approx(parts["est_flop"].sum())
    assert parts["entity_id"].nunique() == 1
    assert parts["entity_id"].iloc[0] == entity_name(["part0", "part1", "part2"])
    assert parts.loc["part0", "linked_tenants"] == "part1,part2"
    assert parts.loc["part0", "link_reasons"] == "part1: in-step sessions; part2: in-step sessions"
    assert f.loc["other", "entity_tenants"] == 1 and f.loc["other", "linked_tenants"] == ""


def test_a_split_job_running_at_either_edge_of_the_data_is_one_group():
    """A bound at the edge of the data is unknown: parts running since before the data began
    and ending together are in step, and so are parts started together and still running."""
    dips = [40, 95, 150, 205, 260, 315]
    util = np.where(np.isin(np.arange(360), dips), 3.0, 97.0)
    early_crew = [telemetry(f"old{k}", 1, 8, 360, start=T0, util=util, seed=k) for k in range(2)]
    late_crew = [checkpointing(f"new{k}", 1, 10 + k, dips) for k in range(2)]  # to 8 h
    tel = pd.concat([*early_crew, *late_crew], ignore_index=True)  # the data: 0 to 8 h
    acc = pd.concat(
        [access(t, [T0], "US") for t in ("old0", "old1", "new0", "new1")], ignore_index=True
    )
    f = features_of(tel, acc)
    assert (f.loc[["old0", "old1"], "group_sessions"] == 2).all()
    assert (f.loc[["new0", "new1"], "group_sessions"] == 2).all()
    assert f.loc["old0", "entity_id"] != f.loc["new0", "entity_id"]


def test_sessions_without_checkpoints_are_not_one_job_however_they_line_up():
    """Services started together and still running, or jobs launched at nine and stopped at
    six, are many: without checkpoints in step nothing says they are one job."""
    tel = pd.concat(
        [background()]
        + [telemetry(f"svc{k}", 1, 2, 360, start=LATER, util=60.0, seed=k) for k in range(2)],
        ignore_index=True,
    )
    acc = pd.concat([access(t, [T0], "US") for t in ("early", "svc0", "svc1")], ignore_index=True)
    f = features_of(tel, acc)
    assert (f.loc[["svc0", "svc1"], "group_sessions"] == 1).all()
    assert f.loc["svc0", "entity_id"] != f.loc["svc1", "entity_id"]


def dipping(tenant: str, late_minutes: int, minutes: int, dips: np.ndarray, seed: int):
    """Training from `late_minutes` after LATER for `minutes`, with two-minute dips at the
    absolute minutes `dips` (from LATER)."""
    util = np.full(minutes, 97.0)
    for minute in dips[(dips >= late_minutes) & (dips < late_minutes + minutes - 2)]:
        util[minute - late_minutes : minute - late_minutes + 2] = 3.0
    start = LATER + pd.Timedelta(minutes=late_minutes)
    return telemetry(tenant, 1, 8, minutes, start=start, util=util, seed=seed)


def test_dips_in_step_link_jobs_only_beyond_chance_not_two_regular_schedules():
    """Jobs that start apart are in step only by their checkpoints. Two unrelated jobs that
    both checkpoint every 40 minutes line up by chance one time in twenty (a period and a
    phase place every dip); irregular dips that coincide again and again do not."""
    regular = np.arange(30, 1800, 40)
    rng = np.random.default_rng(5)
    irregular = 30 + np.cumsum(rng.integers(15, 75, 60))
    tel = pd.concat(
        [
            background(),
            dipping("clock_a", 0, 1800, regular, 1),
            dipping("clock_b", 180, 1620, regular, 2),
            dipping("crew_a", 0, 1800, irregular, 3),
            dipping("crew_b", 180, 1620, irregular, 4),
        ],
        ignore_index=True,
    )
    acc = pd.concat(
        [access(t, [T0], "US") for t in ("early", "clock_a", "clock_b", "crew_a", "crew_b")],
        ignore_index=True,
    )
    f = features_of(tel, acc)
    assert f.loc["clock_a", "entity_id"] != f.loc["clock_b", "entity_id"]
    assert f.loc["crew_a", "entity_id"] == f.loc["crew_b", "entity_id"]
    assert f.loc["crew_b", "linked_tenants"] == "crew_a"


def test_links_from_principals_billing_and_home_prefixes_but_not_common_infrastructure():
    tel = pd.concat(
        [telemetry(t, 1, 2, 60, seed=i) for i, t in enumerate("abcdefghij")], ignore_index=True
    )

    def events(tenant: str, ips: list[str], principal: str | list[str], hosting: bool = False):
        frame = access(tenant, [T0] * len(ips), "US", hosting=hosting)
        return frame.assign(src_ip=ips, principal=principal)

    crowd = [events(t, ["198.51.100.7"], "root") for t in "abcdefgh"]  # generic and shared
    acc = pd.concat(
        [
            events("a", ["203.0.113.5", "203.0.113.5"], ["wei.zhang", "li.na"]),
            events("b", ["203.0.113.6", "203.0.113.6"], ["wei.zhang", "li.na"]),  # two: a link
            events("e", ["198.51.100.9"], "li.na"),  # one shared name: a coincidence
            events("c", [f"10.{k}.0.1" for k in range(4)], "c"),
            events("d", [f"10.{k}.0.9" for k in range(4)], "d"),  # four home prefixes: a link
            events("e", ["192.0.2.10"], "e"),
            events("f", ["192.0.2.11"], "f"),  # one shared home prefix: not enough
            events("g", [f"100.{k}.0.1" for k in range(4)], "g", hosting=True),
            events("h", [f"100.{k}.0.2" for k in range(4)], "h", hosting=True),  # NAT: no
            events("i", ["198.18.0.1"], "i"),
            events("j", ["198.19.0.1"], "j"),
            *crowd,
        ],
        ignore_index=True,
    )
    tenants = pd.DataFrame(
        {
            "tenant_id": list("abcdefghij"),
            "declared_country": "US",
            "billing_country": "US",
            "reseller": "",
            "billing_id": [f"pm-{k}" for k in range(8)] + ["pm-9", "pm-9"],  # i, j share
        }
    )
    f = features_of(tel, acc, tenants)
    entity = f["entity_id"].groupby(level=0).first()
    assert entity["a"] == entity["b"] and entity["c"] == entity["d"] and entity["i"] == entity["j"]
    assert len({entity[t] for t in "aceghi"} | {entity["f"]}) == 7
    why = f["link_reasons"].groupby(level=0).first()  # what each linked tenant shares
    assert why["a"] == "b: prefix, 2 principals" and why["c"] == "d: 4 prefixes"
    assert why["i"] == "j: billing id" and why["f"] == ""


def test_a_tenant_sharing_home_prefixes_with_many_is_a_hub_not_a_link():
    tenants = [f"t{k}" for k in range(7)]
    tel = pd.concat([telemetry(t, 1, 2, 60, seed=k) for k, t in enumerate(tenants)])
    proxy = access("t0", [T0] * 24, "US").assign(
        src_ip=[f"10.{k}.{j}.1" for k in range(1, 7) for j in range(4)]
    )  # a rotating proxy pool: four prefixes shared with each of six others
    others = [
        access(t, [T0] * 4, "US").assign(src_ip=[f"10.{k}.{j}.2" for j in range(4)])
        for k, t in enumerate(tenants[1:], 1)
    ]
    f = features_of(tel.reset_index(drop=True), pd.concat([proxy, *others], ignore_index=True))
    assert (f["entity_tenants"] == 1).all()
