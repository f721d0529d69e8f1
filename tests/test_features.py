from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from factories import T0, access, telemetry

from detector.config import load_settings
from detector.features import FEATURES, NAMES, session_features
from detector.features.summary import merge, summarise
from detector.features.workload import DIP_TIMES, peak_flops, summary_features, workload_features
from detector.sessions import active_runs, cut_sessions, merge_runs

SETTINGS = load_settings()


def features_of(tel: pd.DataFrame, acc: pd.DataFrame | None = None) -> pd.DataFrame:
    sessions, samples = cut_sessions(tel, SETTINGS.sessions)
    acc = acc if acc is not None else access("nobody", [T0], "US")
    return session_features(sessions, samples, acc, SETTINGS).set_index("tenant_id")


def test_registry_names_are_unique_and_all_extracted():
    assert len(NAMES) == len(set(NAMES))
    assert all(f.unit and f.family and f.description for f in FEATURES)
    f = features_of(telemetry("t", 1, 2, 60))
    assert list(f.columns[-len(NAMES) :]) == NAMES


def test_size_gpu_hours_and_flop():
    f = features_of(telemetry("t", 2, 4, 120, util=100.0, tensor=0.5, noise=0.0)).loc["t"]
    assert f["samples_per_gpu"] == 120
    assert (f["n_gpus"], f["n_hosts"]) == (8, 2)
    assert f["gpu_hours"] == pytest.approx(8 * 2.0)  # 120 samples of 60 s per GPU
    assert f["est_flop"] == pytest.approx(8 * 7200 * 0.5 * peak_flops("NVIDIA H100 80GB HBM3"))
    assert f["busy_frac"] == 1.0 and f["mem_fill"] == pytest.approx(0.875)


def test_peak_flops_table_prefers_specific_names():
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops(None) == 312e12


def test_lockstep_separates_synchronised_from_independent_gpus():
    rng = np.random.default_rng(1)
    shared = np.clip(60 + 30 * np.sin(np.arange(240) / 7) + rng.normal(0, 3, 240), 0, 100)
    sync = telemetry("sync", 1, 8, 240, util=shared, noise=2.0)
    free = telemetry("free", 1, 8, 240, util=60.0, noise=25.0)
    two = telemetry("two", 1, 2, 240, util=60.0, noise=25.0, seed=3)  # no self-correlation
    f = features_of(pd.concat([sync, free, two], ignore_index=True))
    assert f.loc["sync", "lockstep"] > 0.8
    assert abs(f.loc["free", "lockstep"]) < 0.3 and abs(f.loc["two", "lockstep"]) < 0.3
    assert np.isnan(features_of(telemetry("one", 1, 1, 60)).loc["one", "lockstep"])
    flat = features_of(telemetry("flat", 1, 8, 60, util=99.0, noise=0.2)).loc["flat"]
    assert np.isnan(flat["lockstep"])  # nothing moves: nothing to be in step with


def test_periodic_checkpoint_dips_are_counted_and_regular():
    util = np.full(600, 97.0)
    for k in range(60, 600, 60):  # a 2-minute dip every hour
        util[k : k + 2] = 2.0
    f = features_of(telemetry("t", 2, 8, 600, util=util, noise=0.5)).loc["t"]
    assert f["dip_rate_per_h"] == pytest.approx(9 / 10, rel=0.05)
    assert f["dip_regularity"] > 0.95
    flat = features_of(telemetry("u", 1, 8, 600, util=95.0)).loc["u"]
    assert flat["dip_rate_per_h"] == 0 and flat["dip_regularity"] == 0


def test_missing_profiling_metrics_make_features_nan_not_errors():
    tel = telemetry("t", 1, 2, 60)
    tel[["sm_active", "tensor_active", "nvlink_tx_bps", "nvlink_rx_bps"]] = np.nan
    f = features_of(tel).loc["t"]
    assert np.isnan(f["tensor_active_mean"]) and np.isnan(f["nvlink_bps"])
    assert f["est_flop"] > 0  # falls back to utilisation


def week(hours: range, days: range = range(5), start: pd.Timestamp = T0) -> list:
    """Event times on the given UTC hours of the given days from `start`."""
    return [start + pd.Timedelta(days=d, hours=h) for d in days for h in hours]


