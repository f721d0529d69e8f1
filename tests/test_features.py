from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from factories import T0, access, telemetry

from detector.config import load_settings
from detector.features import FEATURES, NAMES, session_features
from detector.features.workload import peak_flops
from detector.sessions import cut_sessions

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
    f = features_of(pd.concat([sync, free], ignore_index=True))
    assert f.loc["sync", "lockstep"] > 0.9
    assert f.loc["free", "lockstep"] < 0.5
    assert np.isnan(features_of(telemetry("one", 1, 1, 60)).loc["one", "lockstep"])


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


def test_origin_window_shares_and_fallback_to_tenant_history():
    tel = pd.concat([telemetry("cn", 1, 8, 180), telemetry("us", 1, 8, 180)], ignore_index=True)
    hours = [T0 + pd.Timedelta(hours=h) for h in range(-10, 3)]
    acc = pd.concat(
        [
            access("cn", hours[:10], "CN", restricted=True),
            access("cn", hours[10:], "NL", hosting=True),
            access("us", [T0 - pd.Timedelta(days=30)] * 2, "US"),  # old, outside the window
        ],
        ignore_index=True,
    )
    f = features_of(tel, acc)
    assert f.loc["cn", "access_events"] == 13
    assert f.loc["cn", "restricted_share"] == pytest.approx(10 / 13)
    assert f.loc["cn", "hosting_share"] == pytest.approx(3 / 13)
    assert f.loc["cn", "restricted_leak"] == 1.0
    assert f.loc["us", "access_events"] == 0
    assert f.loc["us", "restricted_share"] == 0.0  # from the tenant's history
    assert f.loc["us", "origin_evidence"] == 0.0


def test_working_hours_fingerprint_sees_through_a_vpn():
    # Weekday 02:00-10:00 UTC is 10:00-18:00 in Beijing and night in New York.
    monday = pd.Timestamp("2026-10-05 02:00", tz="UTC")
    times = [monday + pd.Timedelta(days=d, hours=h) for d in range(5) for h in range(8)]
    acc = access("vpn", times, "NL", hosting=True, declared="US", asn=9009)
    f = features_of(telemetry("vpn", 1, 8, 120, start=monday + pd.Timedelta(days=4)), acc)
    assert f.loc["vpn", "concern_hours_fit"] == 1.0
    assert f.loc["vpn", "declared_hours_fit"] == 0.0
    assert f.loc["vpn", "origin_evidence"] == 1.0


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
            access("train_cn", [T0] * 5, "CN", restricted=True),
            access("train_us", [T0] * 5, "US"),
            access("mine_cn", [T0] * 5, "CN", restricted=True),
        ],
        ignore_index=True,
    )
    f = features_of(tel, acc)
    assert f.loc["train_us", "restricted_compute"] == 0.0
    assert f.loc["train_cn", "restricted_compute"] > 2 * f.loc["mine_cn", "restricted_compute"]
