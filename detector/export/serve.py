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

import click
from prometheus_client import make_wsgi_app
from prometheus_client.core import Metric

from ..errors import GpuwatchError
from ..runinfo import RunReport
from .collector import registry_of
from .errors import ExportError
from .metrics import run_families, score_families, success_families
from .options import options_from_params, series_options
from .source import ScoresSource

log = logging.getLogger(__name__)
DEFAULT_PORT = 9847


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


@click.command("serve", context_settings={"ignore_unknown_options": True})
@click.option(
    "--scores",
    "scores",
    required=True,
    type=click.Path(path_type=Path),
    help="Scores Parquet file, or a folder whose newest *.parquet is served.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="TCP port (0: any free port, printed at start).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; loopback by default, 0.0.0.0 to expose.",
)
@click.option(
    "--schedule",
    type=click.FloatRange(min=0, min_open=True),
    metavar="MINUTES",
    help="Also rescore every MINUTES with `gpuwatch score SCORE_ARGS --out SCORES`.",
)
@series_options
@click.argument("score_args", nargs=-1, type=click.UNPROCESSED)
def serve_command(
    scores: Path,
    port: int,
    host: str,
    schedule: float | None,
    score_args: tuple[str, ...],
    **params: Any,
) -> None:
    """Serve Prometheus metrics of the newest scores (reloaded when the file changes)."""
    options = options_from_params(params)
    if score_args and schedule is None:
        raise click.UsageError("score arguments are only used with --schedule")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = scores / "scores.parquet" if scores.is_dir() else scores
    rescorer = Rescorer(out, schedule, score_args) if schedule else None
    source = ScoresSource(scores, options)

    def ready(bound_host: str, bound_port: int) -> None:
        click.echo(f"serving http://{bound_host}:{bound_port}/metrics", err=False)
        sys.stdout.flush()

    try:
        serve(source, host, port, rescorer, ready)
    except GpuwatchError as exc:
        raise click.ClickException(str(exc)) from exc
