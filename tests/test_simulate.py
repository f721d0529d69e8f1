"""The seeded simulator: determinism, schemas, scenarios, truth, real IPs and exporter mess."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from geoip2fast import GeoIP2Fast

from detector.config import load_settings
from detector.errors import ConfigError
from detector.schema import ACCESS, TELEMETRY, TENANTS
from detector.simulate import (
    FILES,
    ORIGINS,
    RESTRICTED_ORIGINS,
    SCENARIOS,
    TRAINING,
    WORKLOADS,
    build_ip_pool,
    load_ip_pool,
    scenario_counts,
    simulate,
)

N_TENANTS, DAYS, SEED, INTERVAL = 34, 2, 3, 300
TRUTH_COLUMNS = [
    "tenant_id",
    "start",
    "end",
    "scenario",
    "workload",
    "origin",
    "restricted_training",
]


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sim")
    return out, simulate(out, N_TENANTS, DAYS, SEED, interval_s=INTERVAL)


@pytest.fixture(scope="module")
def tables(sim) -> dict[str, pd.DataFrame]:
    out, _ = sim
    return {
        "telemetry": pd.read_parquet(out / "telemetry.parquet"),
        "access": pd.read_json(out / "access.jsonl.gz", lines=True, dtype=False),
        "tenants": pd.read_csv(out / "tenants.csv", keep_default_na=False, dtype=str),
        "truth": pd.read_csv(out / "truth.csv", keep_default_na=False, dtype=str),
    }


@pytest.fixture(scope="module")
def geo() -> GeoIP2Fast:
    return GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn-ipv6.dat.gz")


def test_same_seed_gives_identical_files_and_another_seed_does_not(sim, tmp_path):
    out, summary = sim
    again = simulate(tmp_path / "a", N_TENANTS, DAYS, SEED, interval_s=INTERVAL)
    for name in FILES:
        assert (out / name).read_bytes() == (tmp_path / "a" / name).read_bytes(), name
    assert again["rows"] == summary["rows"]
    simulate(tmp_path / "b", N_TENANTS, DAYS, SEED + 1, interval_s=INTERVAL)
    assert (out / "telemetry.parquet").read_bytes() != (
        tmp_path / "b" / "telemetry.parquet"
    ).read_bytes()


def test_summary_counts_match_files(sim, tables):
    _, summary = sim
    assert summary["rows"] == {
        "telemetry.parquet": len(tables["telemetry"]),
        "access.jsonl.gz": len(tables["access"]),
        "tenants.csv": N_TENANTS,
        "truth.csv": len(tables["truth"]),
    }
    assert sum(summary["scenarios"].values()) == N_TENANTS
    assert summary["messiness"]["hosts_without_dcp"] > 0


def test_telemetry_follows_the_canonical_schema(sim, tables):
    out, _ = sim
    tel = tables["telemetry"]
    assert list(tel.columns) == TELEMETRY.names
    schema = pq.read_schema(out / "telemetry.parquet")
    assert str(schema.field("timestamp").type) == "timestamp[us, tz=UTC]"
    assert str(schema.field("gpu_util").type) == "float"
    assert tel["timestamp"].is_monotonic_increasing
    assert tel[TELEMETRY.required].notna().all().all()
    for col in TELEMETRY.columns:
        values = tel[col.name].dropna()
        if col.min is not None:
            assert (values >= col.min).all(), col.name
        if col.max is not None:
            assert (values <= col.max).all(), col.name
    assert set(tel["gpu"]) <= {str(i) for i in range(8)}
    assert set(tel["model_name"]) <= {
        "NVIDIA H100 80GB HBM3",
        "NVIDIA A100-SXM4-80GB",
        "NVIDIA L40S",
    }
    # job_id is known for every row of a Kubernetes tenant and for none of a bare-metal one
    per_tenant = tel["job_id"].notna().groupby(tel["tenant_id"]).agg(["all", "any"])
    assert (per_tenant["all"] == per_tenant["any"]).all()
    assert per_tenant["all"].any() and not per_tenant["any"].all()
    assert not tel.duplicated(list(TELEMETRY.key)).any()


def test_access_tenants_and_truth_follow_their_schemas(tables):
    acc, ten, truth = tables["access"], tables["tenants"], tables["truth"]
    assert list(acc.columns) == ACCESS.names[:8]  # not pre-enriched: no country / asn / as_org
    assert acc["timestamp"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()
    assert set(acc["event"]) == {"login", "ssh", "api", "console", "transfer"}
    for ip in acc["src_ip"].unique():
        ipaddress.ip_address(ip)
    assert acc["src_ip"].str.contains(":").any()  # some IPv6
    assert (acc[["bytes_in", "bytes_out"]] >= 0).all().all()
    assert list(ten.columns) == TENANTS.names
    assert ten["declared_country"].str.fullmatch("[A-Z]{2}").all()
    resellers = truth.loc[truth["origin"] == "reseller", "tenant_id"].unique()
    registry = ten.set_index("tenant_id")["reseller"]
    assert (registry[resellers] != "").all() and (registry.drop(resellers) == "").all()
    assert list(truth.columns[:7]) == TRUTH_COLUMNS
    assert set(truth["restricted_training"]) == {"true", "false"}
    assert set(truth["tenant_id"]) == set(ten["tenant_id"]) == set(acc["tenant_id"])


def test_every_scenario_workload_and_origin_present(tables):
    truth = tables["truth"]
    assert set(truth["scenario"]) == {s.name for s in SCENARIOS}
    assert set(truth["workload"]) == set(WORKLOADS)
    assert set(truth["origin"]) == set(ORIGINS)


def test_a_split_crew_runs_one_job_in_step_across_accounts(tables):
    truth, tenants, acc = tables["truth"], tables["tenants"], tables["access"]
    crew = truth[truth["scenario"] == "restricted_split_pretraining"]
    assert crew["tenant_id"].nunique() >= 3 and len(crew) == crew["tenant_id"].nunique()
    starts = pd.to_datetime(crew["start"])
    assert (starts.max() - starts.min()) <= pd.Timedelta(minutes=2)
    assert crew["end"].nunique() == 1
    principals = acc[acc["tenant_id"].isin(crew["tenant_id"])].groupby("principal")["tenant_id"]
    assert principals.nunique().max() >= 2  # people of the crew log into several accounts
    assert tenants["billing_id"].str.fullmatch(r"pm-[0-9a-f]{10}").all()


def test_restricted_training_means_training_driven_from_a_country_of_concern(tables):
    truth = tables["truth"]
    expected = truth["workload"].isin(TRAINING) & truth["origin"].isin(RESTRICTED_ORIGINS)
    assert ((truth["restricted_training"] == "true") == expected).all()


@pytest.mark.parametrize("n", [5, 12, 18, 40, 100])
def test_scenario_mix(n):
    counts = scenario_counts(n)
    assert sum(counts.values()) == n
    held = scenario_counts(n, without=("restricted_split_pretraining",))
    assert sum(held.values()) == n and "restricted_split_pretraining" not in held
    with pytest.raises(ConfigError, match="unknown scenario"):
        scenario_counts(n, without=("nope",))
    restricted = sum(
        c
        for name, c in counts.items()
        if next(s for s in SCENARIOS if s.name == name).restricted_training
    )
    assert 0.15 <= restricted / n <= 0.25 if n >= 40 else restricted >= 1
    if n >= len(SCENARIOS):
        assert len(counts) == len(SCENARIOS)


def test_truth_covers_every_active_sample(tables):
    tel, truth = tables["telemetry"], tables["truth"].copy()
    truth["start"], truth["end"] = pd.to_datetime(truth["start"]), pd.to_datetime(truth["end"])
    active = tel[tel["gpu_util"] > 5][["timestamp", "tenant_id", "host"]]
    slots = truth.assign(host=truth["hosts"].str.split(" ")).explode("host")
    joined = active.reset_index().merge(slots, on=["tenant_id", "host"])
    slack = pd.Timedelta(seconds=INTERVAL + 10)
    inside = (joined["timestamp"] >= joined["start"]) & (
        joined["timestamp"] <= joined["end"] + slack
    )
    covered = inside.groupby(joined["index"]).any()
    assert covered.reindex(active.index, fill_value=False).all()
    # with a scheduler, the job id names the truth row
    jobs = tel.dropna(subset=["job_id"]).groupby("job_id")["tenant_id"].first()
    by_id = truth[truth["job_id"] != ""].set_index("job_id")["tenant_id"]
    assert (by_id.reindex(jobs.index) == jobs).all()


def test_ip_pool_addresses_are_where_the_database_says(geo):
    pool, settings = load_ip_pool(), load_settings(env={})
    assert 300 < len(pool) < 5000 and pool["ip"].is_unique
    assert pool["ip"].str.contains(":").sum() >= 10
    for row in pool.itertuples():
        res = geo.lookup(row.ip)
        assert res.country_code == row.country and res.asn_name == row.as_org, row
        assert ipaddress.ip_address(row.ip) in ipaddress.ip_network(res.asn_cidr), row
    hosting = pool[pool["kind"] == "hosting"]
    assert hosting["asn"].isin(settings.hosting.asns).all()
    # the bundled database has no AS numbers: enrichment knows hosting by organisation name
    keywords = settings.hosting.org_keywords
    assert hosting["as_org"].str.lower().map(lambda o: any(k in o for k in keywords)).all()
    residential = pool[pool["kind"] == "residential"]
    assert not residential["asn"].isin(settings.hosting.asns).any()
    assert not residential["as_org"].str.lower().map(lambda o: any(k in o for k in keywords)).any()
    assert set(pool["kind"]) == {"residential", "hosting"}


def test_ip_pool_regenerates_identically():
    assert build_ip_pool().equals(load_ip_pool())


def test_restricted_training_access_enriches_to_concern_or_hosting(tables, geo):
    acc, truth = tables["access"], tables["truth"]
    settings = load_settings(env={})
    concern, hosting = settings.jurisdiction.countries_of_concern, settings.hosting.asns
    asn_of = load_ip_pool().drop_duplicates("as_org").set_index("as_org")["asn"]
    tenants = truth.loc[truth["restricted_training"] == "true", "tenant_id"].unique()
    by_tenant = {}
    for tenant in tenants:
        ips = acc.loc[acc["tenant_id"] == tenant, "src_ip"]
        answers = [geo.lookup(ip) for ip in ips]
        drivers = [r.country_code in concern or asn_of.get(r.asn_name) in hosting for r in answers]
        # the reseller's own admin logs in from its declared country; everyone else is driven
        # from a country of concern, directly or through hosting exits
        by_tenant[tenant] = np.mean(drivers)
        assert any(r.country_code in concern for r in answers) or all(drivers), tenant
    assert min(by_tenant.values()) > 0.5
    home = truth[(truth["origin"] == "domestic") & ~truth["scenario"].str.contains("traveller")]
    domestic = acc[acc["tenant_id"].isin(home["tenant_id"])]
    assert {geo.lookup(ip).country_code for ip in domestic["src_ip"].unique()} == {"US"}


def test_workload_shapes_look_like_dcgm(tables):
    tel, truth = tables["telemetry"], tables["truth"]
    workload = truth.drop_duplicates("tenant_id").set_index("tenant_id")["workload"]
    busy = tel[tel["gpu_util"] > 90].assign(w=lambda d: d["tenant_id"].map(workload))
    med = busy.groupby("w")[["sm_active", "tensor_active", "fb_used_mib"]].median()
    assert 0.78 <= med.loc["llm_pretraining", "sm_active"] <= 0.95
    assert 0.35 <= med.loc["llm_pretraining", "tensor_active"] <= 0.72
    assert med.loc["hpc_simulation", "tensor_active"] <= 0.05
    assert med.loc["crypto_mining", "tensor_active"] == 0
    assert med.loc["crypto_mining", "fb_used_mib"] < 6000
    idle = tel[tel["tenant_id"].map(workload) == "idle_reservation"]
    assert idle["gpu_util"].max() == 0


def test_exporter_mess_is_present(tables):
    tel, truth = tables["telemetry"], tables["truth"]
    no_dcp = tel["sm_active"].isna().groupby(tel["host"]).all()
    assert no_dcp.any() and not no_dcp.all()
    assert (tel["timestamp"].astype("int64") // 10**6 % INTERVAL != 0).any()  # clock jitter
    last = tel.dropna(subset=["job_id"]).groupby(["job_id", "host", "gpu"])["timestamp"].max()
    spread = last.groupby(level="job_id").agg(lambda s: s.max() - s.min())
    assert (spread > pd.Timedelta(hours=1)).any()  # a GPU fell out of a job
    step = tel.groupby(["tenant_id", "host", "gpu"])["timestamp"].diff().dt.total_seconds()
    assert (step.between(2 * INTERVAL, 3600)).any()  # short silences
    t = truth.assign(start=pd.to_datetime(truth["start"]), end=pd.to_datetime(truth["end"]))
    t = t.sort_values(["tenant_id", "start"])
    overlap = t.groupby("tenant_id").apply(
        lambda g: (g["start"].iloc[1:].to_numpy() < g["end"].cummax().iloc[:-1].to_numpy()).any()
    )
    assert overlap.any()  # two jobs of one tenant at once
    ends = t[t["job_id"] != ""].set_index("job_id")["end"]
    jobs = tel.dropna(subset=["job_id"])
    tail = jobs[jobs["timestamp"] > jobs["job_id"].map(ends) + pd.Timedelta(seconds=INTERVAL)]
    assert len(tail) and (tail["gpu_util"] == 0).all()  # GPUs held idle after the work ends


def test_invalid_arguments_raise_config_error(tmp_path):
    for kwargs in ({"n_tenants": 0}, {"days": 0}, {"interval_s": 0}, {"start": "5 Oct"}):
        args = {"n_tenants": 2, "days": 1, "seed": 1, **kwargs}
        with pytest.raises(ConfigError):
            simulate(tmp_path, **args)


@pytest.mark.parametrize("n", [3, 4, 5, 7, 8, 9, 13])
def test_split_accounts_form_crews_of_at_least_three_each_account_once(n):
    from detector.simulate.run import SPLIT_ACCOUNTS, _crews

    crews = _crews(list(range(n)))
    assert sorted(m for crew in crews for m in crew) == list(range(n))
    assert all(len(crew) >= SPLIT_ACCOUNTS[0] for crew in crews)
