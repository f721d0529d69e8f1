"""Load on `gpuwatch serve`'s /metrics over loopback: requests/s and latency percentiles.

    python bench/serve_load.py [--clients 20] [--seconds 5] [--scores out/scores.parquet]

Starts `gpuwatch serve` on the scores (default: a fresh score of the bundled samples), runs
CLIENTS threads that each GET /metrics over one keep-alive connection for SECONDS, and prints
requests/s, p50/p99 latency and errors. The suite runs a short version (no timing asserted).
"""

from __future__ import annotations

import argparse
import http.client
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data" / "samples"


@dataclass
class Load:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    bodies: set[bytes]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def hammer(url: str, clients: int = 20, seconds: float = 2.0, path: str = "/metrics") -> Load:
    """``clients`` threads GET ``url + path`` for ``seconds``, one keep-alive connection each."""
    where = urlsplit(url)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    bodies: set[bytes] = set()
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
        start.wait()
        while time.monotonic() < deadline[0]:
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                ok = response.status == 200
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
                ok, body = False, b""
            latencies[i].append((time.perf_counter() - t0) * 1000.0)
            if ok:
                bodies.add(body)
            else:
                errors[i] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    t0 = time.monotonic()
    deadline[0] = t0 + seconds
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - t0
    flat = [x for per in latencies for x in per]
    return Load(len(flat), sum(errors), elapsed, flat, bodies)


@contextmanager
def serving(scores: Path, log: Path) -> Iterator[str]:
    """`gpuwatch serve --port 0` on ``scores``; yields its base URL."""
    args = [sys.executable, "-m", "detector", "serve", "--scores", str(scores), "--port", "0"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        for _ in range(300):
            lines = [x for x in log.read_text().splitlines() if x.startswith("serving http://")]
            if lines:
                yield lines[0].split()[1].removesuffix("/metrics")
                return
            if proc.poll() is not None:
                raise RuntimeError(log.read_text())
            time.sleep(0.1)
        raise RuntimeError("gpuwatch serve did not start")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--scores", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpuwatch-load-") as tmp:
        measure(args.clients, args.seconds, args.scores, Path(tmp))


def measure(clients: int, seconds: float, scores: Path | None, work: Path) -> None:
    if scores is None:
        scores = work / "scores.parquet"
        subprocess.run(
            [sys.executable, "-m", "detector", "-q", "score", "--telemetry",
             str(SAMPLES / "telemetry.parquet"), "--access", str(SAMPLES / "access.jsonl.gz"),
             "--tenants", str(SAMPLES / "tenants.csv"), "--model-dir",
             str(ROOT / "models" / "default"), "--out", str(scores), "--format", "json"],
            check=True, capture_output=True, cwd=ROOT,
        )  # fmt: skip
    with serving(scores, work / "serve.log") as url:
        hammer(url, 2, 0.5)  # warm up: the first request loads and renders the snapshot
        load = hammer(url, clients, seconds)
    size = len(next(iter(load.bodies), b""))
    print(
        f"{clients} clients, {load.seconds:.1f} s, /metrics of {size} bytes: "
        f"{load.requests} requests, {load.per_second:,.0f} req/s, "
        f"p50 {load.percentile(0.50):.1f} ms, p99 {load.percentile(0.99):.1f} ms, "
        f"{load.errors} errors"
    )


if __name__ == "__main__":
    main()
