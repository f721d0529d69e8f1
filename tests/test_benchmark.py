"""`gpuwatch benchmark` plumbing on a small fleet: two fleets, a held-out family, baselines."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from detector.benchmark import BASELINES, GPUWATCH, holdout_scenarios
from detector.cli import main
from detector.errors import ConfigError


@pytest.mark.integration
def test_benchmark_trains_without_the_held_out_family_and_scores_it(tmp_path):
    work = tmp_path / "not" / "yet"  # created by the benchmark (was an internal error)
    result = CliRunner().invoke(
        main,
        ["benchmark", "--seed", "5", "--tenants", "34", "--days", "1.5", "--interval", "300",
         "--holdout", "split", "--work-dir", str(work), "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert work.is_dir() and not any(work.iterdir())  # its fleets are removed afterwards
    report = json.loads(result.output)
    assert report["config"]["holdout"] == ["restricted_split_pretraining"]
    overall = {row["detector"]: row for row in report["overall"]}
    assert set(overall) == {GPUWATCH, *BASELINES}
    for row in overall.values():
        assert 0 <= row["average_precision"] <= 1 and 0 <= row["recall_at_1pct_fpr"] <= 1
    families = {(r["family"], r["detector"]): r for r in report["families"]}
    split = families[("restricted_split_pretraining", GPUWATCH)]
    assert split["positive"] >= 3  # the test fleet has the family the training fleet lacked


def test_holdout_names_evasion_families_or_scenarios():
    assert holdout_scenarios("vpn") == ("restricted_vpn_pretraining", "restricted_vpn_finetuning")
    assert holdout_scenarios("reseller_pretraining") == ("reseller_pretraining",)
    assert holdout_scenarios(None) == ()
    with pytest.raises(ConfigError, match="evasion family"):
        holdout_scenarios("domestic_pretraining")
