"""`gpuwatch serve`: /metrics from the newest scores file, /healthz, optional rescoring.

The HTTP side is waitress (a well-kept pure-Python WSGI server): a bounded thread pool, a cap
on open connections, an idle timeout and a listen backlog. The app serves bytes rendered once
per snapshot (`source.Snapshot`); a request only checks whether the files changed.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..runinfo import RunReport
from .errors import ExportError
from .metrics import run_families
from .source import ScoresSource, render

log = logging.getLogger(__name__)

ROUTES = ("/", "/metrics", "/healthz")
METHODS = ("GET", "HEAD")


@dataclass(frozen=True)
class ServerLimits:
    """waitress settings of the exporter (a scrape is one small GET every 15-60 s)."""

    threads: int = 4
    connection_limit: int = 100  # open connections; more wait in the backlog
    channel_timeout: int = 10  # seconds a connection may stay idle or half-sent
    cleanup_interval: int = 5  # seconds between the checks for idle connections
    backlog: int = 128


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


class Exposition:
    """The /metrics body: the snapshot's cached bytes, with the run families of a newer
    scheduled failure in front; each combination is rendered once."""

    def __init__(self, source: ScoresSource, rescorer: Rescorer | None = None) -> None:
        self.source, self.rescorer = source, rescorer
        self._key: tuple[int, int] | None = None
        self._body = b""
        self._lock = threading.Lock()

    def body(self) -> bytes:
        snapshot = self.source.current()
        failure = self.rescorer.failure if self.rescorer else None
        report = snapshot.report if snapshot else None
        if failure and report and (failure.finished_at or 0.0) <= (report.finished_at or 0.0):
            failure = None  # the files are newer than the failed scheduled run
        key = (id(snapshot), id(failure))
        with self._lock:
            if key != self._key:
                run = render(lambda: run_families(failure)) if failure else b""
                if snapshot is not None:
                    run = run or snapshot.run_text
                    self._body = run + snapshot.score_text
                else:
                    self._body = run
                self._key = key
            return self._body


def make_app(source: ScoresSource, rescorer: Rescorer | None = None) -> Callable[..., Any]:
    """WSGI app: /metrics; /healthz (200 ok, 200 degraded while a newer file is refused, 503
    before any scores); / (links). GET and HEAD only."""
    exposition = Exposition(source, rescorer)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        route = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if route not in ROUTES:
            return _answer(start_response, method, "404 Not Found", b"not found\n")
        if method not in METHODS:
            return _answer(
                start_response,
                method,
                "405 Method Not Allowed",
                b"only GET and HEAD\n",
                extra=[("Allow", ", ".join(METHODS))],
            )
        if route == "/metrics":
            return _answer(start_response, method, "200 OK", exposition.body(), CONTENT_TYPE_LATEST)
        if route == "/healthz":
            status, text = health(source)
            return _answer(start_response, method, status, text.encode())
        return _answer(start_response, method, "200 OK", b"gpuwatch exporter: /metrics /healthz\n")

    return app


def health(source: ScoresSource) -> tuple[str, str]:
    """(HTTP status, one line): ok, degraded (serving the last good snapshot) or no scores."""
    snapshot = source.current()
    if snapshot is None:
        return "503 Service Unavailable", f"no scores loaded: {source.error}\n"
    run = snapshot.report.run_id if snapshot.report else "unknown"
    if source.error:
        return "200 OK", f"degraded: serving {snapshot.name} of run {run}; {source.error}\n"
    return "200 OK", f"ok {snapshot.name} run {run}\n"


def _answer(
    start_response: Callable[..., Any],
    method: str,
    status: str,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    start_response(status, headers + (extra or []))
    return [] if method == "HEAD" else [body]


def serve(
    source: ScoresSource,
    host: str,
    port: int,
    rescorer: Rescorer | None = None,
    ready: Callable[[str, int], None] | None = None,
    limits: ServerLimits = ServerLimits(),
) -> None:
    """Serve until SIGTERM/SIGINT; ``ready(host, port)`` is called once listening."""
    from waitress.server import create_server

    try:
        server = create_server(
            make_app(source, rescorer),
            host=host,
            port=port,
            threads=limits.threads,
            connection_limit=limits.connection_limit,
            channel_timeout=limits.channel_timeout,
            cleanup_interval=limits.cleanup_interval,
            backlog=limits.backlog,
            ident="gpuwatch",
            clear_untrusted_proxy_headers=True,
        )
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot listen on {host}:{port}: {exc}") from exc
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if ready:
        ready(str(server.effective_host), int(server.effective_port))
    if rescorer:
        rescorer.start()
    try:
        server.run()  # returns on SystemExit/KeyboardInterrupt after stopping its threads
    finally:
        if rescorer:
            rescorer.stop()
        server.close()
