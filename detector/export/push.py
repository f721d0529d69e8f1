"""Pushgateway output: a success replaces the group, a failure push-adds run metrics only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import push_to_gateway, pushadd_to_gateway
from prometheus_client.core import Metric

from .collector import registry_of
from .errors import ExportError

TIMEOUT_SECONDS = 10.0


def push(
    gateway: str, job: str, grouping: Mapping[str, str], families: Iterable[Metric], *, add: bool
) -> None:
    """PUT (``add=False``: the group becomes exactly these families) or POST (``add=True``:
    only families of the same name are replaced, so the last success timestamp survives)."""
    metrics = list(families)
    send = pushadd_to_gateway if add else push_to_gateway
    try:
        send(
            gateway,
            job=job,
            registry=registry_of(lambda: metrics),
            grouping_key=dict(grouping),
            timeout=TIMEOUT_SECONDS,
        )
    except (OSError, ValueError) as exc:  # URLError/HTTPError are OSErrors; bad URL: ValueError
        raise ExportError(f"Pushgateway {gateway} (job {job!r}): push failed: {exc}") from exc
