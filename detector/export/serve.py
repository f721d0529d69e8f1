"""`gpuwatch serve`: /metrics from the newest scores file, /healthz, optional rescoring."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.core import Metric

from ..runinfo import RunReport
from .collector import registry_of
from .errors import ExportError
from .metrics import run_families, score_families, success_families
from .source import ScoresSource

log = logging.getLogger(__name__)


class Rescorer:
    """Runs ``gpuwatch score ARGS --out OUT`` every ``minutes``; remembers the last failure."""

    def __init__(self, out: Path, minutes: float, args: Iterable[str]) -> None:
        self.out, self.minutes, self.args = out, minutes, list(args)
        self.failure: RunReport | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gpuwatch-rescore", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def run_once(self) -> bool:
        command = [
            sys.executable,
            "-c",
            "from detector.cli import main; main()",
            "score",
            *self.args,
            "--out",
            str(self.out),
        ]
        report = RunReport()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        report.finished_at = time.time()
        if done.returncode == 0:
            self.failure = None
            return True
        log.error(
            "scheduled scoring failed (exit %d): %s",
            done.returncode,
            done.stderr.strip().splitlines()[-1:] or "",
        )
        self.failure = report
        return False

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.minutes * 60.0)


def served_families(
    source: ScoresSource, rescorer: Rescorer | None = None
) -> Callable[[], Iterator[Metric]]:
    """The scrape-time family producer of the exporter."""

    def produce() -> Iterator[Metric]:
        snapshot = source.current()
        failure = rescorer.failure if rescorer else None
        report = snapshot.report if snapshot else None
        if failure is not None and (
            report is None or failure.finished_at > (report.finished_at or 0.0)
        ):
            yield from run_families(failure)
        elif report is not None:
            yield from run_families(report)
        if report is not None and report.success:
            yield from success_families(report)
        if snapshot is not None:
            yield from score_families(snapshot.scores, source.options)

    return produce


def make_app(source: ScoresSource, rescorer: Rescorer | None = None) -> Callable[..., Any]:
    """WSGI app: /metrics, /healthz (200 once scores are loaded, else 503), / (links)."""
    metrics = make_wsgi_app(registry_of(served_families(source, rescorer)))

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        route = environ.get("PATH_INFO", "/")
        if route == "/metrics":
            return metrics(environ, start_response)
        if route == "/healthz":
            snapshot = source.current()
            ok = snapshot is not None
            body = f"ok {snapshot.path}\n" if ok else f"no scores loaded: {source.error}\n"
            return _text(start_response, "200 OK" if ok else "503 Service Unavailable", body)
        if route == "/":
            return _text(start_response, "200 OK", "gpuwatch exporter: /metrics /healthz\n")
        return _text(start_response, "404 Not Found", "not found\n")

    return app


def _text(start_response: Callable[..., Any], status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]
    )
    return [data]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.debug(format, *args)


def serve(
    source: ScoresSource,
    host: str,
    port: int,
    rescorer: Rescorer | None = None,
    ready: Callable[[str, int], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT; ``ready(host, port)`` is called once listening."""
    try:
        server = make_server(host, port, make_app(source, rescorer), _Server, _QuietHandler)
    except OSError as exc:
        raise ExportError(f"cannot listen on {host}:{port}: {exc}") from exc
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if ready:
        ready(host, server.server_port)
    if rescorer:
        rescorer.start()
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if rescorer:
            rescorer.stop()
        server.server_close()
