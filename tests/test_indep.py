"""Smoke test of the independent benchmark (bench/indep): its files pass gpuwatch's readers
untouched and the evaluation runs end to end. Detection quality is measured by
`make bench-indep`, not here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

INDEP = Path(__file__).resolve().parents[1] / "bench" / "indep"


def _load(name: str) -> ModuleType:
    sys.path.insert(0, str(INDEP))
    try:
        spec = importlib.util.spec_from_file_location(f"indep_{name}", INDEP / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up here
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(INDEP))


generate = _load("generate")
evaluate = _load("evaluate")


@pytest.fixture(scope="module")
def fleets(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object, dict, Path]:
    work = tmp_path_factory.mktemp("indep")
    counts = {}
    for seed in (11, 12):
        counts[seed] = generate.generate(work / f"fleet-{seed}", 10, 1.0, seed)
    train = evaluate.Fleet(work / "fleet-11", 11)
    test = evaluate.Fleet(work / "fleet-12", 12)
    return train, test, counts, work


def test_files_pass_the_readers_with_nothing_quarantined(fleets: tuple) -> None:
    train, test, counts, work = fleets
    scores, runs = evaluate.train_and_score(train, test, work)
    for run, seed in (("train", 11), ("score", 12)):
        summary = runs[run]
        assert summary["rows_quarantined"] == {}
        assert summary["rows_read"] == summary["rows_accepted"]
        assert summary["rows_read"]["telemetry"] == counts[seed]["telemetry"]
        assert summary["rows_read"]["access"] == counts[seed]["access"]
        assert summary["rows_read"]["tenants"] == counts[seed]["tenants"]
    truth = pd.read_csv(test.path / "truth.csv")
    joined = evaluate.join_truth(scores, truth)
    assert len(joined) == len(scores) > 0
    assert set(joined["tenant_id"]) <= set(truth["tenant_id"])
    assert joined["label"].sum() > 0  # the fleet holds a positive and its sessions match it
    m = evaluate.measure(joined)
    assert 0.0 <= m["ap"] <= 1.0
    assert set(m["recall_1pct_family"]) == set(joined.loc[joined["label"] == 1, "family"])
    assert not evaluate.family_table(joined).empty


def test_recall_at_fpr_counts_ties_as_missed() -> None:
    neg = np.arange(100, dtype=float)  # 1 % of 100 negatives may score above the threshold
    scores = np.concatenate([neg, [99.5, 98.0, 50.0]])
    labels = np.concatenate([np.zeros(100, int), np.ones(3, int)])
    threshold, recall = evaluate.recall_at_fpr(scores, labels, 0.01)
    assert threshold == 98.0
    assert recall == pytest.approx(1 / 3)


def test_truth_windows_cover_every_telemetry_row(fleets: tuple) -> None:
    _, test, _, _ = fleets
    tel = pd.read_parquet(test.path / "telemetry.parquet", columns=["timestamp", "tenant_id"])
    truth = pd.read_csv(test.path / "truth.csv", parse_dates=["start", "end"])
    span = truth.groupby("tenant_id").agg(start=("start", "min"), end=("end", "max"))
    t = tel.join(span, on="tenant_id")
    assert t["start"].notna().all()
    assert (
        (t["timestamp"] >= t["start"]) & (t["timestamp"] < t["end"] + pd.Timedelta("1min"))
    ).all()


def test_address_pools_geolocate_to_their_country() -> None:
    from geoip2fast import GeoIP2Fast

    geo = GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn-ipv6.dat.gz")
    rng = np.random.default_rng(0)
    for pool, (_, country) in generate.POOLS.items():
        for ip in generate.addresses(rng, pool, 5):
            assert geo.lookup(str(ip)).country_code == country, (pool, ip)
