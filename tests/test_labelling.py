"""Labels: ids by prefix, the labels file, CSV import, and labels that outlive a changed id."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from factories import T0, telemetry

from detector import labelling
from detector.cli import main
from detector.config import load_settings
from detector.errors import InputError
from detector.schema import LABELS
from detector.sessions import cut_sessions

IDS = ["abc1230000000000", "abd4560000000000", "ffe0000000000001"]


def scores_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "session_id": IDS,
            "tenant_id": ["t1", "t1", "t2"],
            "start": pd.to_datetime(
                ["2026-10-05T00:00Z", "2026-10-06T00:00Z", "2026-10-05T00:00Z"]
            ),
            "end": pd.to_datetime(["2026-10-05T06:00Z", "2026-10-06T06:00Z", "2026-10-05T03:00Z"]),
            "risk_score": [80.0, 20.0, 50.0],
        }
    )


@pytest.fixture
def scores(tmp_path) -> Path:
    path = tmp_path / "scores.parquet"
    scores_table().to_parquet(path)
    return path


def label(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, ["label", *args])
    assert result.exit_code == code, result.output + repr(result.exception)
    return result.output


def test_prefixes_match_case_insensitively():
    assert labelling.resolve_ids(IDS, ["ABC", "ffe0", "abd456"], "s") == [IDS[0], IDS[2], IDS[1]]


def test_unknown_and_ambiguous_prefixes_are_named_in_one_line():
    with pytest.raises(InputError) as err:
        labelling.resolve_ids(IDS, ["ab", "zz1", "abc", "99"], "scores.parquet")
    text = str(err.value)
    assert text.startswith("scores.parquet: unknown session id(s): zz1, 99")
    assert "'ab' matches 2: abc123000000, abd456000000" in text
    assert "\n" not in text


def test_label_command_appends_validated_rows(scores, tmp_path):
    labels = tmp_path / "labels.csv"
    out = label("ABC1", "ffe", "abc123", "--incident", "--note", "CN pretraining",
                "--analyst", "ana", "--scores", str(scores), "--labels", str(labels))  # fmt: skip
    assert "added 2 incident label(s) by ana" in out
    label("abd", "--benign", "--scores", str(scores), "--labels", str(labels))
    text = labels.read_text().splitlines()
    assert text[0] == ",".join(LABELS.names) and sum(line == text[0] for line in text) == 1
    table = pd.read_csv(labels)
    assert table["session_id"].tolist() == [IDS[0], IDS[2], IDS[1]]
    assert table["label"].tolist() == ["incident", "incident", "benign"]
    assert table.loc[0, "tenant_id"] == "t1" and table.loc[0, "start"] == "2026-10-05T00:00:00Z"
    assert table.loc[0, "note"] == "CN pretraining" and table.loc[0, "analyst"] == "ana"
    assert pd.to_datetime(table["labeled_at"], utc=True).notna().all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["zz", "yy", "--incident"], "unknown session id(s): zz, yy"),
        (["ab", "--incident"], "'ab' matches 2"),
        (["abc"], "give --incident or --benign"),
        ([], "give session ids or --from-csv"),
    ],
)
def test_label_command_refuses_unclear_requests(scores, tmp_path, args, message):
    labels = tmp_path / "labels.csv"
    out = label(*args, "--scores", str(scores), "--labels", str(labels), code=2)
    assert message in out and not labels.exists()


def test_labels_file_with_other_columns_is_refused(scores, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("id,verdict\n")
    out = label("abc", "--benign", "--scores", str(scores), "--labels", str(labels), code=2)
    assert "expected session_id,tenant_id" in out


def test_import_from_csv_resolves_prefixes_and_ranges(scores, tmp_path):
    verdicts = tmp_path / "verdicts.csv"
    verdicts.write_text(
        "session_id,tenant_id,start,end,label,note\n"
        "ABC,,,,Incident,seen on the dashboard\n"
        ",t2,2026-10-05T01:00Z,2026-10-05T02:00Z,benign,\n"
    )
    labels = tmp_path / "labels.csv"
    label("--from-csv", str(verdicts), "--analyst", "ana", "--scores", str(scores),
          "--labels", str(labels))  # fmt: skip
    table = pd.read_csv(labels)
    assert table["session_id"].fillna("").tolist() == [IDS[0], ""]
    assert table["tenant_id"].tolist() == ["t1", "t2"]
    assert table["label"].tolist() == ["incident", "benign"]
    assert table["analyst"].tolist() == ["ana", "ana"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("abc,,,,maybe\n", "verdicts.csv, row 1, column 'label'"),
        (",t1,2026-10-05,notatime,benign\n", "verdicts.csv, row 1, column 'end'"),
        (",t9,2026-10-05,2026-10-06,benign\n", "row(s) 1: tenant and time range match no session"),
        ("qq,,,,benign\n", "unknown session id(s): qq"),
    ],
)
def test_import_is_all_or_nothing_with_the_bad_row_named(scores, tmp_path, rows, message):
    verdicts = tmp_path / "verdicts.csv"
    verdicts.write_text("session_id,tenant_id,start,end,label\n" + rows)
    labels = tmp_path / "labels.csv"
    out = label(
        "--from-csv", str(verdicts), "--scores", str(scores), "--labels", str(labels), code=2
    )
    assert message in out and not labels.exists()


def test_resolve_labels_by_id_prefix_range_and_reports_the_rest():
    starts = [
        None,
        "2026-10-01T00:00Z",
        "2026-10-05T01:00Z",
        "2026-01-01T00:00Z",
        "2026-10-06T01:00Z",
    ]
    ends = [
        None,
        "2026-10-02T00:00Z",
        "2026-10-05T02:00Z",
        "2026-01-02T00:00Z",
        "2026-10-06T02:00Z",
    ]
    labels = pd.DataFrame(
        {
            "session_id": ["ABC123", "ab", "0000000000000000", "1111111111111111", None],
            "tenant_id": [None, "t9", "t2", "t1", "t1"],
            "start": pd.to_datetime(starts, utc=True),
            "end": pd.to_datetime(ends, utc=True),
            "label": ["incident", "benign", "benign", "incident", "benign"],
        }
    )
    resolved = labelling.resolve_labels(scores_table(), labels)
    assert resolved.labels["session_id"].fillna("").tolist() == [IDS[0], "", ""]
    assert resolved.labels["tenant_id"].tolist()[1:] == ["t2", "t1"]
    assert resolved.by_range == 1
    assert resolved.unmatched["reason"].tolist() == [
        "session id prefix is ambiguous, and no tenant and time range match",
        "no session has this id, and no tenant and time range match",
    ]


def test_a_label_keeps_applying_when_more_history_changes_the_session_id():
    """Run 1 sees a job from 02:00; run 2 reads earlier telemetry too, so the session starts at
    00:00 and gets a new id: the label written in run 1 still finds it, by tenant and range."""
    settings = load_settings(None).sessions
    data = telemetry("t1", 1, 4, 600, seed=1)
    first, _ = cut_sessions(data[data["timestamp"] >= T0 + pd.Timedelta(hours=2)], settings)
    second, _ = cut_sessions(data, settings)
    assert first["session_id"].iloc[0] != second["session_id"].iloc[0]
    now = pd.Timestamp("2026-10-10T00:00Z")
    written = labelling.new_labels(first, "incident", "ana", None, now)
    resolved = labelling.resolve_labels(second, written)
    assert resolved.by_range == 1 and resolved.unmatched.empty
    again = labelling.resolve_labels(first, written)
    assert again.labels["session_id"].tolist() == first["session_id"].tolist()


def test_train_reports_labels_that_match_no_session(tmp_path, caplog):
    telemetry_path, access_path = tmp_path / "telemetry.parquet", tmp_path / "access.csv"
    frames = [telemetry(f"t{i}", 1, 2, 180, seed=i, util=60.0 + 10 * i) for i in range(6)]
    pd.concat(frames, ignore_index=True).to_parquet(telemetry_path)
    pd.DataFrame(
        {
            "timestamp": [T0 + pd.Timedelta(minutes=10)] * 6,
            "tenant_id": [f"t{i}" for i in range(6)],
            "src_ip": "8.8.8.8",
            "event": "ssh",
        }
    ).to_csv(access_path, index=False)
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "session_id,tenant_id,start,end,label\n"
        "ffffffffffffffff,t0,2020-01-01T00:00Z,2020-01-02T00:00Z,incident\n"
        ",t1,2026-10-05T01:00Z,2026-10-05T01:30Z,benign\n"
        ",t2,2026-10-05T01:00Z,2026-10-05T01:30Z,incident\n"
    )
    result = CliRunner().invoke(
        main,
        ["train", "--telemetry", str(telemetry_path), "--access", str(access_path),
         "--labels", str(labels), "--model-dir", str(tmp_path / "model"), "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["labels_unmatched"] == 1
    assert "1 label(s) match no session of this data" in caplog.text
    assert "ffffffffffffffff" in caplog.text
