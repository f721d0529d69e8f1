"""Enrichment: bundled geoip2fast tables, .mmdb files, address classes and policy flags."""

from __future__ import annotations

import ipaddress
import random

import numpy as np
import pandas as pd
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from detector.config import load_settings
from detector.enrich import EnrichStats, IpDatabase, enrich_access, open_database
from detector.errors import InputError, SchemaError

# An address whose nearest geoip2fast AS block (35.80.0.0/12, AMAZON-02) does not contain it.
UNCONTAINED = "35.101.177.245"


@pytest.fixture(scope="module")
def db() -> IpDatabase:
    return open_database()


@pytest.fixture(scope="module")
def reference():
    from geoip2fast import GeoIP2Fast

    return GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn-ipv6.dat.gz")


@pytest.fixture(scope="module")
def settings():
    return load_settings()


def _access(ips: list, tenants: list[str] | None = None, **extra) -> pd.DataFrame:
    n = len(ips)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-06-01", periods=n, freq="min", tz="UTC"),
            "tenant_id": tenants or ["t1"] * n,
            "src_ip": pd.array(ips, dtype="str"),
            "event": "login",
            **extra,
        }
    )


# --- bundled database ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "country", "org"),
    [
        ("8.8.8.8", "US", "GOOGLE"),
        ("114.114.114.114", "CN", "ZEN-ECN"),
        ("77.88.8.8", "RU", "YANDEX LLC"),
        ("2001:4860:4860::8888", "US", "GOOGLE"),
        ("::ffff:8.8.8.8", "US", "GOOGLE"),  # IPv4-mapped IPv6 is the IPv4 address
    ],
)
def test_known_addresses(db, ip, country, org):
    row = db.lookup([ip]).iloc[0]
    assert (row["country"], row["as_org"], row["ip_class"]) == (country, org, "public")
    assert row["asn"] is pd.NA  # geoip2fast keeps AS organisations, not AS numbers


@pytest.mark.parametrize(
    ("ip", "ip_class"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fd00::1", "private"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.1.1", "link_local"),
        ("fe80::1", "link_local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("192.0.2.5", "reserved"),
        ("203.0.113.9", "reserved"),
        ("240.0.0.1", "reserved"),
        ("0.1.2.3", "reserved"),
        ("2001:db8::1", "reserved"),
        ("::ffff:10.0.0.1", "private"),
    ],
)
def test_special_addresses_get_a_class_and_never_a_country(db, ip, ip_class):
    row = db.lookup([ip]).iloc[0]
    assert row["ip_class"] == ip_class
    assert row["country"] is pd.NA and row["as_org"] is pd.NA and row["asn"] is pd.NA


def test_unparseable_text_is_all_na(db):
    info = db.lookup(["junk", "1.2.3", "01.2.3.4", " 8.8.8.8", "8.8.8.8", None, "2001:::1"])
    assert info["ip_class"].isna().tolist() == [True] * 4 + [False, True, True]
    assert info["country"].isna().tolist() == [True] * 4 + [False, True, True]


def test_lookup_keeps_input_order_and_duplicates(db):
    ips = ["77.88.8.8", "8.8.8.8", "10.0.0.1", "8.8.8.8", "2001:4860:4860::8888"]
    info = db.lookup(np.array(ips, dtype=object))
    assert info["country"].tolist() == ["RU", "US", pd.NA, "US", "US"]
    assert list(info.columns[:4]) == ["country", "asn", "as_org", "ip_class"]
    assert str(info["asn"].dtype) == "Int64"


def test_as_block_that_does_not_contain_the_address_is_rejected(db, reference):
    theirs = reference.lookup(UNCONTAINED)
    assert theirs.asn_name and ipaddress.ip_address(UNCONTAINED) not in ipaddress.ip_network(
        theirs.asn_cidr
    )
    row = db.lookup([UNCONTAINED]).iloc[0]
    assert row["as_org"] is pd.NA and row["asn_rejected"]
    assert row["country"] == theirs.country_code  # the country answer is unaffected


def _reference_answer(reference, ip: str) -> tuple:
    """geoip2fast's own answer with the containment rule applied, NA for no data."""
    r = reference.lookup(ip)
    country = r.country_code if r.country_code not in ("--", "") else pd.NA
    org = pd.NA
    if (
        r.asn_name
        and r.asn_name not in ("<unknown>", "IANA.ORG")
        and ipaddress.ip_address(ip) in ipaddress.ip_network(r.asn_cidr)
    ):
        org = r.asn_name
    return country, org


