"""IP databases: IP address -> country, autonomous system and address class.

Two kinds: the data bundled with ``geoip2fast`` (MaxMind GeoLite2, June 2024), searched with
numpy over its sorted range tables, and MaxMind / DB-IP ``.mmdb`` files read with ``maxminddb``.
Both look up each distinct address once and answer one row per input, in input order.
"""

from __future__ import annotations

import gzip
import pickle
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import maxminddb
import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import InputError
from .addresses import IP_CLASSES, classify, parse, text_v4, text_v6

INFO_COLUMNS = ("country", "asn", "as_org", "ip_class", "asn_rejected")
_PUBLIC = IP_CLASSES.index("public")
_BUNDLED_FILE = "geoip2fast-asn-ipv6.dat.gz"  # country + AS organisation, IPv4 and IPv6
_BUNDLED_NO_COUNTRY = 16  # geoip2fast: the first 16 country entries are reserved/not found
_BUNDLED_NO_ORG = ("<unknown>", "IANA.ORG")


@dataclass(frozen=True)
class Answer:
    """What a database says about public addresses (IPv4 keys first, then IPv6).

    ``country`` and ``org`` index into ``countries`` and ``orgs``; -1 and ``asn`` -1 mean
    unknown. ``rejected`` marks an AS answer dropped because its block does not contain the
    address.
    """

    country: np.ndarray
    asn: np.ndarray
    org: np.ndarray
    rejected: np.ndarray
    countries: Sequence[str]
    orgs: Sequence[str]


class IpDatabase(ABC):
    """An IP database; ``lookup`` is the only method callers need."""

    description: str

    def lookup(self, ips: Sequence[str] | np.ndarray | pd.Series) -> pd.DataFrame:
        """One row per input, same order: country, asn, as_org, ip_class, asn_rejected.

        Each distinct address is looked up once. Unparseable text gets NA everywhere;
        non-public addresses get their ip_class and never a country or AS.
        """
        if not isinstance(ips, pd.Series | np.ndarray | pd.api.extensions.ExtensionArray):
            ips = np.asarray(list(ips), dtype=object)
        codes, uniques = pd.factorize(ips)
        return take_rows(self.lookup_distinct(uniques), codes)

    def lookup_distinct(
        self, ips: Sequence[str] | np.ndarray | pd.api.extensions.ExtensionArray
    ) -> pd.DataFrame:
        """``lookup`` for addresses already known to be distinct (no factorising)."""
        addresses = parse(ips)
        classes = classify(addresses)
        pub4 = classes[addresses.v4_pos] == _PUBLIC
        pub6 = classes[addresses.v6_pos] == _PUBLIC
        answer = self._find(addresses.v4[pub4], addresses.v6[pub6])
        where = np.concatenate([addresses.v4_pos[pub4], addresses.v6_pos[pub6]])
        n = addresses.n
        country, org = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
        asn, rejected = np.full(n, -1, np.int64), np.zeros(n, bool)
        country[where], org[where] = answer.country, answer.org
        asn[where], rejected[where] = answer.asn, answer.rejected
        return pd.DataFrame(
            {
                "country": _decode(country, answer.countries),
                "asn": pd.arrays.IntegerArray(asn, asn < 0),
                "as_org": _decode(org, answer.orgs),
                "ip_class": _decode(classes.astype(np.int64), IP_CLASSES),
                "asn_rejected": rejected,
            }
        )

    @abstractmethod
    def _find(self, v4: np.ndarray, v6: np.ndarray) -> Answer:
        """Answer for public IPv4 (uint32) and IPv6 (S16) keys."""


def _decode(index: np.ndarray, vocabulary: Sequence[str]) -> pd.api.extensions.ExtensionArray:
    """Indices into a vocabulary -> a string array, NA where the index is -1."""
    values = pa.array(list(vocabulary), pa.string()).take(pa.array(index, mask=index < 0))
    return pd.arrays.ArrowStringArray(values)


