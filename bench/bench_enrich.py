"""Benchmark: enrichment of N distinct random public addresses with the bundled database.

Prints seconds and addresses per second for the vectorised path, and the same for
geoip2fast's own per-address ``lookup()`` on a subset, for the ratio. Not a test.

    .venv/bin/python bench/bench_enrich.py [--n 1000000] [--v6 20000] [--reference 20000]
"""

from __future__ import annotations

import argparse
import ipaddress
import time

import numpy as np
import pandas as pd

from detector.config import load_settings
from detector.enrich import IP_CLASSES, enrich_access, open_database


def random_public(n4: int, n6: int, seed: int = 0) -> list[str]:
    """Distinct random public IPv4 and global unicast IPv6 text (shuffled together)."""
    rng = np.random.default_rng(seed)
    v4 = np.unique(rng.integers(1 << 24, 224 << 24, int(n4 * 1.2), dtype=np.uint32))
    public = (
        ~np.isin(v4 >> 24, [10, 127])
        & ((v4 >> 20) != 0xAC1)
        & ((v4 >> 16) != 0xC0A8)
        & ((v4 >> 22) != (100 << 2 | 1))
        & ((v4 >> 16) != 0xA9FE)
    )  # 172.16/12, 192.168/16,
    v4 = rng.permutation(v4[public])[:n4]  # 100.64/10, 169.254/16; a few /24 remain
    hi = rng.integers(0x2400 << 48, 0x2C00 << 48, n6, dtype=np.uint64)
    lo = rng.integers(0, 1 << 63, n6, dtype=np.uint64)
    texts = [str(ipaddress.IPv4Address(int(x))) for x in v4]
    texts += [
        str(ipaddress.IPv6Address((int(h) << 64) | int(low))) for h, low in zip(hi, lo, strict=True)
    ]
    return [texts[i] for i in rng.permutation(len(texts))]


def best_of(repeat: int, fn) -> tuple[float, object]:
    """Shortest wall time of ``repeat`` runs (the machine is shared) and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="distinct IPv4 addresses")
    parser.add_argument("--v6", type=int, default=20_000, help="distinct IPv6 addresses")
    parser.add_argument(
        "--reference",
        type=int,
        default=20_000,
        help="addresses for the per-address geoip2fast loop",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best)")
    parser.add_argument(
        "--mmdb", action="append", default=[], help="also time these .mmdb files (repeatable)"
    )
    args = parser.parse_args()

    ips = random_public(args.n, args.v6)
    n = len(ips)
    access = pd.DataFrame(
        {
            "timestamp": pd.Timestamp("2024-06-01", tz="UTC"),
            "tenant_id": "t0",
            "src_ip": pd.array(ips, dtype="str"),
            "event": "login",
        }
    )
    settings = load_settings()

    load, db = best_of(1, open_database)
    print(f"database: {db.description}, tables built in {load:.2f} s")
    took, (enriched, stats) = best_of(args.repeat, lambda: enrich_access(access, db, settings))
    print(
        f"enrich_access: {n:,} distinct addresses ({args.n:,} IPv4 + {args.v6:,} IPv6) "
        f"in {took:.2f} s = {n / took:,.0f} IPs/s"
    )
    print(f"  {stats}")
    classes = enriched["ip_class"].value_counts().reindex(IP_CLASSES).dropna()
    print(f"  classes: {classes.to_dict()}")
    lookup, _ = best_of(args.repeat, lambda: db.lookup_distinct(access["src_ip"].array))
    print(f"lookup only: {lookup:.2f} s = {n / lookup:,.0f} IPs/s")

    from geoip2fast import GeoIP2Fast

    reference = GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn-ipv6.dat.gz")
    subset = ips[: args.reference]
    loop, _ = best_of(args.repeat, lambda: [reference.lookup(ip) for ip in subset])
    per_ip_loop = loop / len(subset)
    print(
        f"geoip2fast lookup() loop: {len(subset):,} addresses in {loop:.2f} s = "
        f"{len(subset) / loop:,.0f} IPs/s"
    )
    print(
        f"ratio per address: enrich_access {per_ip_loop / (took / n):.1f}x, "
        f"lookup {per_ip_loop / (lookup / n):.1f}x faster than the geoip2fast loop"
    )

    if args.mmdb:
        mmdb = open_database(args.mmdb)
        took, _ = best_of(1, lambda: mmdb.lookup_distinct(access["src_ip"].array))
        print(f"mmdb lookup ({mmdb.description}): {took:.2f} s = {n / took:,.0f} IPs/s")


if __name__ == "__main__":
    main()
