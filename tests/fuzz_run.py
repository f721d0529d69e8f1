"""`make fuzz`: many generated inputs to every reader and to the model loader, with counts.

The inputs are those of tests/test_fuzz.py (`generate`: random bytes, or a reader's seed with 1-5
mutations), drawn from a seeded `random.Random` instead of hypothesis (0.01 ms an input
against about 6 ms). Each reader runs in its own process (at most --jobs at once), so a crash
(a signal) ends only that reader and its last input is kept. Per reader: inputs, clean errors,
tables read (rows read = accepted + quarantined + out of window, checked on every input),
tracebacks and crashes; failing inputs go to --failures; the table goes to --out.

    python tests/fuzz_run.py --inputs 100000 --jobs 2 [--seconds S] --out bench/fuzz_results.md
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "model loader"
FIELDS = ("read", "accepted", "quarantined", "out_of_window")
CPU_START = 0.0  # a worker's CPU time before its first input (imports, seeds)


def fuzz_reader(reader: str, inputs: int, seed: int, deadline: float, status: Path) -> None:
    """Run `reader` on `inputs` generated inputs (or until `deadline`); counts to `status`."""
    import test_fuzz

    logging.disable(logging.CRITICAL)  # unknown-column warnings, thousands of them
    rng = random.Random(f"{reader}:{seed}")
    failures = Path(status.parent)
    tally: dict[str, Any] = {"reader": reader, "work": str(test_fuzz.WORK), "inputs": 0}
    tally |= {k: 0 for k in ("errors", "tables", "tracebacks", "seconds", *FIELDS)}
    tally["failures"] = []
    global CPU_START
    start, last, CPU_START = time.monotonic(), time.monotonic(), time.process_time()
    _write_status(status, tally, start)
    while tally["inputs"] < inputs and time.time() < deadline:
        data = (
            test_fuzz.READERS[reader][3] if not tally["inputs"] else test_fuzz.generate(reader, rng)
        )
        try:
            counts = test_fuzz.check_reader(reader, data)
        except Exception as exc:  # noqa: BLE001 - counting them is the point
            tally["tracebacks"] += 1
            if len(tally["failures"]) < 20:
                saved = failures / f"{reader}-{tally['inputs']}.bin"
                saved.write_bytes(data)
                line = traceback.format_exception_only(exc)[-1].strip()
                tally["failures"].append(f"{saved.name}: {line[:300]}")
        else:
            if counts is None:
                tally["errors"] += 1
            else:
                tally["tables"] += 1
                for name in FIELDS:
                    tally[name] += getattr(counts, name)
        tally["inputs"] += 1
        if time.monotonic() - last > 10:
            last = time.monotonic()
            _write_status(status, tally, start)
    _write_status(status, tally, start)


def fuzz_model(trials: int, seed: int, deadline: float, status: Path) -> None:
    """tests/model_fuzz.py on the promoted model: `trials` damaged copies (or until
    `deadline`); its outcomes to `status`."""
    import model_fuzz

    from detector.model.registry import Registry

    global CPU_START
    start, CPU_START = time.monotonic(), time.process_time()
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="gpuwatch-fuzz-", dir=shm) as tmp:
        result = model_fuzz.run(Registry(ROOT / "models").path(), Path(tmp), trials, seed, deadline)
    outcomes = result["outcomes"]
    tally = {"reader": MODEL, "inputs": result["trials"], "failures": result["failures"]}
    tally |= {"tracebacks": outcomes.get("traceback", 0), "silent": outcomes.get("silent", 0)}
    tally |= {"refused": outcomes.get("refused", 0), "harmless": outcomes.get("harmless", 0)}
    _write_status(status, tally, start)


def _write_status(status: Path, tally: dict[str, Any], start: float) -> None:
    tally["seconds"] = round(time.monotonic() - start, 1)
    tally["cpu"] = round(time.process_time() - CPU_START, 2)
    status.with_suffix(".tmp").write_text(json.dumps(tally))
    status.with_suffix(".tmp").replace(status)


def main() -> int:
    import test_fuzz

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="per reader")
    parser.add_argument("--trials", type=int, default=100_000, help="damaged model folders")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=None, help="time budget for the run")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--readers", nargs="*", default=[*ORDER, MODEL])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "fuzz_results.md")
    parser.add_argument("--failures", type=Path, default=ROOT / "out" / "fuzz-failures")
    parser.add_argument("--append", action="store_true", help="add to --out, e.g. a rerun")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    assert set(ORDER) == set(test_fuzz.READERS)
    if args.worker:
        status = args.failures / f"{args.worker}.json"
        if args.worker == MODEL:
            fuzz_model(args.trials, args.seed, args.deadline, status)
        else:
            fuzz_reader(args.worker, args.inputs, args.seed, args.deadline, status)
        return 0
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    shutil.rmtree(args.failures, ignore_errors=True)
    args.failures.mkdir(parents=True)
    args.before = args.out.read_text() + "\n" if args.append and args.out.exists() else ""
    end = time.time() + args.seconds if args.seconds else float("inf")
    queue, running, results = list(args.readers), {}, {}
    started = time.time()
    written = 0.0
    while queue or running:
        while queue and len(running) < args.jobs:
            reader = queue.pop(0)
            # An even share of the time left, per job: cheap readers first leave theirs to others.
            share = (end - time.time()) * args.jobs / (len(queue) + len(running) + 1)
            deadline = min(end, time.time() + share)
            command = [sys.executable, __file__, "--worker", reader, "--seed", str(seed)]
            command += ["--inputs", str(args.inputs), "--trials", str(args.trials)]
            command += ["--deadline", str(deadline), "--failures", str(args.failures)]
            running[reader] = subprocess.Popen(command)
        time.sleep(1)
        for reader, process in list(running.items()):
            if process.poll() is not None:
                del running[reader]
                results[reader] = _finished(reader, process.returncode, args.failures)
        if time.time() - written > 60 or not (queue or running):
            written = time.time()
            partial = results | {r: _status(r, args.failures) for r in running}
            _report(args, seed, partial, time.time() - started, done=not (queue or running))
    failed = [
        r for r in results.values() if r.get("tracebacks") or r.get("crashes") or r.get("silent")
    ]
    for result in failed:
        print(f"{result['reader']}: {result}", file=sys.stderr)
    print(f"{args.out}: {len(results)} readers, {len(failed)} with failures", file=sys.stderr)
    return 1 if failed else 0


# Cheapest first (ms an input measured here), so the time they leave goes to the costly ones.
ORDER = [
    "json",
    "parquet",
    "gzip",
    "labels",
    "csv",
    "jsonl",
    "cloudtrail",
    "tenants",
    "vpcflow",
    "nvml",
    "sshd",
    "openmetrics",
    "prometheus",
]


def _status(reader: str, failures: Path) -> dict[str, Any]:
    path = failures / f"{reader}.json"
    return json.loads(path.read_text()) if path.exists() else {"reader": reader, "inputs": 0}


def _finished(reader: str, code: int, failures: Path) -> dict[str, Any]:
    """A worker's counts; if it died (a signal, or an exit without counts), a crash, with the
    input it was reading kept in `failures`."""
    result = _status(reader, failures)
    result["crashes"] = 0
    if code != 0:
        result["crashes"] = 1
        work = result.get("work")
        for kept in Path(work).iterdir() if work and Path(work).is_dir() else []:
            shutil.copy(kept, failures / f"{reader}-crash-{kept.name}")
        result.setdefault("failures", []).append(f"exit code {code}")
    if result.get("work"):
        shutil.rmtree(result["work"], ignore_errors=True)
    return result


def _report(args: Any, seed: int, results: dict[str, Any], seconds: float, done: bool) -> None:
    rows, total = [], 0
    for reader in args.readers:
        r = results.get(reader, {"inputs": 0})
        n, target = r["inputs"], args.trials if reader == MODEL else args.inputs
        total += n
        ms = 1000 * r["cpu"] / n if n and r.get("cpu") else None
        left = f"{(target - n) * ms / 3.6e6:.1f} h" if ms and n < target else "-"
        if reader == MODEL:
            outcome = f"{r.get('refused', 0):,} refused, {r.get('harmless', 0):,} harmless"
            outcome += f", {r.get('silent', 0)} silent"
        else:
            outcome = f"{r.get('errors', 0):,} clean errors, {r.get('tables', 0):,} tables"
            outcome += f" ({r.get('read', 0):,} rows = {r.get('accepted', 0):,} accepted"
            outcome += f" + {r.get('quarantined', 0):,} quarantined"
            outcome += f" + {r.get('out_of_window', 0):,} out of window)"
        rows.append(
            f"| {reader} | {n:,} | {outcome} | {r.get('tracebacks', 0)} | {r.get('crashes', 0)}"
            f" | {r.get('seconds', 0):,.0f} | {f'{ms:.2f}' if ms else '-'} | {left} |"
        )
    failures = [f"- {r['reader']}: {f}" for r in results.values() for f in r.get("failures", [])]
    title = "## A further run" if args.before else "# `make fuzz` results"
    lines = [
        f"{title} (generated by tests/fuzz_run.py)",
        "",
        f"{'Finished' if done else 'Running (partial)'}: {total:,} inputs in {seconds:,.0f} s"
        f" wall, {args.jobs} processes at most under the load of a shared 2-core machine; target"
        f" {args.inputs:,} inputs per reader and {args.trials:,} model trials"
        f"{f', time budget {args.seconds:,.0f} s' if args.seconds else ''}; seed {seed}"
        " (`python tests/fuzz_run.py --seed N` repeats the inputs). Wall seconds per reader"
        " (nice 19: other jobs come first), CPU ms per input, and the CPU time the target"
        " still needs at that rate.",
        "",
        "| reader | inputs | outcomes | tracebacks | crashes | seconds | ms/input | to target |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Failures (inputs kept in {args.failures}):" if failures else "Failures: none.",
        *failures,
        "",
    ]
    args.out.write_text(args.before + "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