def take_rows(info: pd.DataFrame, codes: np.ndarray) -> pd.DataFrame:
    """Rows of ``info`` by factorised codes; code -1 (missing address) gives an all-NA row."""
    if len(info) == 0 or (codes < 0).any():
        blank = pd.DataFrame(
            {c: pd.array([None], dtype=info[c].dtype) for c in INFO_COLUMNS if c != "asn_rejected"}
            | {"asn_rejected": [False]}
        )
        info = pd.concat([info, blank], ignore_index=True)
        codes = np.where(codes < 0, len(info) - 1, codes)
    return info.take(codes).reset_index(drop=True)


# --- bundled geoip2fast data ---------------------------------------------------------------


@dataclass(frozen=True)
class _Ranges:
    """Sorted, non-overlapping ranges [first, last] -> value (-1: the range has no data)."""

    first: np.ndarray
    last: np.ndarray
    value: np.ndarray

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Value of the range containing each key (-1 if none), and whether the nearest
        range below the key had data but does not contain it (geoip2fast's ASN answer)."""
        pos = np.searchsorted(self.first, keys, side="right") - 1
        below = pos >= 0
        pos = np.maximum(pos, 0)
        inside = below & (keys <= self.last[pos])
        value = self.value[pos]
        return np.where(inside, value, -1), below & ~inside & (value >= 0)


def _ranges(first: list[int], netlen: list[int], value: np.ndarray) -> tuple[_Ranges, _Ranges]:
    """Split geoip2fast's flat (first address, prefix length) lists into IPv4 and IPv6."""
    k = bisect_left(first, 1 << 32)
    f4 = np.array(first[:k], np.uint64)
    l4 = f4 + (np.uint64(1) << (32 - np.array(netlen[:k], np.uint64))) - np.uint64(1)
    v4 = _Ranges(f4.astype(np.uint32), l4.astype(np.uint32), value[:k])
    f6 = first[k:]
    l6 = [f + (1 << (128 - n)) - 1 for f, n in zip(f6, netlen[k:], strict=True)]
    v6 = _Ranges(_s16(f6), _s16(l6), value[k:])
    return v4, v6


def _s16(values: list[int]) -> np.ndarray:
    return np.frombuffer(b"".join(v.to_bytes(16, "big") for v in values), "S16")


def _flat(chunks: list[list]) -> list:
    return [x for chunk in chunks for x in chunk]


class BundledDatabase(IpDatabase):
    """geoip2fast's country + AS organisation tables (GeoLite2, June 2024), via numpy.

    GeoLite2 AS numbers are not in geoip2fast's data, only organisation names: ``asn`` is
    always NA here. An AS block that does not contain the address is rejected (NA).
    """

    def __init__(self) -> None:
        self._tables = _bundled_tables()
        self.description = self._tables.description

    def _find(self, v4: np.ndarray, v6: np.ndarray) -> Answer:
        t = self._tables
        parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
        for keys, country_table, org_table in ((v4, t.country4, t.org4), (v6, t.country6, t.org6)):
            order = np.argsort(keys, kind="stable")  # sorted keys: cache-friendly searches
            ordered = keys[order]
            c, _ = country_table.find(ordered)
            o, r = org_table.find(ordered)
            for out, values in zip(parts, (c, o, r), strict=True):
                back = np.empty_like(values)
                back[order] = values
                out.append(back)
        country, org, rejected = (np.concatenate(x) for x in parts)
        return Answer(country, np.full(len(country), -1), org, rejected, t.countries, t.orgs)


@dataclass(frozen=True)
class _BundledTables:
    description: str
    countries: list[str]
    orgs: list[str]
    country4: _Ranges
    country6: _Ranges
    org4: _Ranges
    org6: _Ranges


@cache
def _bundled_tables() -> _BundledTables:
    """geoip2fast's pickled tables as numpy ranges, loaded once per process."""
    import geoip2fast

    path = Path(geoip2fast.__file__).with_name(_BUNDLED_FILE)
    try:
        with gzip.open(path, "rb") as fh:
            version, source, _, data = pickle.load(fh)  # trusted: shipped in the package
    except (OSError, pickle.UnpicklingError, ValueError, EOFError) as exc:
        raise InputError(
            f"cannot read the bundled geoip2fast data ({exc})", path=str(path)
        ) from exc
    if version != 120 or not (source.get("country") and source.get("asn")):
        raise InputError(f"unexpected geoip2fast data format {version} {source}", path=str(path))
    (_, _, country_names, org_names, first, first_asn, country_id, org_id, netlen, netlen_asn) = (
        data
    )
    countries = [name.split(":")[0] for name in country_names[_BUNDLED_NO_COUNTRY:]]
    country_value = np.array(_flat(country_id), np.int64) - _BUNDLED_NO_COUNTRY
    country_value[country_value < 0] = -1
    org_value = np.array(_flat(org_id), np.int64)
    no_org = np.array([name in _BUNDLED_NO_ORG for name in org_names])
    org_value[no_org[org_value]] = -1
    country4, country6 = _ranges(_flat(first), _flat(netlen), country_value)
    org4, org6 = _ranges(_flat(first_asn), _flat(netlen_asn), org_value)
    description = f"geoip2fast {geoip2fast.__version__} ({source['info']})"
    return _BundledTables(description, countries, list(org_names), country4, country6, org4, org6)


# --- MaxMind / DB-IP .mmdb files -----------------------------------------------------------


class MmdbDatabase(IpDatabase):
    """One or more .mmdb files (country/city and/or ASN); the first file with an answer wins."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        self._readers = [_open_mmdb(Path(p)) for p in paths]
        parts = []
        for path, reader in zip(paths, self._readers, strict=True):
            meta = reader.metadata()
            built = pd.Timestamp(meta.build_epoch, unit="s")
            parts.append(f"{Path(path).name} ({meta.database_type}, built {built:%Y-%m-%d})")
        self.description = ", ".join(parts)

    def _find(self, v4: np.ndarray, v6: np.ndarray) -> Answer:
        texts = text_v4(v4) + text_v6(v6)
        n = len(texts)
        country, org = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
        asn = np.full(n, -1, np.int64)
        countries: dict[str, int] = {}
        orgs: dict[str, int] = {}
        for reader in self._readers:
            todo = texts if reader.metadata().ip_version == 6 else texts[: len(v4)]
            get = reader.get
            for i, record in enumerate(get(t) for t in todo):
                if not isinstance(record, dict):
                    continue
                code, number, name = _fields(record)
                if code and country[i] < 0:
                    country[i] = countries.setdefault(code, len(countries))
                if number is not None and asn[i] < 0:
                    asn[i] = number
                if name and org[i] < 0:
                    org[i] = orgs.setdefault(name, len(orgs))
        return Answer(country, asn, org, np.zeros(n, bool), list(countries), list(orgs))


def _fields(record: dict) -> tuple[str | None, int | None, str | None]:
    """(ISO country, AS number, AS organisation) from a GeoIP2/GeoLite2/DB-IP record."""
    place = record.get("country") or record.get("registered_country")
    code = place.get("iso_code") if isinstance(place, dict) else place
    number = record.get("autonomous_system_number")
    return (
        code,
        int(number) if number is not None else None,
        record.get("autonomous_system_organization"),
    )


_COUNTRY_TYPES = ("country", "city", "enterprise")
_ASN_TYPES = ("asn", "isp")


def _open_mmdb(path: Path) -> maxminddb.Reader:
    try:
        reader = maxminddb.open_database(str(path))
    except FileNotFoundError as exc:
        raise InputError("IP database file not found", path=str(path)) from exc
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise InputError(f"not a MaxMind DB (.mmdb) file ({exc})", path=str(path)) from exc
    kind = reader.metadata().database_type.lower()
    if not any(word in kind for word in _COUNTRY_TYPES + _ASN_TYPES):
        reader.close()
        raise InputError(
            f"database_type {kind!r} is neither a country/city nor an ASN database", path=str(path)
        )
    return reader


def open_database(mmdb_paths: Sequence[str | Path] = ()) -> IpDatabase:
    """The .mmdb files given, or the bundled geoip2fast data when none are."""
    return MmdbDatabase(mmdb_paths) if mmdb_paths else BundledDatabase()
