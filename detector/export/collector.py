"""A custom collector over any family source, and a fresh registry per use."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector


class FamilyCollector(Collector):
    """Yields whatever ``produce()`` returns at scrape time."""

    def __init__(self, produce: Callable[[], Iterable[Metric]]) -> None:
        self._produce = produce

    def collect(self) -> Iterator[Metric]:
        yield from self._produce()


def registry_of(produce: Callable[[], Iterable[Metric]]) -> CollectorRegistry:
    """A new registry holding only one ``FamilyCollector``."""
    registry = CollectorRegistry()
    registry.register(FamilyCollector(produce))
    return registry
