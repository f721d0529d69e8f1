"""Enrichment: IP address -> country, AS and address class; jurisdiction and hosting flags."""

from __future__ import annotations

from .addresses import IP_CLASSES
from .geoip import BundledDatabase, IpDatabase, MmdbDatabase, open_database
from .policy import EnrichStats, enrich_access

__all__ = [
    "IP_CLASSES",
    "BundledDatabase",
    "EnrichStats",
    "IpDatabase",
    "MmdbDatabase",
    "enrich_access",
    "open_database",
]
