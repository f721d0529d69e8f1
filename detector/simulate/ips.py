"""The pool of real source addresses the simulator draws from.

Every address is one that the bundled geoip2fast database (MaxMind GeoLite2, June 2024) places
in the intended country, inside a block of the intended autonomous system: the block that
geoip2fast returns as ``asn_cidr`` must contain the address (its ASN answer is sometimes a
neighbouring block). geoip2fast gives AS names but no numbers, so the targets below pair each
exact AS name with its number.

The pool ships as ``detector/data/ip_pool.csv``; regenerate it with
``python -m detector.simulate.ips [PATH]`` (deterministic for a given database file).
"""

from __future__ import annotations

import ipaddress
import sys
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

POOL_COLUMNS = ["ip", "country", "asn", "as_org", "kind"]
RESIDENTIAL, HOSTING = "residential", "hosting"
GEOIP_FILE = "geoip2fast-asn-ipv6.dat.gz"

# (asn, exact AS name in geoip2fast, kind, countries wanted)
_RESIDENTIAL = {
    "US": [
        (7922, "COMCAST-7922"),
        (20115, "CHARTER-20115"),
        (7018, "ATT-INTERNET4"),
        (701, "UUNET"),
    ],
    "DE": [(3320, "Deutsche Telekom AG"), (3209, "Vodafone GmbH")],
    "JP": [
        (4713, "NTT Communications Corporation"),
        (2516, "KDDI CORPORATION"),
        (17676, "SoftBank Corp."),
    ],
    "KR": [(4766, "Korea Telecom"), (9318, "SK Broadband Co Ltd"), (3786, "LG POWERCOMM")],
    "GB": [
        (2856, "British Telecommunications PLC"),
        (5607, "Sky UK Limited"),
        (5089, "Virgin Media"),
    ],
    "IN": [
        (55836, "Reliance Jio Infocomm Limited"),
        (24560, "Bharti Airtel Ltd., Telemedia Services"),
    ],
    "SG": [(9506, "Singtel Fibre Broadband"), (4657, "StarHub Ltd")],
    "FR": [(3215, "Orange"), (12322, "Free SAS")],
    "NL": [(1136, "KPN B.V.")],
    "AE": [(5384, "Emirates Telecommunications Group Company (etisalat Group) Pjsc")],
    "HK": [(4760, "HKT Limited"), (9269, "Hong Kong Broadband Network Ltd.")],
    "CN": [
        (4134, "Chinanet"),
        (4837, "CHINA UNICOM China169 Backbone"),
        (9808, "China Mobile Communications Group Co., Ltd."),
    ],
    "RU": [
        (12389, "Rostelecom"),
        (8359, "MTS PJSC"),
        (3216, "PVimpelCom"),
        (9049, "JSC ER-Telecom Holding"),
    ],
    "IR": [
        (58224, "Iran Telecommunication Company PJS"),
        (197207, "Mobile Communication Company of Iran PLC"),
    ],
}
_HOSTING_ASES = [
    (14061, "DIGITALOCEAN-ASN"),
    (16276, "OVH SAS"),
    (24940, "Hetzner Online GmbH"),
    (63949, "Akamai Connected Cloud"),
    (20473, "AS-CHOOPA"),
    (9009, "M247 Europe SRL"),
    (60068, "Datacamp Limited"),
    (51167, "Contabo GmbH"),
    (62240, "Clouvider Limited"),
    (16509, "AMAZON-02"),
    (396982, "GOOGLE-CLOUD-PLATFORM"),
    (8075, "MICROSOFT-CORP-MSN-AS-BLOCK"),
    (49981, "WorldStream B.V."),
]
_HOSTING_COUNTRIES = ("US", "NL", "DE", "SG", "JP", "GB", "FR")
_PER_V4, _PER_V6 = 40, 4  # addresses kept per (AS, country) and address family
_CANDIDATE_BLOCKS = 240  # blocks tried per AS and family


