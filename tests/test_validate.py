"""Validation by schema: every bad cell quarantined with a reason naming its column; the
property "read = accepted + quarantined + out of window" for random tables with bad cells."""

from __future__ import annotations

import ipaddress
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.errors import SchemaError
from detector.ingest import read_table
from detector.schema import (
    ACCESS,
    COUNTRY,
    FLOAT,
    INT,
    IP,
    LABELS,
    STRING,
    TELEMETRY,
    TENANTS,
    TIMESTAMP,
    TableSchema,
)

BASE = pd.Timestamp("2024-03-01", tz="UTC")
DTYPES = {
    TIMESTAMP: "datetime64[ns, UTC]",
    STRING: "str",
    IP: "str",
    COUNTRY: "str",
    FLOAT: "float64",
    INT: "Int64",
}


def read_csv_text(tmp_path: Path, schema: TableSchema, text: str, **kwargs):
    path = tmp_path / f"{schema.name}.csv"
    path.write_text(text)
    loaded = read_table([path], schema, **kwargs)
    assert_conforms(loaded, schema)
    return loaded


def assert_conforms(loaded, schema: TableSchema, since=None, until=None) -> None:
    """The accepted table satisfies the schema; the counts add up."""
    table = loaded.table
    assert loaded.counts.read == (
        loaded.counts.accepted + loaded.counts.quarantined + loaded.counts.out_of_window
    )
    assert (len(table), len(loaded.quarantine)) == (
        loaded.counts.accepted,
        loaded.counts.quarantined,
    )
    assert list(table.columns) == schema.names
    for col in schema.columns:
        values = table[col.name]
        assert str(values.dtype) == DTYPES[col.kind], col.name
        if col.required:
            assert values.notna().all(), col.name
        present = values.dropna()
        if col.min is not None:
            assert (present >= col.min).all(), col.name
        if col.max is not None:
            assert (present <= col.max).all(), col.name
        if col.kind == IP:
            assert all(ipaddress.ip_address(v).compressed == v for v in present)
        if col.kind == COUNTRY:
            assert present.str.fullmatch("[A-Z]{2}").all()
    if schema.key and len(table):
        assert not table.duplicated(subset=list(schema.key)).any()
    if since is not None:
        assert (table["timestamp"] >= since).all()
    if until is not None:
        assert (table["timestamp"] < until).all()
    assert loaded.quarantine["reason"].str.len().gt(0).all()


def reasons(loaded) -> list[list]:
    return loaded.quarantine[["row", "column", "reason"]].values.tolist()


# --- TELEMETRY -----------------------------------------------------------------------------


def test_telemetry_bad_cells(tmp_path):
    loaded = read_csv_text(
        tmp_path,
        TELEMETRY,
        (
            "timestamp,tenant_id,host,gpu,gpu_util,sm_active,power_w\n"
            "2024-03-01T00:00:00Z,t1,h1,0,140,,\n"  # out of range
            "2024-03-01T00:00:01Z,t1,h1,0,-0.5,,\n"
            "2024-03-01T00:00:02Z,t1,h1,0,idle,,\n"  # not numeric
            "2024-03-01T00:00:03Z,,h1,0,50,,\n"  # required value missing
            "2024-03-01T00:00:04Z,t1,h1,0,50,1.2,9000\n"  # two problems: first column wins
            "2024-03-01T00:00:05Z,t1,h1,0,inf,,\n"  # not finite
            "2024-03-01T00:00:06Z,t1,h1,0,100,1,5000\n"
        ),
    )  # bounds are inclusive
    assert reasons(loaded) == [
        [1, "gpu_util", "gpu_util: above maximum 100"],
        [2, "gpu_util", "gpu_util: below minimum 0"],
        [3, "gpu_util", "gpu_util: not a number"],
        [4, "tenant_id", "tenant_id: missing required value"],
        [5, "sm_active", "sm_active: above maximum 1"],
        [6, "gpu_util", "gpu_util: not a number"],
    ]
    assert loaded.table["power_w"].tolist() == [5000.0]
    raw = json.loads(loaded.quarantine["raw"].iloc[2])
    assert raw == {
        "timestamp": "2024-03-01T00:00:02Z",
        "tenant_id": "t1",
        "host": "h1",
        "gpu": "0",
        "gpu_util": "idle",
        "sm_active": None,
        "power_w": None,
    }


def test_telemetry_missing_timestamp(tmp_path):
    loaded = read_csv_text(
        tmp_path, TELEMETRY, "timestamp,tenant_id,host,gpu,gpu_util\n,t1,h1,0,1\n"
    )
    assert reasons(loaded) == [[1, "timestamp", "timestamp: missing required value"]]


# --- ACCESS --------------------------------------------------------------------------------


