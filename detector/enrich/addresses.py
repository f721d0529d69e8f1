"""IP address text -> integer keys and address class, vectorised over distinct addresses.

IPv4 addresses become ``uint32`` keys; IPv6 addresses become 16-byte big-endian ``S16`` keys,
whose byte order is their numeric order, so ``np.searchsorted`` works on both. IPv4-mapped IPv6
addresses (``::ffff:a.b.c.d``) are treated as the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

IP_CLASSES = ("public", "private", "loopback", "link_local", "reserved", "multicast", "unspecified")

# Special-purpose ranges (IANA IPv4/IPv6 special-purpose registries, RFC 1918, RFC 6598,
# RFC 4193, RFC 4291). Within one family the longest matching prefix wins, so a range can
# carve an exception out of a larger one (0.0.0.0/32 inside 0.0.0.0/8).
_SPECIAL = (
    ("0.0.0.0/0", "public"),
    ("0.0.0.0/8", "reserved"),
    ("0.0.0.0/32", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "private"),  # carrier-grade NAT (shared address space)
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link_local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "reserved"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),
    ("198.51.100.0/24", "reserved"),
    ("203.0.113.0/24", "reserved"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/0", "reserved"),  # outside global unicast 2000::/3 nothing is routed to a customer
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b::/96", "public"),  # NAT64: the embedded IPv4 address is public
    ("64:ff9b:1::/48", "private"),
    ("2000::/3", "public"),
    ("2001::/23", "reserved"),
    ("2001:db8::/32", "reserved"),
    ("3fff::/20", "reserved"),
    ("fc00::/7", "private"),
    ("fe80::/10", "link_local"),
    ("fec0::/10", "reserved"),
    ("ff00::/8", "multicast"),
)

_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}$"


@dataclass(frozen=True)
class Addresses:
    """Parsed addresses: positions into the input and the keys of each family.

    Unparseable entries are in neither family.
    """

    n: int
    v4_pos: np.ndarray
    v4: np.ndarray  # uint32
    v6_pos: np.ndarray
    v6: np.ndarray  # S16, big-endian


def text_v4(keys: np.ndarray) -> list[str]:
    """Dotted text of uint32 keys."""
    raw = keys.astype(">u4").tobytes()
    return [socket.inet_ntoa(raw[i : i + 4]) for i in range(0, len(raw), 4)]


def text_v6(keys: np.ndarray) -> list[str]:
    """Canonical text of S16 keys."""
    raw = keys.astype("S16").tobytes()
    return [socket.inet_ntop(socket.AF_INET6, raw[i : i + 16]) for i in range(0, len(raw), 16)]


def _pack6(texts: list) -> tuple[bytes, np.ndarray]:
    """Packed binary IPv6 addresses (zeros where invalid) and a validity mask."""
    try:
        return (
            b"".join([socket.inet_pton(socket.AF_INET6, t) for t in texts]),
            np.ones(len(texts), bool),
        )
    except (OSError, TypeError, ValueError):
        pass
    valid = np.ones(len(texts), bool)
    parts = []
    for i, t in enumerate(texts):
        try:
            parts.append(socket.inet_pton(socket.AF_INET6, t))
        except (OSError, TypeError, ValueError):
            parts.append(bytes(16))
            valid[i] = False
    return b"".join(parts), valid


def _parse4(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Dotted-quad text -> uint32 keys and a validity mask, in Arrow's C++ kernels."""
    valid = pc.fill_null(pc.match_substring_regex(texts, _DOTTED_QUAD), False)
    good = texts.filter(valid)
    octets = pc.list_flatten(pc.split_pattern(good, ".")).cast(pa.uint32())
    octets = octets.to_numpy(zero_copy_only=False).reshape(-1, 4)
    keys = (octets[:, 0] << 24) | (octets[:, 1] << 16) | (octets[:, 2] << 8) | octets[:, 3]
    return keys.astype(np.uint32), valid.to_numpy(zero_copy_only=False)


def _as_arrow(texts: Any) -> pa.Array:
    """Any sequence of address text as an Arrow string array (non-text becomes null)."""
    if isinstance(texts, pd.Index | pd.Series):
        texts = texts.array
    if isinstance(texts, pa.ChunkedArray):
        return texts.combine_chunks()
    if isinstance(texts, pa.Array):
        return texts
    if hasattr(texts, "__arrow_array__") and pd.api.types.is_string_dtype(texts.dtype):
        return _as_arrow(pa.array(texts))
    values = [t if isinstance(t, str) else None for t in np.asarray(texts, dtype=object)]
    return pa.array(values, pa.string())


def parse(texts: object) -> Addresses:
    """Parse address text strictly: no spaces, no leading zeros or short IPv4 forms."""
    arr = _as_arrow(texts).cast(pa.string())
    n = len(arr)
    is6 = pc.fill_null(pc.match_substring(arr, ":"), False).to_numpy(zero_copy_only=False)
    pos6 = np.flatnonzero(is6)
    pos4 = np.flatnonzero(~is6)
    v4, ok4 = _parse4(arr.take(pa.array(pos4)))
    raw6, ok6 = _pack6(arr.take(pa.array(pos6)).to_pylist())
    v6 = np.frombuffer(raw6, "S16")
    # Zero bytes at the end are dropped by S16 item access but kept in comparisons; the
    # mapped prefix test therefore works on a uint8 view.
    b6 = np.frombuffer(raw6, np.uint8).reshape(-1, 16)
    mapped = ok6 & (b6[:, :12] == np.frombuffer(_MAPPED_PREFIX, np.uint8)).all(axis=1)
    mapped_v4 = b6[mapped, 12:].copy().view(">u4").ravel().astype(np.uint32)
    return Addresses(
        n=n,
        v4_pos=np.concatenate([pos4[ok4], pos6[mapped]]),
        v4=np.concatenate([v4, mapped_v4]),
        v6_pos=pos6[ok6 & ~mapped],
        v6=v6[ok6 & ~mapped],
    )


def _bounds() -> tuple[list, list]:
    v4, v6 = [], []
    rows = sorted(_SPECIAL, key=lambda r: ipaddress.ip_network(r[0]).prefixlen)
    for cidr, cls in rows:
        net = ipaddress.ip_network(cidr)
        code = IP_CLASSES.index(cls)
        if net.version == 4:
            v4.append((int(net.network_address), int(net.broadcast_address), code))
        else:
            v6.append((net.network_address.packed, net.broadcast_address.packed, code))
    return v4, v6


_BOUNDS_V4, _BOUNDS_V6 = _bounds()


def classify(addresses: Addresses) -> np.ndarray:
    """Index into ``IP_CLASSES`` per input position, -1 for unparseable text."""
    out = np.full(addresses.n, -1, np.int8)
    for pos, keys, bounds, dtype in (
        (addresses.v4_pos, addresses.v4, _BOUNDS_V4, np.uint32),
        (addresses.v6_pos, addresses.v6, _BOUNDS_V6, "S16"),
    ):
        cls = np.zeros(len(keys), np.int8)
        for lo, hi, code in bounds:  # shortest prefix first: longer prefixes overwrite
            lo, hi = np.array(lo, dtype), np.array(hi, dtype)
            cls[(keys >= lo) & (keys <= hi)] = code
        out[pos] = cls
    return out
