"""The one error the exporter adds: a metrics sink (file, Pushgateway, port) is unusable."""

from __future__ import annotations

from ..errors import GpuwatchError


class ExportError(GpuwatchError):
    """Metrics could not be written, pushed or served; the message names the target."""