def test_access_ip_addresses_are_normalised_and_bad_ones_quarantined(tmp_path):
    ips = [
        "192.0.2.1",
        "2001:DB8:0:0:0:0:0:1",
        "::ffff:198.51.100.7",
        "[2001:db8::2]",
        "999.1.1.1",
        "ec2.amazonaws.com",
        "192.0.2.01",
        "2001:db8:::1",
        "192.0.2.1",
    ]
    text = "timestamp,tenant_id,src_ip,event\n" + "".join(
        f"2024-03-01T00:00:{i:02d}Z,t1,{ip},login\n" for i, ip in enumerate(ips)
    )
    loaded = read_csv_text(tmp_path, ACCESS, text)
    assert loaded.table["src_ip"].tolist() == [
        "192.0.2.1",
        "2001:db8::1",
        "198.51.100.7",
        "2001:db8::2",
        "192.0.2.1",
    ]
    assert reasons(loaded) == [[r, "src_ip", "src_ip: invalid IP address"] for r in (5, 6, 7, 8)]


def test_access_country_asn_and_bytes(tmp_path):
    loaded = read_csv_text(
        tmp_path,
        ACCESS,
        (
            "timestamp,tenant_id,src_ip,event,country,asn,bytes_in\n"
            "2024-03-01T00:00:00Z,t1,192.0.2.1,ssh,de,64500,10\n"
            "2024-03-01T00:00:01Z,t1,192.0.2.1,ssh,DEU,64500,10\n"
            "2024-03-01T00:00:02Z,t1,192.0.2.1,ssh,DE,645.5,10\n"
            "2024-03-01T00:00:03Z,t1,192.0.2.1,ssh,D1,,10\n"
            "2024-03-01T00:00:04Z,t1,192.0.2.1,ssh,,,-1\n"
            "2024-03-01T00:00:05Z,t1,192.0.2.1,ssh,,,\n"
        ),
    )
    assert reasons(loaded) == [
        [2, "country", "country: invalid country code"],
        [3, "asn", "asn: not an integer"],
        [4, "country", "country: invalid country code"],
        [5, "bytes_in", "bytes_in: below minimum 0"],
    ]
    assert loaded.table["country"].tolist()[0] == "DE"
    assert loaded.table["asn"].tolist() == [64500, pd.NA]


def test_access_duplicates_compare_missing_principals_equal(tmp_path):
    row = "2024-03-01T00:00:00Z,t1,2001:db8::1,api,{}\n"
    loaded = read_csv_text(
        tmp_path,
        ACCESS,
        "timestamp,tenant_id,src_ip,event,principal\n"
        + row.format("")
        + row.format("").replace("2001:db8::1", "2001:DB8:0::1")
        + row.format("alice"),
    )
    assert reasons(loaded) == [[2, "timestamp,tenant_id,src_ip,event,principal", "duplicate"]]


def test_access_events_by_jsonl_with_ipv6_and_numbers_as_text(tmp_path):
    rows = [
        {
            "timestamp": 1709251200,
            "tenant_id": "t1",
            "src_ip": "fe80::1",
            "event": "api",
            "asn": "64500",
        },
        {
            "timestamp": "1709251201",
            "tenant_id": 7,
            "src_ip": "10.0.0.1",
            "event": "api",
            "asn": 64501,
        },
    ]
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    loaded = read_table([path], ACCESS)
    assert_conforms(loaded, ACCESS)
    assert loaded.table["tenant_id"].tolist() == ["t1", "7"]
    assert loaded.table["asn"].tolist() == [64500, 64501]
    assert loaded.table["timestamp"].tolist() == [BASE, BASE + pd.Timedelta(seconds=1)]


# --- TENANTS -------------------------------------------------------------------------------


def test_tenants(tmp_path):
    loaded = read_csv_text(
        tmp_path,
        TENANTS,
        (
            "tenant_id,declared_country,org_name,created_at\n"
            "t1,us,Acme,2023-05-01\n"
            "t2,XX1,Bad Country,2023-05-01\n"
            "t3,,No Date,someday\n"
            "t1,US,Acme again,2023-06-01\n"
            ",US,No id,\n"
        ),
    )
    assert reasons(loaded) == [
        [2, "declared_country", "declared_country: invalid country code"],
        [3, "created_at", "created_at: unparsable timestamp"],
        [4, "tenant_id", "duplicate"],
        [5, "tenant_id", "tenant_id: missing required value"],
    ]
    assert loaded.table["declared_country"].tolist() == ["US"]
    assert loaded.table["billing_country"].isna().all()
    assert loaded.table["reseller"].dtype == "str"


def test_window_does_not_apply_to_tables_without_timestamp(tmp_path):
    loaded = read_csv_text(tmp_path, TENANTS, "tenant_id,created_at\nt1,2020-01-01\n", since=BASE)
    assert loaded.counts.accepted == 1


# --- LABELS --------------------------------------------------------------------------------


