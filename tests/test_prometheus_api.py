"""The Prometheus HTTP client against a real local HTTP server giving planned answers: broken
answers are one-line input errors (exit 2), and no secret reaches a message or a log line."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.errors import InputError
from detector.ingest.prometheus_api import PrometheusSource, read_prometheus
from detector.redact import RedactFilter

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "tok-9f8e7d6c5b4a"
PASSWORD = "pa55-w0rd-x"
SINCE, UNTIL = "2026-10-06T00:00:00Z", "2026-10-06T01:00:00Z"
NAMES = {"status": "success", "data": ["DCGM_FI_DEV_GPU_UTIL"]}
Answer = tuple[int, bytes] | tuple[int, bytes, dict[str, str]]


@contextmanager
def fake_prometheus(answer: Callable[[str], Answer]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1; `answer(path)` -> (status, body[, headers])."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body, *extra = answer(self.path)
            headers = extra[0] if extra else {"Content-Length": str(len(body))}
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            # the client may stop reading, as it should for a huge body
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def range_answer(body: object, status: int = 200) -> Callable[[str], Answer]:
    """Metric names as usual; every query_range answered with `body` (bytes or JSON)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()

    def answer(path: str) -> Answer:
        if path.startswith("/api/v1/label/"):
            return 200, json.dumps(NAMES).encode()
        return status, raw

    return answer


def cli(*args: str) -> tuple[int, str]:
    """`gpuwatch train` on telemetry from Prometheus; exit code and everything printed."""
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--access",
            str(ROOT / "data/samples/access.jsonl.gz"),
            "--since",
            SINCE,
            "--until",
            UNTIL,
            *args,
        ],
    )
    return result.exit_code, result.output


def assert_one_clean_line(output: str, *secrets: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    assert "Traceback" not in output
    for secret in secrets:
        assert secret not in output
    return lines[0]


def matrix(*series: object) -> dict[str, object]:
    return {"status": "success", "data": {"resultType": "matrix", "result": list(series)}}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<html>not json</html>", "not JSON"),
        (b"[" * 200_000, "not JSON"),  # nested past Python's recursion limit
        (b"\xff\xfe garbage", "not JSON"),
        ({"status": "success"}, "no 'data'"),
        ({"status": "success", "data": []}, "data.result to be a list"),
        ({"status": "success", "data": {"resultType": "vector", "result": []}}, "'matrix'"),
        (matrix(1), "series 1: expected 'metric'"),
        (matrix({"metric": {"gpu": 0}, "values": []}), "labels to strings"),
        (matrix({"metric": {}, "values": [[1, "2", 3]]}), "[time, value] pairs"),
        (matrix({"metric": {}, "values": {"1": "2"}}), "[time, value] pairs"),
        (matrix({"metric": {}, "values": [["x", "2"]]}), "time is not a number"),
        (matrix({"metric": {}, "values": [[1.5, 2]]}), "value is not a string"),
        ({"status": "error", "error": "bad\nquery\n\nnear line 2"}, "bad query near line 2"),
    ],
)
def test_malformed_answers_are_one_line_errors(tmp_path, body, expected):
    with fake_prometheus(range_answer(body)) as url:
        code, output = cli("--prometheus-url", url, "--model-dir", str(tmp_path / "m"))
    assert code == 2
    assert expected in assert_one_clean_line(output)


def test_wrong_shaped_metric_names_are_an_input_error(tmp_path):
    def answer(path: str) -> Answer:
        return 200, json.dumps({"status": "success", "data": {"a": 1}}).encode()

    with fake_prometheus(answer) as url:
        code, output = cli("--prometheus-url", url, "--model-dir", str(tmp_path / "m"))
    assert code == 2 and "expected a list of metric names" in assert_one_clean_line(output)


@pytest.mark.parametrize("declared", [True, False])
def test_a_huge_answer_is_refused_while_reading(declared):
    body = json.dumps(matrix({"metric": {}, "values": [[1, "1"]] * 200_000})).encode()
    headers = {"Content-Length": str(len(body))} if declared else {"Connection": "close"}
    with fake_prometheus(lambda path: (200, body, headers)) as url:
        src = PrometheusSource(url, step=60, max_body_bytes=100_000)
        with pytest.raises(InputError, match="exceeds 100,000 bytes"):
            read_prometheus(src, pd.Timestamp(SINCE), pd.Timestamp(UNTIL))


