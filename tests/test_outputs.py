"""The output set of `gpuwatch score`: one swap for all files, a lock, a killed run's leftovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from factories import SAMPLE_INPUTS, SAMPLES

from detector.engine.scratch import PREFIX, remove_stale, scratch_dir
from detector.model.registry import Registry
from detector.outputs import CURRENT, OutputError, OutputSet


def outputs(tmp_path: Path, metrics: bool = True) -> OutputSet:
    return OutputSet(
        tmp_path / "scores.parquet",
        tmp_path / "scores.quarantine.csv",
        tmp_path / "prom" / "gpuwatch.prom" if metrics else None,
    )


def write_run(out: OutputSet, run_id: str) -> Path:
    """Stage and commit a set whose every file holds ``run_id``."""
    with out.stage(run_id) as stage:
        for path in (stage.scores, stage.quarantine, stage.metrics):
            if path is not None:
                path.write_text(run_id)
        stage.scores.with_name(stage.scores.name + ".run.json").write_text(run_id)
        return out.commit(stage, run_id)


def visible(out: OutputSet) -> set[str]:
    return {path.read_text() for path in out.members().values()}


def test_commit_swaps_every_file_at_once_through_relative_links(tmp_path):
    (tmp_path / "prom").mkdir()
    out = outputs(tmp_path)
    with out.locked():
        write_run(out, "r1")
        assert visible(out) == {"r1"}
        write_run(out, "r2")
        assert visible(out) == {"r2"}
        write_run(out, "r3")
    for path in out.members().values():
        assert path.is_symlink() and not os.path.isabs(os.readlink(path))
    assert (tmp_path / "scores.parquet.run.json").read_text() == "r3"
    # the new set and the one before it (for a reader that resolved `current` just before)
    assert sorted(p.name for p in out.root.iterdir()) == [CURRENT, "lock", "r2", "r3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".scores.parquet.runs",
        "prom",
        "scores.parquet",
        "scores.parquet.run.json",
        "scores.quarantine.csv",
    ]


def test_a_run_that_fails_before_commit_leaves_the_previous_set(tmp_path):
    out = outputs(tmp_path, metrics=False)
    with out.locked():
        write_run(out, "r1")
        with pytest.raises(RuntimeError), out.stage("r2") as stage:
            stage.scores.write_text("r2")
            raise RuntimeError("killed")
    assert visible(out) == {"r1"}
    assert sorted(p.name for p in out.root.iterdir()) == [CURRENT, "lock", "r1"]


def test_carry_keeps_the_last_files_and_replaces_only_the_new_ones(tmp_path):
    (tmp_path / "prom").mkdir()
    out = outputs(tmp_path)
    with out.locked():
        write_run(out, "r1")
        with out.stage("r1-failed") as stage:
            out.carry(stage)
            assert stage.metrics is not None
            stage.metrics.unlink()  # replaced, never written through the shared hard link
            stage.metrics.write_text("failed")
            out.commit(stage, "r1-failed")
    assert out.metrics is not None and out.metrics.read_text() == "failed"
    assert out.scores.read_text() == "r1"
    assert (out.root / "r1" / "metrics.prom").read_text() == "r1"


def test_second_writer_fails_with_one_line_or_waits(tmp_path):
    out = outputs(tmp_path, metrics=False)
    refused = pytest.raises(OutputError, match=rf"pid {os.getpid()}.*--wait SECONDS")
    with out.locked(), refused, out.locked(wait=0.3):
        pass
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from detector.outputs import OutputSet\n"
            f"o = OutputSet(Path({str(out.scores)!r}), Path({str(out.quarantine)!r}))\n"
            "with o.locked():\n    print('locked', flush=True); time.sleep(1.0)\n",
        ],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
    t0 = time.monotonic()
    with out.locked(wait=30):
        waited = time.monotonic() - t0
    holder.wait(timeout=30)
    assert waited > 0.2  # it did wait for the other process, then got the lock


def started_with_worker(code: str) -> tuple[subprocess.Popen, int]:
    """Run `code` in a new Python that prints the pid of the worker it forks; both pids."""
    run = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert run.stdout is not None
    return run, int(run.stdout.readline())


def test_a_killed_run_does_not_leave_the_lock_to_its_forked_workers(tmp_path):
    out = outputs(tmp_path, metrics=False)
    code = (
        "import os, sys, time\nfrom pathlib import Path\nfrom detector.outputs import OutputSet\n"
        f"o = OutputSet(Path({str(out.scores)!r}), Path({str(out.quarantine)!r}))\n"
        "with o.locked():\n"
        "    child = os.fork()\n"
        "    if child == 0:\n"
        "        time.sleep(30); os._exit(0)\n"
        "    print(child, flush=True); time.sleep(30)\n"
    )
    run, worker = started_with_worker(code)
    try:
        run.kill()  # kill -9: the forked worker lives on, an orphan
        run.wait(timeout=10)
        os.kill(worker, 0)  # still alive
        with out.locked(wait=5):
            pass
    finally:
        os.kill(worker, signal.SIGKILL)


def test_next_run_removes_what_a_killed_run_left(tmp_path):
    out = outputs(tmp_path, metrics=False)
    with out.locked():
        write_run(out, "r1")
        write_run(out, "r2")
    (out.root / ".staging-r3-4242").mkdir()
    (out.root / ".staging-r3-4242" / "scores.parquet").write_text("half")
    (out.root / "r4").mkdir()  # renamed, never swapped in
    os.symlink("x", tmp_path / ".link-scores.parquet-4242")
    os.symlink("x", tmp_path / ".link-other.parquet-4242")  # another output's: kept
    with out.locked():
        assert sorted(p.name for p in out.root.iterdir()) == [CURRENT, "lock", "r2"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".link")) == [
        ".link-other.parquet-4242"
    ]
    assert visible(out) == {"r2"}


def test_plain_files_of_an_older_version_become_the_first_set(tmp_path):
    out = outputs(tmp_path, metrics=False)
    out.scores.write_text("old scores")
    out.quarantine.write_text("old quarantine")
    with out.locked():
        assert out.scores.is_symlink() and out.scores.read_text() == "old scores"
        assert out.quarantine.read_text() == "old quarantine"
        write_run(out, "r1")
    assert visible(out) == {"r1"}


def test_partition_folders_of_ended_processes_are_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    stale = tmp_path / f"{PREFIX}{dead.stdout.strip()}-abc"
    (stale / "part-0").mkdir(parents=True)
    mine = tmp_path / f"{PREFIX}{os.getpid()}-def"
    mine.mkdir()
    other = tmp_path / "gpuwatch-parts-notapid"
    other.mkdir()
    with scratch_dir(tmp_path) as made:
        assert Path(made).name.startswith(f"{PREFIX}{os.getpid()}-")
        assert not stale.exists() and mine.exists() and other.exists()
    assert remove_stale(tmp_path) == []


def gone(pid: int) -> bool:
    """The process has ended (a zombie not yet reaped counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
def test_a_killed_runs_workers_end_with_it():
    code = (
        "import multiprocessing, time\n"
        "from detector.engine.partition import one_thread\n"
        "def work():\n    one_thread(); time.sleep(60)\n"
        "worker = multiprocessing.get_context('fork').Process(target=work)\n"
        "worker.start(); print(worker.pid, flush=True); time.sleep(60)\n"
    )
    run, worker = started_with_worker(code)
    time.sleep(0.5)  # let the worker run its initializer
    assert not gone(worker)
    run.kill()
    run.wait(timeout=10)
    deadline = time.monotonic() + 10
    while not gone(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not gone(worker):
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived its killed parent")


MODEL = Registry(SAMPLES.parent.parent / "models").path()  # the promoted model


def score_args(tmp_path: Path, model: Path = MODEL) -> list[str]:
    return [
        "score",
        *SAMPLE_INPUTS,
        "--model-dir",
        str(model),
        "--out",
        str(tmp_path / "scores.parquet"),
        "--metrics-file",
        str(tmp_path / "gpuwatch.prom"),
        "--format",
        "json",
    ]


def test_score_refuses_a_locked_output_with_one_line(tmp_path):
    from click.testing import CliRunner

    from detector.cli import main

    out = OutputSet(tmp_path / "scores.parquet", tmp_path / "scores.quarantine.csv")
    with out.locked():
        result = CliRunner().invoke(main, score_args(tmp_path))
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "another gpuwatch run" in result.output
    assert not out.scores.exists()


def test_a_failed_score_keeps_the_last_set_and_marks_the_run_failed(tmp_path):
    from click.testing import CliRunner
    from prometheus_client.parser import text_string_to_metric_families

    from detector.cli import main

    ok = CliRunner().invoke(main, score_args(tmp_path))
    assert ok.exit_code == 0, ok.output
    run_id = json.loads(ok.output)["run_id"]
    failed = CliRunner().invoke(main, score_args(tmp_path, model=tmp_path / "no-model"))
    assert failed.exit_code == 2
    report = json.loads((tmp_path / "scores.parquet.run.json").read_text())
    assert report["run_id"] == run_id
    assert set(pd.read_parquet(tmp_path / "scores.parquet")["run_id"]) == {run_id}
    metrics = {
        s.name: s.value
        for f in text_string_to_metric_families((tmp_path / "gpuwatch.prom").read_text())
        for s in f.samples
    }
    assert metrics["gpuwatch_last_run_success"] == 0.0
    assert metrics["gpuwatch_last_success_timestamp_seconds"] == report["finished_at"]
    assert metrics["gpuwatch_sessions_scored"] == report["sessions"]
