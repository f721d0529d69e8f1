"""What foreign readers need besides the file: where the tenant comes from, a column mapping."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, InputError
from .files import Limits

# Kinds of key a tenant map can hold, most specific first.
MAP_KINDS = ("pod", "namespace", "host", "account", "instance", "interface", "address")


@dataclass(frozen=True)
class TenantMap:
    """kind -> {key: tenant_id}, from a CSV file with header `kind,key,tenant_id`."""

    entries: dict[str, dict[str, str]] = field(default_factory=dict)

    def lookup(self, keys: Sequence[tuple[str, pd.Series]]) -> pd.Series:
        """The tenant of every row: the first (kind, values) pair in `keys` the map knows;
        missing where none is known."""
        out: pd.Series | None = None
        for kind, values in keys:
            found = (
                values.map(self.entries.get(kind, {}))
                if kind in self.entries
                else pd.Series(None, index=values.index, dtype="str")
            )
            out = found if out is None else out.fillna(found)
        if out is None:
            raise ValueError("lookup needs at least one key")
        return out.astype("str").mask(out.isna())


def load_tenant_map(path: str | Path) -> TenantMap:
    """Read a tenant map CSV (`kind,key,tenant_id`; kind one of MAP_KINDS)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read tenant map: {exc}", path=str(path)) from exc
    entries: dict[str, dict[str, str]] = {}
    for number, row in enumerate(rows, 1):
        kind, key, tenant = (str(row.get(k) or "").strip() for k in ("kind", "key", "tenant_id"))
        if kind not in MAP_KINDS or not key or not tenant:
            raise ConfigError(
                f"{path}: row {number}: expected kind in {', '.join(MAP_KINDS)}, "
                "a key and a tenant_id (header kind,key,tenant_id)"
            )
        entries.setdefault(kind, {})[key] = tenant
    return TenantMap(entries)


@dataclass(frozen=True)
class SourceOptions:
    """How to turn a foreign format's records into canonical rows."""

    tenant_label: str = "namespace"  # the Prometheus label that names the tenant
    tenant_map: TenantMap | None = None  # pod/namespace/host/account/... -> tenant, used first
    columns: str | Path | None = None  # nvml column mapping: bundled name (`nvml-spar`) or TOML
    limits: Limits = Limits()  # what one file may cost

    def tenant(self, keys: Sequence[tuple[str, pd.Series]], fallback: pd.Series) -> pd.Series:
        """Tenant per row: the map's answer for the first known key, else `fallback`."""
        if self.tenant_map is None:
            return fallback
        return self.tenant_map.lookup(keys).fillna(fallback)
