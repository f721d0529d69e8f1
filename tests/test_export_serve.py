"""The exporter: cached exposition, last good snapshot, methods, and the real waitress server
(idle timeout, connection cap, HEAD, a bounded load on loopback)."""

from __future__ import annotations

import http.client
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit
from wsgiref.util import setup_testing_defaults

import pytest
from export_fixtures import run_report, scores_frame
from prometheus_client.parser import text_string_to_metric_families

from detector.export import ExportOptions, write_run_sidecar
from detector.export.serve import ServerLimits, make_app
from detector.export.source import ScoresSource

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from serve_load import hammer  # noqa: E402


def write_set(path: Path, scores=None, report=None) -> None:
    (scores if scores is not None else scores_frame()).to_parquet(path)
    write_run_sidecar(path, report or run_report())


def call(app, method: str, route: str) -> tuple[str, dict[str, str], bytes]:
    environ: dict = {"REQUEST_METHOD": method, "PATH_INFO": route, "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    answer: dict = {}

    def start_response(status, headers):
        answer["status"], answer["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], body


def test_metrics_are_rendered_once_per_snapshot(tmp_path):
    path = tmp_path / "scores.parquet"
    write_set(path)
    app = make_app(ScoresSource(path, ExportOptions()))
    first, second = call(app, "GET", "/metrics")[2], call(app, "GET", "/metrics")[2]
    assert first is second  # the same cached bytes, not a new rendering
    names = {f.name for f in text_string_to_metric_families(first.decode())}
    assert {"gpuwatch_last_run_success", "gpuwatch_tenant_risk_score"} <= names
    write_set(path, scores_frame().assign(risk_score=50.0))
    assert b'gpuwatch_tenant_risk_score{tenant="a"} 50.0' in call(app, "GET", "/metrics")[2]


def test_a_null_tenant_does_not_replace_the_good_snapshot(tmp_path):
    path = tmp_path / "scores.parquet"
    write_set(path)
    source = ScoresSource(path, ExportOptions())
    app = make_app(source)
    good = call(app, "GET", "/metrics")[2]
    assert call(app, "GET", "/healthz")[2].startswith(b"ok scores.parquet run r1")
    broken = scores_frame().astype({"tenant_id": object})
    broken.loc[2, "tenant_id"] = None
    write_set(path, broken)
    status, _, body = call(app, "GET", "/metrics")
    assert status == "200 OK" and body == good
    status, _, health = call(app, "GET", "/healthz")
    assert status == "200 OK" and health.startswith(b"degraded: serving scores.parquet of run r1")
    assert b"tenant_id" in health and b"row 3" in health
    for route in ("/metrics", "/healthz", "/"):
        assert str(tmp_path).encode() not in call(app, "GET", route)[2]


def test_a_report_of_another_run_is_refused(tmp_path):
    path = tmp_path / "scores.parquet"
    other = run_report()
    other.run_id = "r2"
    write_set(path, report=other)
    source = ScoresSource(path, ExportOptions())
    assert source.current() is None
    assert "run report is of run r2, the scores of r1" in (source.error or "")
    assert str(tmp_path) not in (source.error or "")


def test_no_scores_is_503_without_the_folder(tmp_path):
    app = make_app(ScoresSource(tmp_path / "scores.parquet", ExportOptions()))
    status, _, body = call(app, "GET", "/healthz")
    assert status.startswith("503") and str(tmp_path).encode() not in body


def test_head_and_other_methods(tmp_path):
    path = tmp_path / "scores.parquet"
    write_set(path)
    app = make_app(ScoresSource(path, ExportOptions()))
    for route in ("/metrics", "/healthz", "/"):
        status, headers, body = call(app, "GET", route)
        head_status, head_headers, head_body = call(app, "HEAD", route)
        assert (head_status, head_headers, head_body) == (status, headers, b"")
        assert int(headers["Content-Length"]) == len(body)
        for method in ("PUT", "DELETE", "POST", "PATCH"):
            status, headers, _ = call(app, method, route)
            assert status.startswith("405") and headers["Allow"] == "GET, HEAD"
    assert call(app, "GET", "/nope")[0].startswith("404")


@contextmanager
def server(scores: Path, log: Path, **limits: int) -> Iterator[str]:
    """The real waitress exporter in a child process, with ``limits`` (ServerLimits)."""
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from detector.export import ExportOptions\n"
        "from detector.export.serve import ServerLimits, serve\n"
        "from detector.export.source import ScoresSource\n"
        f"serve(ScoresSource(Path({str(scores)!r}), ExportOptions()), '127.0.0.1', 0,\n"
        "      ready=lambda h, p: print(f'serving http://{h}:{p}', flush=True),\n"
        f"      limits=ServerLimits(**{limits!r}))\n"
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    try:
        for _ in range(300):
            if line := [x for x in log.read_text().splitlines() if x.startswith("serving")]:
                yield line[0].split()[1]
                break
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        else:
            pytest.fail("the exporter did not start")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def half_sent(url: str) -> socket.socket:
    where = urlsplit(url)
    sock = socket.create_connection((where.hostname, where.port), timeout=10)
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    return sock


def test_waitress_closes_idle_connections_and_caps_them(tmp_path):
    path = tmp_path / "scores.parquet"
    write_set(path)
    with server(path, tmp_path / "serve.log", channel_timeout=1, cleanup_interval=1,
                connection_limit=6) as url:  # fmt: skip
        held = [half_sent(url) for _ in range(4)]  # the cap counts 2 of its own sockets
        where = urlsplit(url)
        waiting = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
        t0 = time.monotonic()
        waiting.request("GET", "/healthz")  # queued in the backlog until the idle ones close
        assert waiting.getresponse().status == 200
        assert time.monotonic() - t0 >= 0.5  # it was not served while the cap was full
        for sock in held:
            sock.settimeout(10)
            assert sock.recv(100) == b""  # closed by the server after the idle timeout
            sock.close()
        head = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
        head.request("HEAD", "/metrics")
        response = head.getresponse()
        assert response.status == 200 and response.read() == b""
        assert int(response.headers["Content-Length"]) > 1000
        head.request("DELETE", "/healthz")
        assert head.getresponse().status == 405


def test_bounded_load_on_loopback(tmp_path):
    """20 clients for 2 s; bench/serve_load.py reports the rates (not asserted here)."""
    path = tmp_path / "scores.parquet"
    write_set(path)
    with server(path, tmp_path / "serve.log") as url:
        load = hammer(url, clients=20, seconds=2.0)
    print(f"{load.per_second:.0f} req/s, p99 {load.percentile(0.99):.1f} ms")
    assert load.errors == 0 and load.requests >= 20
    assert len(load.bodies) == 1  # every client got the same cached exposition


def test_readme_states_the_server_limits():
    readme = (ROOT / "README.md").read_text().replace("\n", " ")
    limits = ServerLimits()
    for text in (
        f"waitress ({limits.threads} threads",
        f"at most {limits.connection_limit} open connections",
        f"closed after {limits.channel_timeout} s",
        f"listen backlog {limits.backlog};",
    ):
        assert text in readme
