"""Start real Prometheus, Pushgateway and `gpuwatch serve` processes on loopback for tests."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

STARTUP_SECONDS = 30.0


def need(binary: str) -> str:
    """The binary's path, or skip with the package to install."""
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} not installed (apt-get install prometheus prometheus-pushgateway)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_until(check, what: str, timeout: float = STARTUP_SECONDS):
    """Poll ``check()`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


@contextmanager
def process(args: list[str], log: Path) -> Iterator[subprocess.Popen]:
    """A child process with output in ``log``; terminated (then killed) on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def pushgateway(tmp: Path) -> Iterator[str]:
    binary = need("prometheus-pushgateway")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process(
        [binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        tmp / "pushgateway.log",
    ) as proc:
        wait_until(
            lambda: proc.poll() is None and get(url + "/-/ready")[0] == 200,
            f"pushgateway on {url} (log: {tmp / 'pushgateway.log'})",
        )
        yield url


@contextmanager
def prometheus(tmp: Path, target: str, rule_files: list[Path]) -> Iterator[str]:
    binary = need("prometheus")
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        json.dumps(
            {  # JSON is YAML
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(p) for p in rule_files],
                "scrape_configs": [
                    {"job_name": "gpuwatch", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    url = f"http://127.0.0.1:{port}"
    with process(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        tmp / "prometheus.log",
    ) as proc:
        wait_until(
            lambda: proc.poll() is None and get(url + "/-/ready")[0] == 200,
            f"prometheus on {url} (log: {tmp / 'prometheus.log'})",
        )
        yield url


@contextmanager
def gpuwatch_serve(tmp: Path, scores: Path, *extra: str) -> Iterator[str]:
    """`gpuwatch serve --port 0` as a child process; yields its base URL."""
    log = tmp / "serve.log"
    args = [
        sys.executable,
        "-c",
        "from detector.cli import main; main()",
        "serve",
        "--scores",
        str(scores),
        "--port",
        "0",
        *extra,
    ]
    with process(args, log) as proc:

        def bound() -> str | None:
            if proc.poll() is not None:
                pytest.fail(f"gpuwatch serve exited: {log.read_text()}")
            for line in log.read_text().splitlines():
                if line.startswith("serving http://"):
                    return line.split()[1].removesuffix("/metrics")
            return None

        yield wait_until(bound, "gpuwatch serve to listen")


def query(prometheus_url: str, promql: str) -> list[dict]:
    status, body = get(
        prometheus_url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    )
    assert status == 200, body
    return json.loads(body)["data"]["result"]
