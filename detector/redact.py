"""Secrets never reach a message, a log line or a traceback file.

Two nets: every secret gpuwatch reads (a bearer token, a URL password, the pseudonym salt) is
registered with `register` when it is read and replaced wherever it appears, even inside a
server's echoed answer; and patterns catch what was never registered (credentials in a URL,
an `Authorization: Bearer` value).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")
_BEARER = re.compile(r"\b(Bearer\s+)[A-Za-z0-9._~+/-]{8,}=*")  # RFC 6750 b64token; not prose
_registered: set[str] = set()


def register(secret: str | None) -> None:
    """Mask `secret` in everything `redact` sees from now on (in this process)."""
    if secret and secret.strip():
        _registered.add(secret)
        _registered.add(secret.strip())


def redact(text: str) -> str:
    """`text` with every registered secret, URL credential and bearer value masked."""
    for secret in sorted(_registered, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    return _BEARER.sub(rf"\g<1>{MASK}", text)


def public_url(url: str) -> str:
    """`url` without its user and password (registered as secrets), fit to print."""
    try:
        parts = urlsplit(url)
        username, password, port = parts.username, parts.password, parts.port
    except ValueError:  # e.g. a port that is not a number
        return redact(url)
    register(password)
    if username is None and password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit(parts._replace(netloc=netloc))


class RedactFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
