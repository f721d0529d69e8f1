"""Exit codes (README): 0 ok, 1 alerts with --fail-on-alert (test_cli.py), 2 bad input or
usage, 3 internal error, 130 interrupted; every error one line, never a traceback. The start-up
and Ctrl-C cases run the real console script."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from detector.cli import Instant, main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
GPUWATCH = Path(sys.executable).with_name("gpuwatch")
INPUTS = [
    "--telemetry",
    str(SAMPLES / "telemetry.parquet"),
    "--access",
    str(SAMPLES / "access.jsonl.gz"),
]
HEAVY = ("sklearn", "skops", "shap", "pandas", "pyarrow", "dask", "requests", "rich.progress")


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output.strip().splitlines()


def test_importing_the_cli_imports_no_heavy_library():
    code = f"import sys, detector.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_console_script_success_and_usage_error():
    ok = subprocess.run([GPUWATCH, "features", "--format", "json"], capture_output=True)
    assert ok.returncode == 0 and b"restricted_compute" in ok.stdout and not ok.stderr
    bad = subprocess.run([GPUWATCH, "score", "--out", "x.parquet"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == [
        "Error: Missing option '--access'. (see 'gpuwatch score --help')"
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nosuchcommand"], "No such command 'nosuchcommand'"),
        (["score", *INPUTS, "--model-dir", "m"], "Missing option '--out'"),
        (["score", *INPUTS, "--model-dir", "m", "--out", "s.parquet", "--top", "x"], "'x'"),
        (["train", *INPUTS, "--model-dir", "m", "--engine", "spark"], "'spark' is not one of"),
        (["train", *INPUTS, "--model-dir", "m", "--tenant-map", "/nonexistent"], "/nonexistent"),
        (["train", *INPUTS, "--model-dir", "m", "--since", "yesterday"], "not an ISO 8601"),
        (["train", *INPUTS, "--model-dir", "m", "--since", ""], "not an ISO 8601"),
        (
            [
                "train",
                *INPUTS,
                "--model-dir",
                "m",
                "--since",
                "2026-10-07",
                "--until",
                "2026-10-06",
            ],
            "the window is empty",
        ),
        (
            [
                "train",
                *INPUTS,
                "--model-dir",
                "m",
                "--since",
                "2026-10-06T08:00:00+08:00",
                "--until",
                "2026-10-06T00:00:00Z",
            ],
            "the window is empty",
        ),
        (["score", "--access", "a", "--model-dir", "m", "--out", "s.parquet"], "--telemetry"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(tmp_path, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    code, lines = invoke(*args)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("Error: ") and expected in lines[0]


def test_misspelt_settings_name_the_nearest_valid_one(tmp_path):
    code, lines = invoke("features", env={"GPUWATCH_SESIONS_GAP_SECONDS": "900"})
    assert code == 2 and len(lines) == 1
    assert "did you mean 'GPUWATCH_SESSIONS_GAP_SECONDS'" in lines[0]
    policy = tmp_path / "policy.toml"
    policy.write_text("[scoring]\nalert_risc = 80\n")
    code, lines = invoke("--config", str(policy), "features")
    assert code == 2 and len(lines) == 1 and "did you mean 'alert_risk'" in lines[0]
    policy.write_text("[sesions]\ngap_seconds = 80\n")
    code, lines = invoke("--config", str(policy), "features")
    assert code == 2 and len(lines) == 1 and "did you mean 'sessions'" in lines[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-10-06", datetime(2026, 10, 6, tzinfo=UTC)),
        ("2026-10-06T00:00:00Z", datetime(2026, 10, 6, tzinfo=UTC)),
        ("2026-10-06T08:00:00+08:00", datetime(2026, 10, 6, tzinfo=UTC)),
        ("2026-10-05T19:30-04:30", datetime(2026, 10, 6, tzinfo=UTC)),
        ("2026-10-06 00:00:00", datetime(2026, 10, 6, tzinfo=UTC)),
        ("2026-10-06T00:00:00.250Z", datetime(2026, 10, 6, 0, 0, 0, 250_000, tzinfo=UTC)),
    ],
)
def test_since_and_until_take_iso_8601_as_utc(text, expected):
    assert Instant().convert(text, None, None) == expected


@pytest.mark.parametrize("text", ["", "06/10/2026", "2026-13-01", "now", "2026-10-06T25:00"])
def test_since_and_until_refuse_what_is_not_iso_8601(text):
    with pytest.raises(click.BadParameter, match="ISO 8601"):
        Instant().convert(text, None, None)


@pytest.mark.parametrize("option", ["--out", "--metrics-file", "--quarantine"])
def test_an_unusable_output_path_stops_the_run_before_any_work(tmp_path, option):
    outputs = {"--out": str(tmp_path / "s.parquet")}
    outputs[option] = str(tmp_path / "missing" / "x.out")
    args = ["score", "--telemetry", str(tmp_path / "not-read-yet.parquet"), "--access", "a"]
    args += ["--model-dir", str(tmp_path / "no-model")]
    code, lines = invoke(*args, *[x for pair in outputs.items() for x in pair])
    assert code == 2 and len(lines) == 1, lines
    assert f"folder {tmp_path / 'missing'} does not exist" in lines[0] and option in lines[0]


def test_model_dir_and_out_need_a_folder_to_write_in(tmp_path):
    (tmp_path / "file").write_text("")
    code, lines = invoke("train", *INPUTS, "--model-dir", str(tmp_path / "file" / "m"))
    assert code == 2 and len(lines) == 1 and "does not exist" in lines[0]
    code, lines = invoke(
        "score", *INPUTS, "--model-dir", "m", "--out", str(tmp_path), "--quarantine", "q.csv"
    )
    assert code == 2 and len(lines) == 1 and "is a directory" in lines[0]


def test_an_internal_error_is_one_line_naming_the_logged_traceback(tmp_path, monkeypatch):
    import detector.pipeline

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug\nsalt s3cret-salt in the message")

    monkeypatch.setattr(detector.pipeline, "build_features", broken)
    code, lines = invoke(
        "score",
        *INPUTS,
        "--model-dir",
        str(ROOT / "models" / "default"),
        "--out",
        str(tmp_path / "s.parquet"),
        "--pseudonymize-tenants",
        "--salt",
        "s3cret-salt",
        env={"GPUWATCH_LOG_DIR": str(tmp_path)},
    )
    assert code == 3 and len(lines) == 1, lines
    assert "internal error (ZeroDivisionError: a bug salt *** in the message)" in lines[0]
    logs = list(tmp_path.glob("gpuwatch-*.log"))
    assert len(logs) == 1 and str(logs[0]) in lines[0]
    text = logs[0].read_text()
    assert "Traceback" in text and "in broken" in text and "s3cret-salt" not in text


def _interrupt(marker: str, pause: float, *args: str) -> tuple[int, list[str]]:
    """Start the console script, Ctrl-C its process group once `marker` has been imported
    (PYTHONPROFILEIMPORTTIME reports each import as it happens) and `pause` seconds more."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.Popen(
        [GPUWATCH, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        # as from a terminal: a shell running the suite in the background (`make test &`)
        # ignores SIGINT, and its children would inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("import time:") and line.split("|")[-1].strip() == marker:
            break
    else:
        pytest.fail(f"{marker} was never imported: {''.join(seen[-5:])}")
    time.sleep(pause)
    os.killpg(proc.pid, signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    lines = [ln for ln in (*seen, *rest.splitlines()) if not ln.startswith("import time:")]
    return proc.returncode, [ln.strip() for ln in lines if ln.strip()]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("marker", "pause"),
    [
        ("detector.config", 0),  # while importing the command line itself
        ("pandas", 0),  # while the command imports its libraries
        ("sklearn", 1.0),  # while reading, partitioning (forked workers) or scoring
    ],
)
def test_ctrl_c_at_any_time_exits_130_with_one_line(tmp_path, marker, pause):
    code, lines = _interrupt(
        marker,
        pause,
        "score",
        *INPUTS,
        "--model-dir",
        str(ROOT / "models" / "default"),
        "--out",
        str(tmp_path / "s.parquet"),
        "--partitions",
        "4",
    )
    assert code == 130 and lines == ["Error: interrupted"], lines
