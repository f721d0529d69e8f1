"""The command line end to end, on the bundled samples, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd
import pytest
from click.testing import CliRunner
from factories import ROOT, SAMPLE_INPUTS, SAMPLES

from detector.cli import export_options, main
from detector.export.options import ExportOptions
from detector.schema import SCORE_HEAD, SCORE_TAIL

INPUTS = SAMPLE_INPUTS


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, result.output + repr(result.exception)
    return result.output


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("e2e")
    run("train", *INPUTS, "--model-dir", str(tmp / "model"), "--format", "json")
    summary = run(
        "score",
        *INPUTS,
        "--model-dir",
        str(tmp / "model"),
        "--out",
        str(tmp / "scores.parquet"),
        "--metrics-file",
        str(tmp / "g.prom"),
        "--format",
        "json",
    )
    return {
        "tmp": tmp,
        "model": tmp / "model",
        "scores": tmp / "scores.parquet",
        "summary": json.loads(summary),
    }


def test_every_command_has_help_and_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for name, command in main.commands.items():
        assert command.help, name
        assert "Usage:" in run(name, "--help")
        assert f"gpuwatch {name}" in readme, f"README does not show `gpuwatch {name}`"


def test_restricted_training_ranks_above_every_benign_family(scored):
    report = json.loads(
        run(
            "evaluate",
            "--scores",
            str(scored["scores"]),
            "--truth",
            str(SAMPLES / "truth.csv"),
            "--format",
            "json",
        )
    )
    assert report["average_precision"] >= 0.9


def test_scores_follow_the_contract(scored):
    scores = pd.read_parquet(scored["scores"])
    assert list(scores.columns[:4]) == list(SCORE_HEAD[:4])
    assert set(SCORE_HEAD) <= set(scores.columns)
    assert list(scores.columns[-len(SCORE_TAIL) :]) == list(SCORE_TAIL)
    assert scores["session_id"].is_unique and scores["risk_score"].between(0, 100).all()
    assert scores["risk_score"].is_monotonic_decreasing
    assert set(scores["severity"]) <= {"low", "medium", "high", "critical"}
    assert (scores["alert"] == (scores["risk_score"] >= 70)).all()
    top = json.loads(scores["top_features"].iloc[0])
    assert top and {"feature", "value", "contribution"} <= set(top[0])
    assert scores["run_id"].nunique() == 1 and scores["model_version"].str.len().gt(0).all()


def test_counts_add_up_and_outputs_exist(scored):
    s = scored["summary"]
    for source, read in s["rows_read"].items():
        quarantined = sum(n for k, n in s["rows_quarantined"].items() if k.startswith(source))
        assert read == s["rows_accepted"][source] + quarantined
    assert (scored["tmp"] / "scores.quarantine.csv").exists()
    assert "gpuwatch_sessions_scored" in (scored["tmp"] / "g.prom").read_text()
    meta = json.loads((scored["model"] / "metadata.json").read_text())
    assert meta["threshold_source"] == "policy" and meta["training"]["sessions"] > 50


def test_same_input_same_session_ids(scored):
    again = scored["tmp"] / "again.parquet"
    run("-q", "score", *INPUTS, "--model-dir", str(scored["model"]), "--out", str(again))
    first, second = pd.read_parquet(scored["scores"]), pd.read_parquet(again)
    assert first["session_id"].tolist() == second["session_id"].tolist()
    pd.testing.assert_series_equal(first["risk_score"], second["risk_score"])


def test_explain_names_what_pushed_the_score(scored):
    top = pd.read_parquet(scored["scores"]).iloc[0]
    text = run("explain", top["session_id"][:10], "--scores", str(scored["scores"]))
    first = json.loads(top["top_features"])[0]["feature"]
    assert first in text and top["tenant_id"] in text
    data = json.loads(
        run("explain", top["session_id"], "--scores", str(scored["scores"]), "--format", "json")
    )
    assert data["session_id"] == top["session_id"] and data["pushes"]
    assert "unknown session id(s): zzzz" in run(
        "explain", "zzzz", "--scores", str(scored["scores"]), code=2
    )


def test_fail_on_alert_exits_1(scored):
    run(
        "-q",
        "score",
        *INPUTS,
        "--model-dir",
        str(scored["model"]),
        "--out",
        str(scored["tmp"] / "x.parquet"),
        "--fail-on-alert",
        code=1,
    )


def test_labels_keep_incidents_out_and_set_the_threshold(scored, tmp_path):
    scores = pd.read_parquet(scored["scores"])
    truth = pd.read_csv(SAMPLES / "truth.csv")
    from detector.model.labels import match_truth

    matched = match_truth(scores, truth)
    labels = pd.DataFrame(
        {
            "session_id": scores["session_id"],
            "label": matched["restricted_training"].map({True: "incident", False: "benign"}),
            "analyst": "test",
        }
    )
    labels.to_csv(tmp_path / "labels.csv", index=False)
    out = json.loads(
        run(
            "train",
            *INPUTS,
            "--labels",
            str(tmp_path / "labels.csv"),
            "--model-dir",
            str(tmp_path / "m"),
            "--format",
            "json",
        )
    )
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert meta["threshold_source"] == "labels"
    # The split is by time: the latest quarter of the sessions is held out of every fit.
    later = (scores["start"] >= pd.Timestamp(meta["heldout"]["test_from"])).to_numpy()
    incident = matched["restricted_training"].to_numpy(bool)
    assert meta["heldout"]["sessions"] == later.sum() == out["heldout"]["sessions"]
    assert meta["heldout"]["incident"] == (incident & later).sum() > 0
    assert meta["training"]["fit_sessions"] == (~later & ~incident).sum()
    assert meta["heldout"]["average_precision"] > 0.8
    assert out["calibration"]["f1"] > 0.8 and out["alert_risk"] == meta["alert_risk"]


def test_bad_input_is_one_clean_line_and_exit_2(tmp_path):
    bad = tmp_path / "telemetry.csv"
    bad.write_text("timestamp,tenant_id,host,gpu\n2026-10-05T00:00:00Z,t,h,0\n")
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--telemetry",
            str(bad),
            "--access",
            str(SAMPLES / "access.jsonl.gz"),
            "--model-dir",
            str(tmp_path / "m"),
        ],
    )
    assert result.exit_code == 2
    assert "telemetry.csv" in result.output and "gpu_util" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(
        main,
        [
            "score",
            *INPUTS,
            "--model-dir",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "s.parquet"),
        ],
    )
    assert result.exit_code == 2 and "train a model" in result.output
    missing = CliRunner().invoke(
        main,
        [
            "train",
            "--telemetry",
            str(tmp_path / "nope"),
            "--access",
            str(tmp_path / "nope"),
            "--model-dir",
            str(tmp_path / "m"),
        ],
    )
    assert missing.exit_code == 2 and "nope" in missing.output


def test_features_lists_the_registry():
    names = [f["name"] for f in json.loads(run("features", "--format", "json"))]
    assert "restricted_compute" in names and "lockstep" in names


def test_serve_schedule_rescoring_runs_score_and_records_failures(scored, tmp_path):
    from detector.export.serve import Rescorer

    out = tmp_path / "scheduled.parquet"
    good = Rescorer(out, 60, [*INPUTS, "--model-dir", str(scored["model"])])
    assert good.run_once() and good.failure is None
    assert len(pd.read_parquet(out)) == len(pd.read_parquet(scored["scores"]))
    bad = Rescorer(tmp_path / "never.parquet", 60, [*INPUTS, "--model-dir", str(tmp_path)])
    assert not bad.run_once() and bad.failure is not None
    assert not (tmp_path / "never.parquet").exists()


def test_no_active_session_scores_empty_and_cannot_train(tmp_path):
    from factories import telemetry

    telemetry("idle", 1, 2, 60, util=0.0, noise=0.0).to_parquet(tmp_path / "t.parquet")
    (tmp_path / "a.csv").write_text(
        "timestamp,tenant_id,src_ip,event\n2026-10-05T00:00:00Z,idle,8.8.8.8,ssh\n"
    )
    inputs = ["--telemetry", str(tmp_path / "t.parquet"), "--access", str(tmp_path / "a.csv")]
    run(
        "-q",
        "score",
        *inputs,
        "--registry",
        str(ROOT / "models"),
        "--out",
        str(tmp_path / "s.parquet"),
    )
    assert pd.read_parquet(tmp_path / "s.parquet").empty
    assert "at least 2 sessions" in run(
        "train", *inputs, "--model-dir", str(tmp_path / "m"), code=2
    )


@click.command()
@export_options
def _command(export: ExportOptions) -> None:
    click.echo(repr(export))


def test_export_options_build_the_options_object(tmp_path):
    result = CliRunner().invoke(
        _command,
        [
            "--metrics-file",
            str(tmp_path / "m.prom"),
            "--pushgateway",
            "http://127.0.0.1:9091",
            "--job",
            "j",
            "--grouping",
            "cluster=eu1",
            "--top-n",
            "3",
            "--max-series",
            "7",
            "--pseudonymize-tenants",
        ],
        env={"GPUWATCH_PSEUDONYM_SALT": "pepper"},
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == repr(
        ExportOptions(
            metrics_file=tmp_path / "m.prom",
            pushgateway="http://127.0.0.1:9091",
            job="j",
            grouping={"cluster": "eu1"},
            top_n=3,
            max_series=7,
            pseudonymize_salt="pepper",
        )
    )


def test_export_options_defaults_and_errors():
    runner = CliRunner()
    assert runner.invoke(
        _command, [], env={"GPUWATCH_PSEUDONYM_SALT": None}
    ).output.strip() == repr(ExportOptions())
    missing_salt = runner.invoke(
        _command, ["--pseudonymize-tenants"], env={"GPUWATCH_PSEUDONYM_SALT": None}
    )
    assert missing_salt.exit_code == 2 and "--salt" in missing_salt.output
    bad = runner.invoke(_command, ["--grouping", "novalue"])
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.output
    assert runner.invoke(_command, ["--max-series", "0"]).exit_code == 2


def test_labels_of_one_kind_only_are_a_clean_error(scored, tmp_path):
    ids = pd.read_parquet(scored["scores"])["session_id"]
    pd.DataFrame({"session_id": ids[:5], "label": "incident"}).to_csv(
        tmp_path / "l.csv", index=False
    )
    out = run(
        "train",
        *INPUTS,
        "--labels",
        str(tmp_path / "l.csv"),
        "--model-dir",
        str(tmp_path / "m"),
        code=2,
    )
    assert "got 5 incident and 0 benign" in out and not (tmp_path / "m").exists()