def test_credentials_and_an_echoed_401_body_never_show(tmp_path):
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    echo = f"invalid token {TOKEN} for user:{PASSWORD}".encode()
    with fake_prometheus(lambda path: (401, echo)) as url:
        with_user = url.replace("http://", f"http://gw-user:{PASSWORD}@")
        code, output = cli(
            "--prometheus-url",
            with_user,
            "--bearer-token-file",
            str(token),
            "--model-dir",
            str(tmp_path / "m"),
        )
    assert code == 2
    line = assert_one_clean_line(output, TOKEN, PASSWORD, "gw-user")
    assert "refused the credentials (401" in line and url.removeprefix("http://") in line


def test_a_secret_echoed_in_an_error_body_is_masked(tmp_path):
    token = tmp_path / "token"
    token.write_text(TOKEN)
    body = {"status": "error", "error": f"upstream said: Authorization {TOKEN} rejected"}
    with fake_prometheus(range_answer(body, status=502)) as url:
        code, output = cli(
            "--prometheus-url",
            url,
            "--bearer-token-file",
            str(token),
            "--model-dir",
            str(tmp_path / "m"),
        )
    assert code == 2
    assert "Authorization *** rejected" in assert_one_clean_line(output, TOKEN)


def test_a_refused_connection_names_the_server_without_credentials(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, output = cli(
        "--prometheus-url",
        f"http://gw-user:{PASSWORD}@127.0.0.1:{port}",
        "--model-dir",
        str(tmp_path / "m"),
    )
    assert code == 2
    line = assert_one_clean_line(output, PASSWORD, "gw-user", "HTTPConnectionPool")
    assert f"127.0.0.1:{port}" in line and "connection failed: Connection refused" in line


def test_a_server_that_does_not_answer_times_out_cleanly():
    def slow(path: str) -> Answer:
        time.sleep(2)
        return 200, json.dumps(NAMES).encode()

    with fake_prometheus(slow) as url:
        src = PrometheusSource(url, step=60, timeout=0.3)
        with pytest.raises(InputError, match=r"no answer within 0.3 s"):
            read_prometheus(src, pd.Timestamp(SINCE), pd.Timestamp(UNTIL))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("tok\u00e9n".encode(), "the bearer token has a non-ASCII character at position 4"),
        ("tok\u2019en".encode(), "non-ASCII character at position 4"),
        (b"tok en", "a space or control character at position 4"),
        (b"\xff\xfe", "not UTF-8 text"),
        (b"  \n", "is empty"),
    ],
)
def test_a_bad_token_file_is_a_clean_error(tmp_path, content, expected):
    token = tmp_path / "token"
    token.write_bytes(content)
    with fake_prometheus(range_answer(matrix())) as url:
        code, output = cli(
            "--prometheus-url",
            url,
            "--bearer-token-file",
            str(token),
            "--model-dir",
            str(tmp_path / "m"),
        )
    assert code == 2
    assert expected in assert_one_clean_line(output, "tok\u00e9n", "tok\u2019en")


def test_log_lines_are_redacted(tmp_path):
    from detector.redact import register

    register(TOKEN)
    path = tmp_path / "log.txt"
    handler = logging.FileHandler(path)
    handler.addFilter(RedactFilter())
    logger = logging.getLogger("gpuwatch.test-redact")
    logger.addHandler(handler)
    try:
        logger.warning("pulling %s with %s", f"https://u:{PASSWORD}@prom:9090/x", TOKEN)
        logger.warning("header Authorization: Bearer %s", "never-registered-123")
        logger.warning("the Bearer token file is missing")
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = path.read_text()
    assert PASSWORD not in text and TOKEN not in text and "never-registered-123" not in text
    assert "https://***@prom:9090/x with ***" in text and "Bearer ***" in text
    assert "the Bearer token file is missing" in text
