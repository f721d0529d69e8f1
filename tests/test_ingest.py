"""Readers: every format, every bad input gets a clear error or a quarantine row."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from detector import quarantine
from detector.errors import InputError, SchemaError
from detector.ingest import expand, jsonl, read_table
from detector.schema import ACCESS, TELEMETRY

ROWS = [
    {
        "timestamp": "2024-01-01T00:00:00Z",
        "tenant_id": "t1",
        "host": "h1",
        "gpu": 0,
        "gpu_util": 50.0,
        "power_w": 300.0,
        "extra": "dropped",
    },
    {
        "timestamp": "2024-01-01T00:01:00Z",
        "tenant_id": "t1",
        "host": "h1",
        "gpu": 1,
        "gpu_util": 75.5,
        "power_w": None,
        "extra": "dropped",
    },
    {
        "timestamp": "2024-01-01T00:02:00Z",
        "tenant_id": "t2",
        "host": "h2",
        "gpu": 0,
        "gpu_util": 0.0,
        "power_w": 120.0,
        "extra": "dropped",
    },
]


def write(path: Path, rows: list[dict] | pd.DataFrame) -> Path:
    """Write rows in the format the file name says (optionally gzip)."""
    frame = pd.DataFrame(rows)
    name = path.name.removesuffix(".gz")
    if name.endswith(".parquet"):
        frame.to_parquet(buffer := io.BytesIO(), index=False)
        return write_text(path, buffer.getvalue())
    if name.endswith(".csv"):
        text = frame.to_csv(index=False)
    elif name.endswith(".jsonl"):
        text = frame.to_json(orient="records", lines=True)
    else:
        text = frame.to_json(orient="records")
    write_text(path, text)
    return path


def write_text(path: Path, text: str | bytes) -> Path:
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def check_counts(loaded) -> None:
    assert loaded.counts.read == (
        loaded.counts.accepted + loaded.counts.quarantined + loaded.counts.out_of_window
    )
    assert loaded.counts.accepted == len(loaded.table)
    assert loaded.counts.quarantined == len(loaded.quarantine)
    assert list(loaded.quarantine.columns) == quarantine.COLUMNS
    for raw in loaded.quarantine["raw"]:
        json.loads(raw)


@pytest.mark.parametrize(
    "name",
    [
        "t.parquet",
        "t.parquet.gz",
        "t.csv",
        "t.csv.gz",
        "t.jsonl",
        "t.jsonl.gz",
        "t.json",
        "t.json.gz",
    ],
)
def test_every_format_gives_the_same_typed_table(tmp_path, name):
    loaded = read_table([write(tmp_path / name, ROWS)], TELEMETRY)
    check_counts(loaded)
    table = loaded.table
    assert list(table.columns) == TELEMETRY.names
    assert (loaded.counts.read, loaded.counts.accepted) == (3, 3)
    assert str(table["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert table["timestamp"].iloc[1] == pd.Timestamp("2024-01-01T00:01:00", tz="UTC")
    assert table["tenant_id"].dtype == "str"
    assert table["gpu"].tolist() == ["0", "1", "0"]
    assert table["gpu_util"].dtype == "float64"
    assert table["gpu_util"].tolist() == [50.0, 75.5, 0.0]
    assert pd.isna(table["power_w"].iloc[1])
    assert table["sm_active"].isna().all() and table["sm_active"].dtype == "float64"
    assert table["model_name"].isna().all() and table["model_name"].dtype == "str"


def test_timestamp_forms(tmp_path):
    text = (
        "timestamp,tenant_id,host,gpu,gpu_util\n"
        "2024-01-01T01:00:00+01:00,t,h,0,1\n"  # offset
        "2024-01-01 00:00:01,t,h,0,1\n"  # naive means UTC
        "1704067202,t,h,0,1\n"  # epoch seconds
        "1704067203.5,t,h,0,1\n"
        "2024-01-01T00:00:04.250Z,t,h,0,1\n"
    )
    table = read_table([write_text(tmp_path / "t.csv", text)], TELEMETRY).table
    base = pd.Timestamp("2024-01-01", tz="UTC")
    assert (table["timestamp"] - base).dt.total_seconds().tolist() == [0, 1, 2, 3.5, 4.25]


@pytest.mark.parametrize("tz", [None, "UTC", "Europe/Berlin"])
def test_parquet_timestamps_and_epoch_numbers(tmp_path, tz):
    ts = pd.Series(pd.to_datetime(["2024-01-01 01:00", "2024-01-01 02:00"]))
    if tz:
        ts = ts.dt.tz_localize(tz)
    frame = pd.DataFrame(
        {"timestamp": ts, "tenant_id": "t", "host": "h", "gpu": [0, 1], "gpu_util": [1, 2]}
    )
    table = read_table([write(tmp_path / "t.parquet", frame)], TELEMETRY).table
    assert table["timestamp"].tolist() == list(
        ts.dt.tz_localize("UTC") if tz is None else ts.dt.tz_convert("UTC")
    )
    epoch = frame.assign(timestamp=[1704067200, 1704067260.0])
    table = read_table([write(tmp_path / "e.jsonl", epoch)], TELEMETRY).table
    assert table["timestamp"].astype("int64").tolist() == [1704067200 * 10**9, 1704067260 * 10**9]


def test_out_of_range_and_unparsable_timestamps_are_quarantined(tmp_path):
    text = (
        "timestamp,tenant_id,host,gpu,gpu_util\n1704067200000000,t,h,0,1\n"
        "9999-99-99,t,h,0,1\n2024-01-01,t,h,0,1\n"
    )
    loaded = read_table([write_text(tmp_path / "t.csv", text)], TELEMETRY)
    check_counts(loaded)
    assert loaded.quarantine["reason"].tolist() == [
        "timestamp: timestamp out of range",
        "timestamp: unparsable timestamp",
    ]
    assert loaded.quarantine["row"].tolist() == [1, 2]


# --- paths and formats ---------------------------------------------------------------------


def test_missing_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file") as err:
        read_table([tmp_path / "nope.csv"], TELEMETRY)
    assert err.value.path.endswith("nope.csv")


def test_unknown_extension_is_an_input_error_unless_format_forced(tmp_path):
    path = write_text(tmp_path / "t.txt", pd.DataFrame(ROWS).to_csv(index=False))
    with pytest.raises(InputError, match="unknown file extension") as err:
        read_table([path], TELEMETRY)
    assert err.value.path == str(path)
    assert read_table([path], TELEMETRY, fmt="csv").counts.accepted == 3
    with pytest.raises(InputError, match="unknown format"):
        read_table([path], TELEMETRY, fmt="xls")


def test_folder_without_readable_files_is_an_input_error(tmp_path):
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(InputError, match="no readable files") as err:
        read_table([tmp_path], TELEMETRY)
    assert err.value.path == str(tmp_path)


def test_folder_is_walked_in_name_order_skipping_bookkeeping_files(tmp_path):
    write(tmp_path / "b.csv", ROWS[1:2])
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "c.jsonl", ROWS[2:])
    write(tmp_path / "a.parquet", ROWS[:1])
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".hidden.csv").write_text("garbage")
    (tmp_path / "notes.txt").write_text("not data")
    assert [f.path.name for f in expand([tmp_path])] == ["a.parquet", "b.csv", "c.jsonl"]
    loaded = read_table([tmp_path], TELEMETRY)
    assert loaded.table["gpu_util"].tolist() == [50.0, 75.5, 0.0]


def test_files_are_concatenated_in_the_order_given(tmp_path):
    a, b = write(tmp_path / "a.csv", ROWS[:1]), write(tmp_path / "b.csv", ROWS[1:])
    assert read_table([b, a], TELEMETRY).table["gpu_util"].tolist() == [75.5, 0.0, 50.0]
    assert read_table(a, TELEMETRY).counts.accepted == 1  # one path alone is fine too


@pytest.mark.parametrize(
    "name", ["t.parquet", "t.csv", "t.csv.gz", "t.jsonl", "t.jsonl.gz", "t.json"]
)
def test_missing_required_column_is_a_schema_error(tmp_path, name):
    rows = [{k: v for k, v in r.items() if k != "gpu_util"} for r in ROWS]
    path = write(tmp_path / name, rows)
    with pytest.raises(SchemaError) as err:
        read_table([path], TELEMETRY)
    assert str(err.value) == f"{path}: missing required column 'gpu_util'"
    assert err.value.column == "gpu_util"


# --- Parquet -------------------------------------------------------------------------------


def test_truncated_parquet_is_an_input_error(tmp_path):
    good = write(tmp_path / "good.parquet", ROWS)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="cannot read Parquet") as err:
        read_table([bad], TELEMETRY)
    assert err.value.path == str(bad)


def test_text_named_parquet_is_an_input_error(tmp_path):
    path = write_text(tmp_path / "t.parquet", "timestamp,tenant_id\n")
    with pytest.raises(InputError, match="t.parquet: cannot read Parquet"):
        read_table([path], TELEMETRY)


def test_parquet_bad_cells_are_quarantined(tmp_path):
    frame = pd.DataFrame(ROWS).assign(gpu_util=[50.0, 140.0, -1.0], tenant_id=["t", None, "t"])
    loaded = read_table([write(tmp_path / "t.parquet", frame)], TELEMETRY)
    check_counts(loaded)
    assert loaded.quarantine[["row", "column", "reason"]].values.tolist() == [
        [2, "tenant_id", "tenant_id: missing required value"],
        [3, "gpu_util", "gpu_util: below minimum 0"],
    ]
    assert json.loads(loaded.quarantine["raw"].iloc[1])["gpu_util"] == -1.0


# --- CSV -----------------------------------------------------------------------------------


def test_csv_malformed_rows_are_quarantined_with_their_row_numbers(tmp_path):
    text = (
        "timestamp,tenant_id,host,gpu,gpu_util\n"
        "2024-01-01T00:00:00Z,t,h,0,1\n"
        "2024-01-01T00:00:01Z,t,h,0\n"  # too few fields
        '2024-01-01T00:00:02Z,t,"multi\nline host",0,2\n'
        "2024-01-01T00:00:03Z,t,h,0,3,surplus\n"  # too many fields
        "2024-01-01T00:00:04Z,t,h,0,400\n"
    )  # row 5: out of range
    loaded = read_table([write_text(tmp_path / "t.csv", text)], TELEMETRY)
    check_counts(loaded)
    assert loaded.counts.read == 5
    assert loaded.quarantine[["row", "reason"]].values.tolist() == [
        [2, "malformed row: wrong number of fields"],
        [4, "malformed row: wrong number of fields"],
        [5, "gpu_util: above maximum 100"],
    ]
    assert json.loads(loaded.quarantine["raw"].iloc[0]) == "2024-01-01T00:00:01Z,t,h,0"
    assert loaded.table["host"].tolist() == ["h", "multi\nline host"]


def test_csv_non_utf8_row_is_quarantined_and_the_rest_read(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(
        b"timestamp,tenant_id,host,gpu,gpu_util\n"
        b"2024-01-01T00:00:00Z,t,h,0,1\n2024-01-01T00:00:01Z,t\xff\xfe,h,0,1\n"
        b"2024-01-01T00:00:02Z,t,h,0,1,extra\n2024-01-01T00:00:03Z,t,h,0,2\n"
    )
    loaded = read_table([path], TELEMETRY)
    check_counts(loaded)
    assert loaded.quarantine[["row", "reason"]].values.tolist() == [
        [2, "not UTF-8"],
        [3, "malformed row: wrong number of fields"],
    ]
    assert loaded.table["gpu_util"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    "content", [b"\x89PNG\r\n\x1a\n\x00\x00\xff\xd8binary", b"", b"PAR1\x15\x04\x15\x00\x00"]
)
def test_csv_that_is_not_csv_is_an_input_error(tmp_path, content):
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        read_table([path], TELEMETRY)
    assert err.value.path == str(path)


def test_json_named_csv_lacks_columns(tmp_path):
    path = write_text(tmp_path / "t.csv", pd.DataFrame(ROWS).to_json(orient="records"))
    with pytest.raises(SchemaError, match="missing required column 'timestamp'"):
        read_table([path], TELEMETRY)


@pytest.mark.parametrize("name", ["t.csv.gz", "t.jsonl.gz", "t.parquet.gz", "t.json.gz"])
def test_invalid_and_truncated_gzip_are_input_errors(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not gzip at all")
    with pytest.raises(InputError) as err:
        read_table([path], TELEMETRY)
    assert err.value.path == str(path)
    whole = gzip.compress(pd.DataFrame(ROWS * 200).to_csv(index=False).encode())
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError) as err:
        read_table([path], TELEMETRY)
    assert err.value.path == str(path)


def test_csv_keeps_namibia_and_reads_blank_cells_as_missing(tmp_path):
    text = (
        "timestamp,tenant_id,src_ip,event,country,principal\n"
        "2024-01-01T00:00:00Z,t,192.0.2.1,login,NA,\n"
        "2024-01-01T00:00:01Z,t,192.0.2.1,login,  ,  \n"
    )
    loaded = read_table([write_text(tmp_path / "a.csv", text)], ACCESS)
    assert loaded.table["country"].tolist()[0] == "NA"
    assert loaded.table["country"].isna().tolist() == [False, True]
    assert loaded.table["principal"].isna().all()


def test_csv_header_names_are_stripped_and_bom_skipped(tmp_path):
    text = "\ufefftimestamp, tenant_id ,host,gpu,gpu_util\n2024-01-01,t,h,0,1\n"
    assert read_table([write_text(tmp_path / "t.csv", text)], TELEMETRY).counts.accepted == 1


def test_csv_with_only_a_header_reads_no_rows(tmp_path):
    loaded = read_table(
        [write_text(tmp_path / "t.csv", "timestamp,tenant_id,host,gpu,gpu_util\n")], TELEMETRY
    )
    assert loaded.counts.read == 0 and list(loaded.table.columns) == TELEMETRY.names
    assert str(loaded.table["timestamp"].dtype) == "datetime64[ns, UTC]"


# --- JSON Lines and JSON -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["t.jsonl", "t.jsonl.gz"])
def test_jsonl_bad_lines_are_quarantined_with_line_numbers(tmp_path, name):
    lines = [json.dumps(r) for r in ROWS]
    text = "\n".join([lines[0], "", lines[1], "[1, 2]", lines[2], lines[2][:30]])
    loaded = read_table([write_text(tmp_path / name, text)], TELEMETRY)
    check_counts(loaded)
    assert loaded.counts.read == 5 and loaded.counts.accepted == 3
    assert loaded.quarantine[["row", "reason"]].values.tolist() == [
        [4, "not a JSON object"],
        [6, "invalid JSON"],
    ]
    assert json.loads(loaded.quarantine["raw"].iloc[1]) == lines[2][:30]


def test_jsonl_line_numbers_count_blank_lines_on_the_fast_path(tmp_path):
    rows = [dict(ROWS[0], gpu_util=10), dict(ROWS[1], gpu_util=200)]
    text = "\n\n".join(json.dumps(r) for r in rows) + "\n"
    loaded = read_table([write_text(tmp_path / "t.jsonl", text)], TELEMETRY)
    assert loaded.quarantine["row"].tolist() == [3]


def test_jsonl_mixed_types_quarantine_only_the_bad_cells(tmp_path):
    rows = [dict(ROWS[0]), dict(ROWS[1], gpu_util="busy"), dict(ROWS[2], gpu="GPU-3a1b")]
    loaded = read_table([write(tmp_path / "t.jsonl", rows)], TELEMETRY)
    check_counts(loaded)
    assert loaded.quarantine[["row", "reason"]].values.tolist() == [[2, "gpu_util: not a number"]]
    assert loaded.table["gpu"].tolist() == ["0", "GPU-3a1b"]


def test_jsonl_without_one_valid_line_is_an_input_error(tmp_path):
    path = write_text(tmp_path / "t.jsonl", '{"timestamp": \n{broken\n')
    with pytest.raises(InputError, match="no line is a valid JSON object") as err:
        read_table([path], TELEMETRY)
    assert (err.value.path, err.value.row) == (str(path), 1)


def test_empty_jsonl_reads_no_rows(tmp_path):
    loaded = read_table([write_text(tmp_path / "t.jsonl", "")], TELEMETRY)
    assert loaded.counts.read == 0 and list(loaded.table.columns) == TELEMETRY.names


def test_json_array_or_object_holding_records(tmp_path):
    path = write_text(tmp_path / "t.json", json.dumps({"Records": ROWS + [7]}))
    loaded = read_table([path], TELEMETRY)
    check_counts(loaded)
    assert loaded.counts.accepted == 3
    assert loaded.quarantine[["row", "reason"]].values.tolist() == [[4, "not a JSON object"]]


def test_json_lines_in_a_json_file_are_read_as_lines(tmp_path):
    text = "\n".join(json.dumps(r) for r in ROWS)
    assert read_table([write_text(tmp_path / "t.json", text)], TELEMETRY).counts.accepted == 3


@pytest.mark.parametrize(
    "text,match",
    [
        ('[{"timestamp": 1,', "invalid JSON"),
        ("42", "expected an array"),
        (b'["\xff"]', "not UTF-8"),
    ],
)
def test_unreadable_json_is_an_input_error(tmp_path, text, match):
    path = write_text(tmp_path / "t.json", text)
    with pytest.raises(InputError, match=match) as err:
        read_table([path], TELEMETRY)
    assert err.value.path == str(path)


# --- window, duplicates, source ------------------------------------------------------------


def test_window_drops_rows_outside_since_until(tmp_path):
    path = write(tmp_path / "t.csv", ROWS)
    loaded = read_table(
        [path],
        TELEMETRY,
        since=pd.Timestamp("2024-01-01T00:01:00"),
        until=pd.Timestamp("2024-01-01T00:02:00Z"),
    )
    check_counts(loaded)
    assert loaded.table["gpu_util"].tolist() == [75.5]
    assert (loaded.counts.out_of_window, loaded.counts.quarantined) == (2, 0)


def test_duplicates_across_files_are_quarantined_with_their_canonical_values(tmp_path):
    a = write(tmp_path / "a.csv", ROWS[:2])
    b = write(tmp_path / "b.jsonl", [dict(ROWS[1], gpu_util=99.0), ROWS[2]])
    loaded = read_table([a, b], TELEMETRY, source="dcgm")
    check_counts(loaded)
    q = loaded.quarantine
    assert q[["source", "file", "row", "column", "reason"]].values.tolist() == [
        ["dcgm", str(b), 1, "timestamp,tenant_id,host,gpu", "duplicate"]
    ]
    raw = json.loads(q["raw"].iloc[0])
    assert pd.Timestamp(raw["timestamp"]) == pd.Timestamp("2024-01-01T00:01:00Z")
    assert raw["gpu_util"] == 99.0
    assert loaded.table["gpu_util"].tolist() == [50.0, 75.5, 0.0]
    assert read_table([a], TELEMETRY).quarantine.empty


def test_source_defaults_to_schema_name(tmp_path):
    path = write(tmp_path / "t.csv", [dict(ROWS[0], gpu_util=101)])
    assert read_table([path], TELEMETRY).quarantine["source"].tolist() == ["telemetry"]


def test_jsonl_bad_lines_in_large_files_are_found_by_bisection(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonl, "PER_LINE", 4)  # small pieces, so that a small file bisects
    lines = [json.dumps(dict(ROWS[0], timestamp=1709251200 + i, gpu_util=i)) for i in range(60)]
    lines[6] = lines[6][:25]  # line 7: truncated
    lines[20] = json.dumps(dict(ROWS[0], gpu_util="busy"))  # line 21: type changes
    lines[32] = "   "  # line 33: blank, not a row
    lines[40] = "[1, 2]"  # line 41: not an object
    path = write_text(tmp_path / "t.jsonl", "\r\n".join(lines))
    loaded = read_table([path], TELEMETRY)
    check_counts(loaded)
    assert loaded.counts.read == 59
    assert reasons_by_row(loaded) == [
        [7, "invalid JSON"],
        [21, "gpu_util: not a number"],
        [41, "not a JSON object"],
    ]
    kept = [i for i in range(60) if i not in (6, 20, 32, 40)]
    assert loaded.table["gpu_util"].tolist() == [float(i) for i in kept]
    assert str(loaded.table["timestamp"].dtype) == "datetime64[ns, UTC]"


def reasons_by_row(loaded) -> list[list]:
    return loaded.quarantine[["row", "reason"]].values.tolist()


def test_jsonl_pieces_align_when_a_column_is_missing_and_its_types_disagree():
    """Found by make fuzz: pieces of a JSON Lines file whose `timestamp` is a number in one,
    text in another and absent in a third still make one table (missing where absent)."""
    from detector.ingest.jsonl import _concat

    pieces = [
        pd.DataFrame({"timestamp": [1], "tenant_id": ["x"]}),
        pd.DataFrame({"timestamp": ["t"], "tenant_id": ["y"]}),
        pd.DataFrame({"tenant_id": ["z"]}),
    ]
    table = _concat(pieces)
    assert list(table.columns) == ["timestamp", "tenant_id"]
    assert table["tenant_id"].tolist() == ["x", "y", "z"]
    assert table["timestamp"].isna().tolist() == [False, False, True]