def test_vectorised_lookup_matches_geoip2fast(db, reference):
    rng = random.Random(7)
    ips = [str(ipaddress.IPv4Address(rng.randint(1 << 24, (224 << 24) - 1))) for _ in range(3000)]
    for lo, hi in ((0x2001, 0x2002), (0x2400, 0x2410), (0x2A00, 0x2A10)):
        ips += [
            str(ipaddress.IPv6Address(rng.randint(lo << 112, (hi << 112) - 1))) for _ in range(700)
        ]
    info = db.lookup(ips)
    public = (info["ip_class"] == "public").to_numpy(bool)
    expected = [_reference_answer(reference, ip) for ip in ips]
    ours = list(zip(info["country"], info["as_org"], strict=True))
    mismatches = [
        (ip, e, o)
        for ip, e, o, p in zip(ips, expected, ours, public, strict=True)
        if p and tuple(map(str, e)) != tuple(map(str, o))
    ]
    assert mismatches == []
    # the comparison has substance: countries and organisations found in both families
    is6 = np.array([":" in ip for ip in ips])
    assert info["country"][~is6].notna().sum() > 2500
    assert info["country"][is6].notna().sum() > 100
    assert info["as_org"][is6].notna().sum() > 50
    assert 0.05 < info["asn_rejected"][~is6].mean() < 0.4  # geoip2fast's neighbouring blocks
    # geoip2fast has no country for the addresses we class as non-public either
    assert {
        reference.lookup(ip).country_code for ip, p in zip(ips, public, strict=True) if not p
    } == {"--"}


def test_public_class_agrees_with_ipaddress_is_global(db):
    rng = random.Random(11)
    ips = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(20000)]
    ips += [
        "100.63.255.255",
        "100.64.0.0",
        "100.127.255.255",
        "100.128.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "198.17.255.255",
        "198.20.0.0",
        "223.255.255.255",
        "1.0.0.0",
    ]
    info = db.lookup(ips)
    ours = (info["ip_class"] == "public").tolist()
    expected = [(a := ipaddress.ip_address(ip)).is_global and not a.is_multicast for ip in ips]
    assert ours == expected


# --- .mmdb files ---------------------------------------------------------------------------


def _write_mmdb(path, database_type: str, records: dict[str, dict], ip_version: int = 6) -> str:
    writer = MMDBWriter(
        ip_version=ip_version, database_type=database_type, ipv4_compatible=ip_version == 6
    )
    for network, record in records.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return str(path)


@pytest.fixture
def mmdb_files(tmp_path):
    country = _write_mmdb(
        tmp_path / "country.mmdb",
        "GeoLite2-Country",
        {
            "8.8.8.0/24": {"country": {"iso_code": "US", "names": {"en": "United States"}}},
            "5.255.255.0/24": {"registered_country": {"iso_code": "RU"}},
            "2001:4860::/32": {"country": {"iso_code": "US"}},
        },
    )
    asn = _write_mmdb(
        tmp_path / "asn.mmdb",
        "GeoLite2-ASN",
        {
            "8.8.8.0/24": {
                "autonomous_system_number": 15169,
                "autonomous_system_organization": "GOOGLE",
            },
            "5.255.255.0/24": {
                "autonomous_system_number": 13238,
                "autonomous_system_organization": "YANDEX LLC",
            },
        },
        ip_version=4,
    )
    return country, asn


def test_mmdb_country_and_asn(mmdb_files):
    db = open_database(mmdb_files)
    info = db.lookup(["8.8.8.8", "5.255.255.5", "2001:4860::1", "1.1.1.1", "10.0.0.1"])
    assert info["country"].tolist() == ["US", "RU", "US", pd.NA, pd.NA]
    assert info["asn"].tolist() == [15169, 13238, pd.NA, pd.NA, pd.NA]
    assert info["as_org"].tolist() == ["GOOGLE", "YANDEX LLC", pd.NA, pd.NA, pd.NA]
    assert info["ip_class"].tolist() == ["public"] * 4 + ["private"]
    assert "GeoLite2-Country" in db.description and "GeoLite2-ASN" in db.description


def test_mmdb_country_only_gives_na_asn_and_city_counts_as_country(tmp_path):
    city = _write_mmdb(
        tmp_path / "city.mmdb",
        "DBIP-City-Lite",
        {
            "8.8.8.0/24": {
                "city": {"names": {"en": "Mountain View"}},
                "country": {"iso_code": "US"},
            },
        },
    )
    info = open_database([city]).lookup(["8.8.8.8"])
    assert info["country"].tolist() == ["US"] and info["asn"].isna().all()


def test_mmdb_errors_name_the_file(tmp_path, mmdb_files):
    missing = tmp_path / "nope.mmdb"
    with pytest.raises(InputError, match="nope.mmdb"):
        open_database([missing])
    text = tmp_path / "notes.mmdb"
    text.write_text("not a database\n")
    with pytest.raises(InputError, match="notes.mmdb"):
        open_database([mmdb_files[0], text])
    other = _write_mmdb(
        tmp_path / "anon.mmdb", "GeoIP2-Anonymous-IP", {"8.8.8.0/24": {"is_anonymous": True}}
    )
    with pytest.raises(InputError, match="anon.mmdb.*neither"):
        open_database([other])


# --- policy flags ----------------------------------------------------------------------------


