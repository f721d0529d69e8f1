"""State across runs: scheduled runs with --state agree with one run over the whole period,
late rows are merged or quarantined (never lost), alerts keep their identity."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from bench.state_hourly import compare, deliver, split
from detector import state
from detector.cli import main
from detector.config import load_settings
from detector.engine import Engine
from detector.pipeline import Inputs, build_features, build_incremental
from detector.runinfo import RunReport
from detector.simulate import simulate
from tests.factories import T0, telemetry

MODEL = Path(__file__).resolve().parents[1] / "models" / "default"
RISK_TOLERANCE = 1e-6  # the documented tolerance: runs and one run give the same numbers


def _score(*args: str | Path) -> dict:
    result = CliRunner().invoke(main, ["-q", "score", *map(str, args), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_runs_every_three_hours_agree_with_one_run_over_the_period(tmp_path):
    data, parts, inbox = tmp_path / "data", tmp_path / "parts", tmp_path / "inbox"
    simulate(data, 8, 1.5, 5, interval_s=120)
    names = split(data, parts, 3)
    common = ["--model-dir", MODEL, "--tenants", data / "tenants.csv"]
    runs, out = [], tmp_path / "runs.parquet"
    for name in names:
        deliver(parts, inbox, [name])
        runs.append(
            _score(
                "--telemetry", inbox / "tel", "--access", inbox / "acc", *common,
                "--out", out, "--state", tmp_path / "state",
            )
        )  # fmt: skip
    again = _score(
        "--telemetry", inbox / "tel", "--access", inbox / "acc", *common,
        "--out", tmp_path / "again.parquet", "--state", tmp_path / "state",
        "--metrics-file", tmp_path / "gpuwatch.prom",
    )  # fmt: skip
    _score(
        "--telemetry", data / "telemetry.parquet", "--access", data / "access.jsonl.gz",
        *common, "--out", tmp_path / "whole.parquet",
    )  # fmt: skip
    whole, last = pd.read_parquet(tmp_path / "whole.parquet"), pd.read_parquet(out)
    result = compare(whole, last)
    assert len(runs) == len(names) > 8
    assert result["ids_equal"] and result["sessions_whole"] == len(whole) >= 8
    assert result["max_risk_difference"] <= RISK_TOLERANCE
    assert result["alerts_equal"] and not result["features_that_differ"]
    # each run read only its own period's rows; a run with nothing new reads nothing
    read = sum(r["rows_read"].get("telemetry", 0) for r in runs)
    assert read == pd.read_parquet(data / "telemetry.parquet").shape[0]
    assert again["rows_read"].get("telemetry", 0) == 0
    # a pager fires once per alert: new in one run, ongoing after
    paged = [a for r in runs for a in r["alerts_new"]]
    assert whole["alert"].any() and len(paged) == len(set(paged))
    assert again["alerts_new"] == [] and again["alert_status"]["ongoing"] == whole["alert"].sum()
    metrics = (tmp_path / "gpuwatch.prom").read_text()
    assert 'gpuwatch_alerts{status="new"} 0.0' in metrics
    assert f'gpuwatch_alerts{{status="ongoing"}} {float(whole["alert"].sum())}' in metrics
    alerts = last[last["alert"]]
    assert alerts["alert_id"].notna().all() and (alerts["first_seen"] <= alerts["last_seen"]).all()


def _write(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


def _inputs(folder: Path) -> Inputs:
    """Telemetry in `folder`, and one access event per tenant (from the US, declared US)."""
    events = pd.DataFrame(
        {
            "timestamp": [T0, T0],
            "tenant_id": ["t1", "t2"],
            "src_ip": ["8.8.8.8", "8.8.4.4"],
            "event": ["ssh", "ssh"],
        }
    )
    return Inputs([folder], [_write(events, folder.parent / "access" / "a.parquet")])


def _run(folder: Path, settings, prior: state.State) -> tuple[pd.DataFrame, state.State, dict]:
    report = RunReport()
    table = build_incremental(_inputs(folder), settings, prior, report, Engine(workers=1))
    assert table.state is not None
    late = table.quarantine[table.quarantine["reason"] == state.LATE_REASON]
    counts = {"merged": report.late_merged, "quarantined": len(late), "report": report}
    return table.sessions, table.state, counts


def test_late_rows_are_merged_into_open_sessions_and_quarantined_for_closed_ones(tmp_path):
    settings = load_settings(env={})
    hour = pd.Timedelta(hours=1)
    short = telemetry("t1", 1, 2, 120)  # 00:00-02:00: closed by 06:00
    long = telemetry("t2", 1, 2, 360, start=T0 + hour)  # 01:00-07:00 on n0: still open
    first, second = long["timestamp"] < T0 + 6 * hour, long["timestamp"] >= T0 + 6 * hour
    folder = tmp_path / "in"
    _write(pd.concat([short, long[first]]), folder / "a.parquet")
    sessions, after_one, _ = _run(folder, settings, state.State())
    assert after_one.watermark == long.loc[first, "timestamp"].max()
    assert set(after_one.sessions["tenant_id"]) == {"t1"}  # t2's session is still open
    assert set(after_one.telemetry["tenant_id"]) == {"t2"}  # only its rows are carried

    late_gpu = telemetry("t2", 1, 1, 300, start=T0 + 2 * hour, seed=1)  # another host, 02:00-
    late_gpu["host"] = "t2-late"
    late_closed = telemetry("t1", 1, 1, 60, start=T0 + 0.5 * hour, seed=2).assign(gpu="7")
    _write(pd.concat([long[second], late_gpu, late_closed]), folder / "b.parquet")
    sessions, after_two, late = _run(folder, settings, after_one)
    assert late["merged"] == (late_gpu["timestamp"] <= after_one.watermark).sum() > 0
    assert late["quarantined"] == len(late_closed)
    report = late["report"]
    assert report.rows_read["telemetry"] == (
        report.rows_accepted["telemetry"] + sum(report.rows_quarantined.values())
    )

    one = build_features(_inputs(folder), settings, engine=Engine(workers=1)).sessions
    t2 = one[one["tenant_id"] == "t2"]
    mine = sessions[sessions["tenant_id"] == "t2"]
    assert list(mine["session_id"]) == list(t2["session_id"])  # one id across both runs
    assert mine["n_hosts"].tolist() == t2["n_hosts"].tolist() == [2]
    assert mine["gpu_hours"].tolist() == t2["gpu_hours"].tolist()
    # t1 keeps the session stored when it closed; the one run sees the late GPU too
    assert sessions.loc[sessions["tenant_id"] == "t1", "n_gpus"].tolist() == [2]


def test_alerts_are_new_once_then_ongoing_then_resolved():
    scores = pd.DataFrame(
        {
            "session_id": ["s1", "s2"],
            "tenant_id": ["a", "b"],
            "entity_id": ["a", "b"],
            "risk_score": [90.0, 10.0],
            "alert": [True, False],
            "end": pd.to_datetime(["2026-10-05T00:30", "2026-10-05T00:40"], utc=True),
        }
    )
    first, alerts = state.track_alerts(scores, state.State().alerts, "2026-10-05T01:00:00+00:00")
    assert first["alert_status"].fillna("-").tolist() == ["new", "-"]
    second, alerts = state.track_alerts(scores, alerts, "2026-10-05T02:00:00+00:00")
    assert second["alert_status"].fillna("-").tolist() == ["ongoing", "-"]
    assert second["alert_id"][0] == first["alert_id"][0]
    assert (second["first_seen"][0], second["last_seen"][0]) == (
        "2026-10-05T01:00:00+00:00",
        "2026-10-05T02:00:00+00:00",
    )
    quiet = scores.assign(alert=False)
    third, alerts = state.track_alerts(quiet, alerts, "2026-10-05T03:00:00+00:00")
    assert third["alert_status"].fillna("-").tolist() == ["resolved", "-"]
    again, alerts = state.track_alerts(scores, alerts, "2026-10-05T04:00:00+00:00")
    assert again["alert_status"].fillna("-").tolist() == ["new", "-"]
    assert again["first_seen"][0] == "2026-10-05T01:00:00+00:00" and len(alerts) == 1


def test_a_file_that_grows_is_read_again_after_the_watermark_only(tmp_path):
    settings = load_settings(env={})
    rows = telemetry("t1", 1, 1, 180)
    path = _write(
        rows[rows["timestamp"] < T0 + pd.Timedelta(hours=2)], tmp_path / "in" / "a.parquet"
    )
    _, after_one, _ = _run(path.parent, settings, state.State())
    _write(rows, path)
    os.utime(path, ns=(1, 1))  # a changed size or mtime marks it changed
    _, after_two, counts = _run(path.parent, settings, after_one)
    report = counts["report"]
    assert (
        report.rows_accepted["telemetry"] == (rows["timestamp"] >= T0 + pd.Timedelta(hours=2)).sum()
    )
    assert counts["quarantined"] == 0 and after_two.watermark == rows["timestamp"].max()
    _, after_three, counts = _run(path.parent, settings, after_two)
    assert counts["report"].rows_read["telemetry"] == 0


def test_a_second_run_waits_for_the_state_then_fails_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "BUSY_SECONDS", 0.05)
    with state.opened(tmp_path) as con:
        state.save(con, state.State())
        with pytest.raises(state.StateError, match="busy"), state.opened(tmp_path):
            pass
    with state.opened(tmp_path, write=False) as con:
        assert state.load(con).runs == 0


def test_state_show_and_prune(tmp_path):
    settings = load_settings(env={})
    folder = tmp_path / "in"
    _write(telemetry("t1", 1, 2, 120), folder / "a.parquet")
    _write(telemetry("t1", 1, 2, 120, start=T0 + pd.Timedelta(days=3)), folder / "b.parquet")
    _, after, _ = _run(folder, settings, state.State())
    with state.opened(tmp_path / "state") as con:
        state.save(con, after)
    runner = CliRunner()
    shown = json.loads(
        runner.invoke(main, ["state", "show", str(tmp_path / "state"), "--format", "json"]).output
    )
    assert shown["closed_sessions"] == 1 and shown["carried_telemetry_rows"] > 0
    pruned = runner.invoke(
        main, ["state", "prune", str(tmp_path / "state"), "--keep-days", "1", "--format", "json"]
    )
    assert json.loads(pruned.output)["dropped"]["sessions"] == 1
    too_short = runner.invoke(
        main, ["state", "prune", str(tmp_path / "state"), "--keep-days", "0.01"]
    )
    assert too_short.exit_code == 2 and "two session gaps" in too_short.output
    missing = runner.invoke(main, ["state", "show", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no state here" in missing.output


def test_a_damaged_state_is_one_line_and_exit_2(tmp_path):
    (tmp_path / state.FILE_NAME).write_bytes(b"SQLite format 3\x00" + bytes(200))
    result = CliRunner().invoke(main, ["state", "show", str(tmp_path)])
    assert result.exit_code == 2 and "state" in result.output
    assert len(result.output.strip().splitlines()) == 1