def test_labels(tmp_path):
    loaded = read_csv_text(
        tmp_path,
        LABELS,
        (
            "session_id,tenant_id,start,end,label,analyst\n"
            "s1,,,,Incident,ann\n"  # case-insensitive
            ",t1,2024-03-01T00:00Z,2024-03-01T05:00Z,benign,bob\n"
            "s2,,,,maybe,ann\n"  # unknown label
            ",t1,2024-03-01T00:00Z,,incident,ann\n"  # no session named
            ",t1,2024-03-01T05:00Z,2024-03-01T01:00Z,incident,ann\n"  # end before start
            "s3,,,,,ann\n"
        ),
    )  # no label
    assert reasons(loaded) == [
        [3, "label", "label: not one of incident, benign"],
        [4, "session_id", "session_id: missing, and tenant_id, start, end incomplete"],
        [5, "end", "end: not after start"],
        [6, "label", "label: missing required value"],
    ]
    assert loaded.table["label"].tolist() == ["incident", "benign"]


def test_labels_need_session_id_or_tenant_start_end_columns(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("tenant_id,start,label\nt1,2024-03-01,incident\n")
    with pytest.raises(SchemaError, match="missing column 'session_id', or else 'end'"):
        read_table([path], LABELS)
    path.write_text("session_id,label\ns1,benign\n")
    assert read_table([path], LABELS).counts.accepted == 1


def test_repeated_column_is_a_schema_error(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("tenant_id,tenant_id\nt1,t2\n")
    with pytest.raises(SchemaError, match="'tenant_id' appears more than once"):
        read_table([path], TENANTS)


# --- property: counts add up and accepted rows satisfy the schema ---------------------------


def _good(kind: str, col, i: int) -> object:
    if kind == TIMESTAMP:
        return (BASE + pd.Timedelta(seconds=i)).isoformat()
    if kind == IP:
        return f"2001:db8::{i:x}" if i % 2 else f"10.0.{i // 256 % 256}.{i % 256}"
    if kind == COUNTRY:
        return "DE"
    if kind in (FLOAT, INT):
        return (col.min or 0) + i % 7 if col.max is None else col.max
    return f"v{i}"


def _bad(col) -> list[str]:
    """Values that must be quarantined, for one column."""
    bad = {
        TIMESTAMP: ["not a time", "2024-13-45"],
        FLOAT: ["abc"],
        INT: ["1.5", "x"],
        IP: ["300.1.1.1", "host"],
        COUNTRY: ["DEU", "1"],
        STRING: [],
    }[col.kind]
    if col.min is not None:
        bad.append(str(col.min - 1))
    if col.max is not None:
        bad.append(str(col.max + 1))
    return bad + ([""] if col.required else [])


def _defects(schema: TableSchema) -> list[tuple[str, str]]:
    return [(c.name, v) for c in schema.columns for v in _bad(c)] + [("<duplicate>", "")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    schema=st.sampled_from([TELEMETRY, ACCESS, TENANTS]),
    fmt=st.sampled_from(["csv", "csv.gz", "jsonl", "jsonl.gz", "parquet"]),
    n=st.integers(1, 30),
)
def test_counts_add_up_for_random_tables_with_bad_cells(data, schema, fmt, n):
    defects = _defects(schema)
    planted = data.draw(
        st.lists(st.one_of(st.none(), st.sampled_from(defects)), min_size=n, max_size=n)
    )
    planted[0] = None  # row 0 stays clean: the duplicates copy it
    rows = [{c.name: _good(c.kind, c, i) for c in schema.columns} for i in range(n)]
    for row, defect in zip(rows, planted, strict=True):
        if defect and defect[0] == "<duplicate>":
            row.update({k: rows[0][k] for k in schema.key or schema.names})
        elif defect:
            row[defect[0]] = defect[1]
    window = (
        data.draw(st.sampled_from([None, (0, n // 2 + 1)])) if "timestamp" in schema.names else None
    )
    since, until = (BASE, BASE + pd.Timedelta(seconds=window[1])) if window else (None, None)
    frame = pd.DataFrame(rows).astype(str).replace("", None)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{schema.name}.{fmt}"
        if fmt.startswith("parquet"):
            frame.to_parquet(path, index=False)
        elif fmt.startswith("csv"):
            frame.to_csv(path, index=False)
        else:
            frame.to_json(path, orient="records", lines=True)
        loaded = read_table([path], schema, since=since, until=until)
    assert_conforms(loaded, schema, since, until)
    n_bad = sum(d is not None for d in planted)
    clean_outside = sum(1 for i, d in enumerate(planted) if d is None and window and i >= window[1])
    assert loaded.counts.read == n
    assert loaded.counts.quarantined == n_bad
    assert loaded.counts.out_of_window == clean_outside
    assert sorted(loaded.quarantine["row"]) == [i + 1 for i, d in enumerate(planted) if d]
    assert np.all(
        loaded.quarantine["reason"].str.contains(":") | loaded.quarantine["reason"].eq("duplicate")
    )