def test_enrich_adds_columns_and_flags(db, settings):
    access = _access(["8.8.8.8", "114.114.114.114", "10.0.0.1", "77.88.8.8", "8.8.8.8"])
    enriched, stats = enrich_access(access, db, settings)
    assert enriched["country"].tolist() == ["US", "CN", pd.NA, "RU", "US"]
    assert enriched["ip_class"].tolist() == ["public", "public", "private", "public", "public"]
    assert enriched["restricted"].tolist() == [False, True, False, True, False]
    assert enriched["restricted"].dtype == bool and enriched["hosting"].dtype == bool
    assert stats == EnrichStats(
        ips_total=3, ips_unknown_country=0, ips_unknown_asn=0, asn_rejected_not_containing=0
    )
    assert list(enriched.columns[:4]) == list(access.columns)


def test_hosting_by_asn_and_by_org_keyword(mmdb_files, settings):
    access = _access(["8.8.8.8", "5.255.255.5"])
    enriched, _ = enrich_access(access, open_database(mmdb_files), settings)
    assert enriched["hosting"].tolist() == [True, False]  # AS15169 is in the default list
    access = _access(
        ["1.1.1.1", "2.2.2.2", "3.3.3.3"],
        as_org=["Hetzner Online Hosting", "Some VPN Ltd", "Deutsche Telekom AG"],
    )
    enriched, _ = enrich_access(access, open_database(mmdb_files), settings)
    assert enriched["hosting"].tolist() == [True, True, False]


def test_policy_is_data(db, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[jurisdiction]\ncountries_of_concern = ["US"]\n'
        '[hosting]\nasns = []\norg_keywords = ["google"]\n'
    )
    custom = load_settings(policy, env={})
    enriched, _ = enrich_access(_access(["8.8.8.8", "114.114.114.114"]), db, custom)
    assert enriched["restricted"].tolist() == [True, False]
    assert enriched["hosting"].tolist() == [True, False]


def test_uncontained_as_answer_is_counted(db, settings):
    enriched, stats = enrich_access(_access([UNCONTAINED, UNCONTAINED, "8.8.8.8"]), db, settings)
    assert enriched["as_org"].tolist() == [pd.NA, pd.NA, "GOOGLE"]
    assert stats == EnrichStats(
        ips_total=2, ips_unknown_country=0, ips_unknown_asn=1, asn_rejected_not_containing=1
    )


def test_pre_enriched_values_are_kept(db, settings):
    access = _access(
        ["8.8.8.8", "8.8.8.8", "114.114.114.114"],
        country=["DE", None, None],
        asn=[64500, None, None],
        as_org=[None, "Given Org", None],
    )
    enriched, _ = enrich_access(access, db, settings)
    assert enriched["country"].tolist() == ["DE", "US", "CN"]
    assert enriched["asn"].tolist() == [64500, pd.NA, pd.NA]
    assert enriched["as_org"].tolist() == ["GOOGLE", "Given Org", "ZEN-ECN"]
    assert enriched["restricted"].tolist() == [False, False, True]


def test_kyc_mismatch_and_reseller_from_tenants(db, settings):
    tenants = pd.DataFrame(
        {
            "tenant_id": ["t1", "t2"],
            "declared_country": ["US", "DE"],
            "reseller": [None, "R-Partner"],
        }
    )
    access = _access(
        ["8.8.8.8", "114.114.114.114", "10.0.0.1", "8.8.8.8", "77.88.8.8"],
        tenants=["t1", "t1", "t1", "t2", "t9"],
    )
    enriched, _ = enrich_access(access, db, settings, tenants)
    assert enriched["declared_country"].tolist() == ["US", "US", "US", "DE", pd.NA]
    assert enriched["reseller"].tolist() == [pd.NA, pd.NA, pd.NA, "R-Partner", pd.NA]
    assert enriched["kyc_mismatch"].tolist() == [False, True, False, True, False]
    without, _ = enrich_access(access, db, settings)
    assert without["declared_country"].isna().all() and not without["kyc_mismatch"].any()


def test_duplicate_tenant_is_an_error(db, settings):
    tenants = pd.DataFrame({"tenant_id": ["t1", "t1"], "declared_country": ["US", "DE"]})
    with pytest.raises(SchemaError, match="tenant_id"):
        enrich_access(_access(["8.8.8.8"]), db, settings, tenants)


def test_input_is_not_mutated_and_index_is_kept(db, settings):
    access = _access(["8.8.8.8", None, "114.114.114.114"], country=[None, None, "RU"])
    access.index = [7, 3, 5]
    before = access.copy(deep=True)
    enriched, _ = enrich_access(access, db, settings)
    pd.testing.assert_frame_equal(access, before)
    assert enriched.index.tolist() == [7, 3, 5]
    assert enriched["country"].tolist() == ["US", pd.NA, "RU"]
    assert enriched["ip_class"].tolist() == ["public", pd.NA, "public"]


def test_empty_access_and_missing_src_ip(db, settings):
    enriched, stats = enrich_access(_access([]), db, settings)
    assert len(enriched) == 0 and stats.ips_total == 0
    assert {"country", "asn", "as_org", "ip_class", "restricted", "hosting", "kyc_mismatch"} <= set(
        enriched.columns
    )
    with pytest.raises(SchemaError, match="src_ip"):
        enrich_access(_access(["8.8.8.8"]).drop(columns="src_ip"), db, settings)