def test_origin_is_per_tenant_history_and_a_session_window_count():
    tel = pd.concat([telemetry("cn", 1, 8, 180), telemetry("us", 1, 8, 180)], ignore_index=True)
    hours = [T0 + pd.Timedelta(hours=h) for h in range(-10, 3)]
    acc = pd.concat(
        [
            access("cn", hours[:10], "CN", restricted=True),
            access("cn", hours[10:], "NL", hosting=True),
            access("us", [T0 - pd.Timedelta(days=20)] * 2, "US"),  # old: the history has it
        ],
        ignore_index=True,
    )
    f = features_of(tel, acc)
    assert f.loc["cn", "access_events"] == 13
    assert f.loc["cn", "restricted_share"] == pytest.approx(10 / 13)
    assert f.loc["cn", "hosting_share"] == pytest.approx(3 / 13)
    assert f.loc["cn", "direct_events"] == 10
    assert f.loc["us", "access_events"] == 0
    assert f.loc["us", "history_events"] == 2
    assert f.loc["cn", "origin_evidence"] > 0.8 > 0.05 > f.loc["us", "origin_evidence"]


def test_the_clock_sees_through_a_vpn_and_vouches_against_a_trip():
    # Weekdays 01:00-10:00 UTC are office hours in Beijing and night in New York.
    vpn = access("vpn", week(range(1, 10)), "NL", hosting=True, declared="US", asn=9009)
    f = features_of(telemetry("vpn", 1, 8, 120, start=T0 + pd.Timedelta(days=4)), vpn)
    assert f.loc["vpn", "clock_offset_h"] == 8.0
    assert f.loc["vpn", "clock_excess"] > 0.5  # against the declared US zone
    # A New York team (13:00-22:00 UTC) with two days in Shanghai: the trip is direct, the
    # people keep New York hours, so the clock speaks against Beijing.
    home = access("trip", week(range(13, 22), range(0, 3)), "US", declared="US")
    away = access("trip", week(range(1, 10), range(3, 5)), "CN", restricted=True, declared="US")
    f = features_of(
        telemetry("trip", 1, 8, 120, start=T0 + pd.Timedelta(days=4)),
        pd.concat([home, away], ignore_index=True),
    )
    assert f.loc["trip", "clock_excess"] < 0
    assert f.loc["trip", "concern_people_share"] == 0  # at home they connect from home
    assert f.loc["trip", "origin_evidence"] < 0.05


def test_a_long_trip_does_not_set_the_clock():
    # A New York engineer two days at home and three in Shanghai, beside a deploy bot on cloud
    # egress around the clock: more of the week's human events keep Beijing hours, because the
    # person is there. `direct` has weighed the trip; the clock reads the people at home.
    home = access("trip", week(range(13, 22), range(0, 2)), "US", declared="US")
    away = access("trip", week(range(1, 10), range(2, 5)), "CN", restricted=True, declared="US")
    bot = access("trip", week(range(0, 24)), "US", hosting=True, declared="US", asn=16509)
    f = features_of(
        telemetry("trip", 1, 8, 120, start=T0 + pd.Timedelta(days=4)),
        pd.concat([home, away, bot], ignore_index=True),
    )
    assert f.loc["trip", "concern_people_share"] == 0
    assert f.loc["trip", "clock_excess"] < 0
    assert f.loc["trip", "origin_evidence"] < 0.05


def test_one_weak_tell_is_not_enough_and_agreeing_tells_add_up():
    hosting = access("cloud", week(range(13, 22)), "US", hosting=True, declared="US", asn=16509)
    f = features_of(telemetry("cloud", 1, 8, 60, start=T0 + pd.Timedelta(days=4)), hosting)
    assert f.loc["cloud", "origin_evidence"] < 0.1  # cloud egress alone
    leaks = access("crew", week(range(1, 10)), "NL", hosting=True, declared="SG", asn=9009)
    home = access("crew", week([3], range(5)), "CN", restricted=True, declared="SG")
    f = features_of(
        telemetry("crew", 1, 8, 60, start=T0 + pd.Timedelta(days=4)),
        pd.concat([leaks, home], ignore_index=True),
    )
    # Beijing and Singapore share a clock, but a VPN user whose every direct connection is
    # from China, behind foreign hosting exits, adds up.
    assert f.loc["crew", "clock_excess"] == 0
    assert f.loc["crew", "concern_people_share"] == 1.0
    assert f.loc["crew", "origin_evidence"] > 0.9


