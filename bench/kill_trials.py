"""kill -9 `gpuwatch score` at random points; count torn, mismatched and leftover outputs.

Each trial starts a run on the bundled samples plus a small telemetry file with a different
number of bad rows (so each run's quarantine differs), kills it with SIGKILL either at a random
time or a random moment after its write phase began, and checks the visible set:

- torn: a file that does not parse (scores, run report, quarantine, metrics);
- mismatched: files of different runs (scores' run_id vs the report; quarantine rows vs the
  report's count; metrics' last success time and sessions vs the report), read both through
  the user's paths and resolved once, as `gpuwatch serve` reads them;
- leftover: a staging folder, link temp or partition folder of a killed run still present once
  a later run has started writing, or after the final complete run; any file in the output
  folder besides the four links and the hidden run folder; a process of the killed run (a
  forked worker) still alive 0.5 s after the kill.

A reader thread resolves and checks the set throughout, as `serve` would while runs swap.

    python bench/kill_trials.py 100 --out bench/kill_trials.md
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data" / "samples"
VISIBLE = {"scores.parquet", "scores.parquet.run.json", "scores.quarantine.csv", "gpuwatch.prom"}


@dataclass
class Counts:
    trials: int = 0
    aimed_at_write: int = 0
    killed_before_commit: int = 0
    finished: int = 0  # ended before the kill came: succeeded
    failed: int = 0  # ended before the kill came: an error (e.g. refused by the lock)
    torn: int = 0
    mismatched: int = 0
    leftover: int = 0
    reader_checks: int = 0
    reader_mismatched: int = 0
    problems: list[str] = field(default_factory=list)


def bad_rows_file(folder: Path, k: int) -> Path:
    """A telemetry CSV with ``k`` rows out of range (quarantined) and one good row."""
    path = folder / f"extra-{k}.csv"
    lines = ["timestamp,tenant_id,host,gpu,gpu_util"]
    lines += [f"2026-01-01T00:0{i % 10}:00Z,ktrial,h1,0,{150 + i}" for i in range(k)]
    lines.append("2026-01-01T00:00:00Z,ktrial,h1,0,50")
    path.write_text("\n".join(lines) + "\n")
    return path


def command(out: Path, extra: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "detector",
        "-q",
        "score",
        "--telemetry",
        str(SAMPLES / "telemetry.parquet"),
        "--telemetry",
        str(extra),
        "--access",
        str(SAMPLES / "access.jsonl.gz"),
        "--tenants",
        str(SAMPLES / "tenants.csv"),
        "--registry",
        str(ROOT / "models"),
        "--out",
        str(out / "scores.parquet"),
        "--metrics-file",
        str(out / "gpuwatch.prom"),
        "--format",
        "json",
    ]


def check_set(folder: Path, names: dict[str, str]) -> tuple[str | None, str | None]:
    """(torn, mismatched) description of the set in ``folder`` (None when fine)."""
    try:
        scores = pd.read_parquet(folder / names["scores"])
        report = json.loads((folder / names["report"]).read_text())
        quarantine = pd.read_csv(folder / names["quarantine"])
        metrics = {
            s.name: s.value
            for f in text_string_to_metric_families((folder / names["metrics"]).read_text())
            for s in f.samples
        }
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 (any parse failure is a torn file)
        return f"torn: {exc!r}", None
    quarantined = sum(q["rows"] for q in report["rows_quarantined"])
    problems = []
    if set(scores["run_id"]) != {report["run_id"]}:
        problems.append(f"scores {set(scores['run_id'])} vs report {report['run_id']}")
    if len(quarantine) != quarantined:
        problems.append(f"quarantine {len(quarantine)} rows vs report {quarantined}")
    if metrics.get("gpuwatch_last_success_timestamp_seconds") != report["finished_at"]:
        problems.append("metrics' last success time differs from the report")
    if metrics.get("gpuwatch_sessions_scored") != report["sessions"] or report["sessions"] != len(
        scores
    ):
        problems.append("metrics' sessions differ from the report or the scores")
    return None, "; ".join(problems) or None


USER_NAMES = {
    "scores": "scores.parquet",
    "report": "scores.parquet.run.json",
    "quarantine": "scores.quarantine.csv",
    "metrics": "gpuwatch.prom",
}
RUN_NAMES = {
    "scores": "scores.parquet",
    "report": "scores.parquet.run.json",
    "quarantine": "quarantine.csv",
    "metrics": "metrics.prom",
}


def leftovers(out: Path, tmpdir: Path) -> set[str]:
    """Names a killed run may leave: staging folders, link temps, partition folders."""
    root = out / ".scores.parquet.runs"
    found = {p.name for p in root.glob(".staging-*")} if root.is_dir() else set()
    found |= {p.name for p in out.glob(".link-*")}
    found |= {p.name for p in tmpdir.glob("gpuwatch-parts-*")}
    return found


def survivors(out: Path) -> list[int]:
    """Live processes whose command line names ``out`` (a killed run's orphaned workers)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(out).encode() in cmdline.read_bytes():
                stat = cmdline.with_name("stat").read_text()
                if not stat.split(") ")[1].startswith("Z"):
                    pids.append(int(cmdline.parent.name))
        except (OSError, IndexError):
            continue
    return pids


def reader(out: Path, stop: threading.Event, counts: Counts) -> None:
    """Resolve the current run once and check its set, over and over, during the trials."""
    while not stop.is_set():
        real = Path(os.path.realpath(out / "scores.parquet"))
        if real.is_file():
            try:
                torn, mismatched = check_set(real.parent, RUN_NAMES)
            except FileNotFoundError:  # pruned two swaps later: read the new current
                continue
            counts.reader_checks += 1
            if torn or mismatched:
                counts.reader_mismatched += 1
                counts.problems.append(f"reader: {torn or mismatched}")
        time.sleep(0.2)


def run_trials(n: int, seed: int, work: Path) -> Counts:
    rng = random.Random(seed)
    out, tmpdir = work / "out", work / "tmp"
    out.mkdir(parents=True, exist_ok=True)
    tmpdir.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": str(ROOT)}
    extras = [bad_rows_file(work, k) for k in range(1, 6)]
    t0 = time.monotonic()
    subprocess.run(command(out, extras[0]), env=env, check=True, capture_output=True)
    duration = time.monotonic() - t0
    counts = Counts()
    stop = threading.Event()
    watcher = threading.Thread(target=reader, args=(out, stop, counts), daemon=True)
    watcher.start()
    pending: set[str] = set()
    root = out / ".scores.parquet.runs"
    for trial in range(n):
        before = os.readlink(root / "current")
        proc = subprocess.Popen(
            command(out, extras[trial % len(extras)]),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        own = f".staging-*-{proc.pid}"  # this run's (a killed run's may still be there)
        aimed = trial % 2 == 1
        if aimed:  # a random moment after the write phase began
            counts.aimed_at_write += 1
            while proc.poll() is None and not list(root.glob(own)):
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.4))
        else:
            time.sleep(rng.uniform(0.0, duration * 1.1))
        if list(root.glob(own)) and pending:  # this run has tidied: check the last
            stale = pending & leftovers(out, tmpdir)
            counts.leftover += len(stale)
            counts.problems += [f"trial {trial}: left over {name}" for name in sorted(stale)]
            pending.clear()
        proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate()
        if proc.returncode == 0:
            counts.finished += 1
        elif proc.returncode != -signal.SIGKILL:
            counts.failed += 1
            counts.problems.append(f"trial {trial}: exit {proc.returncode}: {stderr.decode()}")
        time.sleep(0.5)
        orphans = survivors(out)
        counts.leftover += len(orphans)
        counts.problems += [f"trial {trial}: process {pid} outlived the run" for pid in orphans]
        for pid in orphans:
            os.kill(pid, signal.SIGKILL)
        counts.trials += 1
        counts.killed_before_commit += os.readlink(root / "current") == before
        torn, mismatched = check_set(out, USER_NAMES)
        counts.torn += torn is not None
        counts.mismatched += mismatched is not None
        counts.problems += [f"trial {trial}: {p}" for p in (torn, mismatched) if p]
        extra = {p.name for p in out.iterdir() if not p.name.startswith(".")} - VISIBLE
        counts.leftover += len(extra)
        counts.problems += [f"trial {trial}: visible extra file {name}" for name in sorted(extra)]
        pending |= leftovers(out, tmpdir)
    final = subprocess.run(command(out, extras[0]), env=env, capture_output=True)
    if final.returncode != 0:
        counts.failed += 1
        counts.problems.append(f"the final run: exit {final.returncode}: {final.stderr.decode()}")
    stop.set()
    watcher.join()
    remaining = leftovers(out, tmpdir)
    counts.leftover += len(remaining)
    counts.problems += [f"after the final run: left over {name}" for name in sorted(remaining)]
    runs = [p.name for p in root.iterdir() if p.name not in ("lock", "current")]
    if len(runs) > 2:
        counts.leftover += len(runs) - 2
        counts.problems.append(f"after the final run: {len(runs)} run folders")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trials", type=int, nargs="?", default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="Markdown file for the counts.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gpuwatch-kill-"))
    try:
        counts = run_trials(args.trials, args.seed, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"kill -9 trials of `gpuwatch score` (seed {args.seed}):",
        "",
        f"- trials: {counts.trials} ({counts.aimed_at_write} aimed at the write phase, "
        f"{counts.killed_before_commit} killed before their commit, {counts.finished} finished "
        f"before the kill, {counts.failed} failed on their own)",
        f"- torn: {counts.torn}",
        f"- mismatched: {counts.mismatched}",
        f"- leftover: {counts.leftover}",
        f"- concurrent reader: {counts.reader_checks} checks, "
        f"{counts.reader_mismatched} torn or mismatched",
        *[f"  - {p}" for p in counts.problems[:20]],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