def _targets() -> list[tuple[int, str, str, tuple[str, ...]]]:
    rows: list[tuple[int, str, str, tuple[str, ...]]] = [
        (asn, name, RESIDENTIAL, (country,))
        for country, ases in _RESIDENTIAL.items()
        for asn, name in ases
    ]
    rows += [(asn, name, HOSTING, _HOSTING_COUNTRIES) for asn, name in _HOSTING_ASES]
    return rows


def build_ip_pool(geoip_file: str = GEOIP_FILE, seed: int = 0) -> pd.DataFrame:
    """Sample addresses from the geoip2fast database's own AS blocks and verify each one."""
    from geoip2fast import GeoIP2Fast
    from geoip2fast import geoip2fast as gmod

    geo = GeoIP2Fast(geoip2fast_data_file=geoip_file)
    name_ids = {name: i for i, name in enumerate(gmod.mainListNamesASN)}
    first = np.concatenate([np.asarray(c, dtype=object) for c in gmod.mainListFirstIPASN])
    ids = np.concatenate([np.asarray(c, dtype=np.int64) for c in gmod.mainListIDASN])
    netlen = np.concatenate([np.asarray(c, dtype=np.int64) for c in gmod.mainListNetlengthASN])
    is_v6 = np.array([int(f) > 0xFFFFFFFF for f in first])
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    for asn, name, kind, countries in _targets():
        if name not in name_ids:
            raise LookupError(f"AS name {name!r} (AS{asn}) not in {geoip_file}")
        for v6, keep in ((False, _PER_V4), (True, _PER_V6)):
            blocks = np.flatnonzero((ids == name_ids[name]) & (is_v6 == v6))
            if len(blocks) > _CANDIDATE_BLOCKS:
                blocks = np.sort(rng.choice(blocks, _CANDIDATE_BLOCKS, replace=False))
            kept: dict[str, int] = {}
            for b in blocks:
                ip = _host_in_block(int(first[b]), int(netlen[b]), v6, rng)
                country = _verified_country(geo, ip, name)
                if country in countries and kept.get(country, 0) < keep:
                    kept[country] = kept.get(country, 0) + 1
                    rows.append(
                        {"ip": ip, "country": country, "asn": asn, "as_org": name, "kind": kind}
                    )
    pool = pd.DataFrame(rows, columns=POOL_COLUMNS).drop_duplicates("ip")
    return pool.sort_values(["kind", "country", "asn", "ip"], ignore_index=True)


def _host_in_block(first: int, prefix: int, v6: bool, rng: np.random.Generator) -> str:
    size = 2 ** ((128 if v6 else 32) - prefix)
    span = min(size - 2, 2**16) if size > 2 else 1
    offset = 1 + int(rng.integers(0, span)) if size > 2 else 0
    return str(ipaddress.ip_address(first + offset))


def _verified_country(geo, ip: str, name: str) -> str | None:
    """The country geoip2fast gives ``ip``, if its AS answer is ``name`` and contains ``ip``."""
    res = geo.lookup(ip)
    addr = ipaddress.ip_address(ip)
    if res.asn_name != name or not res.asn_cidr or not res.cidr:
        return None
    if addr not in ipaddress.ip_network(res.asn_cidr) or addr not in ipaddress.ip_network(res.cidr):
        return None
    return res.country_code if len(res.country_code) == 2 else None


@cache
def load_ip_pool() -> pd.DataFrame:
    """The bundled pool (``detector/data/ip_pool.csv``)."""
    with resources.files("detector.data").joinpath("ip_pool.csv").open() as fh:
        pool = pd.read_csv(
            fh,
            dtype={"ip": str, "country": str, "asn": "int64", "as_org": str, "kind": str},
            keep_default_na=False,
        )
    return pool


def write_ip_pool(path: Path) -> int:
    """Build the pool and write it as CSV; returns the number of addresses."""
    pool = build_ip_pool()
    pool.to_csv(path, index=False, lineterminator="\n")
    return len(pool)


if __name__ == "__main__":  # python -m detector.simulate.ips [PATH]
    default = Path(str(resources.files("detector.data").joinpath("ip_pool.csv")))
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    print(f"{write_ip_pool(target)} addresses -> {target}")