def test_training_evidence_does_not_hinge_on_utilisation_level():
    busy = telemetry("busy", 2, 8, 240, util=97.0)
    throttled = telemetry("throttled", 2, 8, 240, util=60.0, seed=1)
    mining = telemetry("mining", 1, 8, 240, util=100.0, tensor=0.0, seed=2)
    mining[["fb_used_mib", "fb_free_mib"]] = [3000.0, 77000.0]
    f = features_of(pd.concat([busy, throttled, mining], ignore_index=True))
    assert f.loc["busy", "training_evidence"] > 0.9
    assert f.loc["throttled", "training_evidence"] > 0.9
    assert f.loc["mining", "training_evidence"] < 0.05


def test_double_precision_work_is_simulation_not_training():
    # MPI simulation on the tensor cores (FP64 DMMA) looks like training on every other signal
    def hpc(tenant: str, fp64: float | None) -> pd.DataFrame:
        t = telemetry(tenant, 2, 8, 240, util=90.0, tensor=0.25)
        return t if fp64 is None else t.assign(fp64_active=t["sm_active"] * fp64)

    f = features_of(pd.concat([hpc("unknown", None), hpc("fp64", 0.6), hpc("dmma", 0.25)]))
    assert np.isnan(f.loc["unknown", "fp64_share"])  # not exported: no evidence either way
    assert f.loc["unknown", "training_evidence"] > 0.9
    assert f.loc["fp64", "fp64_share"] == pytest.approx(0.6)
    assert f.loc["fp64", "training_evidence"] < 0.05
    assert f.loc["dmma", "training_evidence"] < 0.3


def test_interactions_need_both_training_and_restricted_origin():
    tel = pd.concat(
        [
            telemetry("train_cn", 2, 8, 240),
            telemetry("train_us", 2, 8, 240),
            telemetry("mine_cn", 1, 8, 240, util=100.0, tensor=0.0),
        ],
        ignore_index=True,
    )
    tel.loc[tel["tenant_id"] == "mine_cn", ["fb_used_mib", "fb_free_mib"]] = [3000.0, 77000.0]
    acc = pd.concat(
        [
            access("train_cn", week(range(1, 10)), "CN", restricted=True),
            access("train_us", week(range(13, 22)), "US"),
            access("mine_cn", week(range(1, 10)), "CN", restricted=True),
        ],
        ignore_index=True,
    )
    f = features_of(tel, acc)
    assert f.loc["train_us", "restricted_compute"] < 0.1
    assert f.loc["train_cn", "restricted_compute"] > 2
    assert f.loc["train_cn", "restricted_compute"] > 20 * f.loc["mine_cn", "restricted_compute"]


def test_compute_accounting_sums_tenants_and_entities_with_a_band():
    f = features_of(telemetry("t", 2, 8, 240, util=97.0)).loc["t"]
    assert f["est_flop_low"] < f["est_flop"] < f["est_flop_high"]
    assert f["tenant_training_flop"] == pytest.approx(f["est_flop"])
    assert f["entity_training_flop"] == pytest.approx(f["est_flop"])
    assert f["entity_flop_threshold"] == 0.0  # 1e20 FLOP: below the first threshold


def test_origin_facts_count_values_bounded_with_the_rest_as_other():
    from detector.features.origin import FACT_TEXT_MAX, FACTS_SHOWN, origin_facts

    n = FACTS_SHOWN + 3
    events = pd.DataFrame(
        {
            "timestamp": [T0 + pd.Timedelta(minutes=i) for i in range(n + 2)],
            "tenant_id": ["a"] * n + ["b", "b"],
            "country": ["CN", "CN", *(f"C{i}" for i in range(n - 2)), None, None],
            "asn": [None] * (n + 2),
            "as_org": ["x" * (FACT_TEXT_MAX + 9)] * n + ["Home ISP", "Home ISP"],
            "src_ip": ["203.0.113.7", "203.0.113.9", *(f"10.0.{i}.1" for i in range(n - 2)),
                       "2001:db8::1", "bad"],
        }
    )  # fmt: skip
    tenants = pd.DataFrame(
        {"tenant_id": ["a", "b"], "declared_country": ["SG", "US"], "reseller": ["R Ltd", None]}
    )
    facts = origin_facts(events, tenants, SETTINGS, T0 + pd.Timedelta(hours=1))
    countries = json.loads(facts.loc["a", "origin_countries"])
    assert list(countries)[0] == "CN" and countries["CN"] == 2
    assert len(countries) == FACTS_SHOWN + 1 and countries["other"] == n - 1 - FACTS_SHOWN
    assert sum(countries.values()) == n
    assert json.loads(facts.loc["a", "origin_as_orgs"]) == {"x" * FACT_TEXT_MAX: n}
    assert json.loads(facts.loc["a", "origin_prefixes"])["203.0.113.0/24"] == 2
    assert pd.isna(facts.loc["b", "origin_countries"])  # no event has one: no fact
    assert facts.loc["b", "origin_prefixes"] == json.dumps({"2001:db8::/48": 1, "unknown": 1})
    assert pd.isna(facts.loc["a", "origin_asns"])
    assert facts.loc["a", "reseller_name"] == "R Ltd" and facts.loc["b", "declared_country"] == "US"
    none = origin_facts(events.iloc[:0], None, SETTINGS, T0)
    assert none.empty and list(none.columns) == list(facts.columns)


def _by_slices(tel: pd.DataFrame, cuts: list[int]) -> pd.DataFrame:
    """Workload features with `tel` cut into time slices before the minutes `cuts` (on the
    60 s grid): runs merged into sessions, slice summaries merged in time order."""
    minute = (tel["timestamp"] - T0).dt.total_seconds().to_numpy() // 60
    which = np.searchsorted(cuts, minute, side="right")
    slices = [tel[which == i] for i in range(len(cuts) + 1)]
    sessions = merge_runs([active_runs(x, SETTINGS.sessions) for x in slices], SETTINGS.sessions)
    summary = None
    for part in slices:
        _, samples = cut_sessions(part, SETTINGS.sessions, sessions)
        one = summarise(len(sessions), samples, SETTINGS)
        summary = one if summary is None else merge(summary, one)
    assert summary is not None
    return pd.concat([sessions, summary_features(sessions, summary, SETTINGS)], axis=1)


@pytest.mark.parametrize("cuts", [[37, 61], list(range(1, 130))])
def test_time_slice_summaries_merge_into_the_features_of_all_rows(cuts):
    rng = np.random.default_rng(2)
    wave = np.clip(60 + 30 * np.sin(np.arange(120) / 5) + rng.normal(0, 3, 120), 0, 100)
    wave[50:60] = 0.0  # an idle stretch inside the session (shorter than the gap)
    job = telemetry("a", 2, 3, 120, util=wave, noise=2.0)
    odd = (job["host"] == "a-n0") & (job["gpu"] == "0")
    minute = (job["timestamp"] - T0).dt.total_seconds() // 60
    job = job[~odd | minute.isin([0, 1, 2, 5, 9, 14, 15, 16, 40, 41])]  # steps 1-24 min
    late = telemetry("a", 1, 1, 12, start=T0 + pd.Timedelta(hours=3), noise=0.0)
    short = telemetry("b", 1, 1, 12, start=T0 + pd.Timedelta(minutes=5), job="j1")
    tel = pd.concat([job, late, short], ignore_index=True)
    sessions, samples = cut_sessions(tel, SETTINGS.sessions)
    whole = pd.concat([sessions, workload_features(sessions, samples, SETTINGS)], axis=1)
    got = _by_slices(tel, cuts).set_index("session_id").loc[whole["session_id"]].reset_index()
    assert len(whole) == 3 and (whole["lockstep"] > 0.5).any()
    for column in whole.columns:
        if whole[column].dtype.kind == "f":
            assert np.allclose(got[column], whole[column], rtol=1e-9, equal_nan=True), column
        elif column == DIP_TIMES:
            assert all(map(np.array_equal, got[column], whole[column]))
        else:
            assert got[column].astype(str).tolist() == whole[column].astype(str).tolist()
