"""Suppression rules: strict files, matching, expiry, the audited editor and the metrics."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from export_fixtures import run_report, scores_frame
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from detector import suppress
from detector.cli import main
from detector.errors import ConfigError
from detector.export import ExportOptions, snapshot_families
from detector.export.collector import registry_of

NOW = pd.Timestamp("2024-06-10T12:00:00Z")
HEAD = '[[rule]]\nid = "r1"\nreason = "known benchmark"\nauthor = "alice"\n'


def rules(tmp_path: Path, text: str) -> suppress.RuleSet:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return suppress.load_rules(path)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('tenat = "a"\n', "unknown key 'tenat' (did you mean 'tenant'?)"),
        ('tenant = "a"\nexpires = "soon"\n', "expires 'soon' is not a date"),
        ('tenant = "a"\nexpires = 2024-02-30\n', "Invalid date"),
        ('conditions = ["n_gpu <= 8"]\n', "unknown column 'n_gpu' (did you mean 'n_gpus'?)"),
        ('conditions = ["n_gpus =< 8"]\n', "is not 'COLUMN OP VALUE'"),
        ('conditions = ["n_gpus <= eight"]\n', "'eight' is not a number"),
        ("conditions = [\"tenant_id < 'a'\"]\n", "text compares with == or != only"),
        ('country = ["CHN"]\n', "country 'CHN' is not an ISO 3166-1 alpha-2 code"),
        ('asn = ["cloud"]\n', "asn 'cloud' is not an AS number"),
        ("expires = 2025-01-01\n", "matches every session"),
        ("tenant = []\n", "'tenant' is an empty list"),
    ],
)
def test_bad_rules_are_one_line_errors_naming_file_rule_and_problem(tmp_path, body, message):
    with pytest.raises(ConfigError) as err:
        rules(tmp_path, HEAD + body)
    text = str(err.value)
    assert message in text and "rules.toml" in text and "\n" not in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[rule]]\nid = "r1"\nauthor = "a"\ntenant = "t"\n', "'reason' is required"),
        ('[[rule]]\nid = "R 1"\nreason = "x"\nauthor = "a"\ntenant = "t"\n', "id must be"),
        (HEAD + 'tenant = "t"\n' + HEAD + 'tenant = "u"\n', "id 'r1' is used twice"),
        ("rules = []\n", "unknown top-level key 'rules' (did you mean 'rule'?)"),
    ],
)
def test_required_keys_ids_and_top_level(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        rules(tmp_path, text)
    assert message in str(err.value)


def test_missing_rules_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such rules file"):
        suppress.load_rules(tmp_path / "nope.toml")


def test_rule_silences_matching_alerts_only_and_keeps_scores(tmp_path):
    scores = scores_frame()  # s1 a critical alert, s2 a no alert, s3 b high alert, s4 c
    ruleset = rules(tmp_path, HEAD + 'tenant = "a"\nconditions = ["n_gpus <= 8"]\n')
    out = suppress.apply_rules(scores, ruleset, NOW)
    assert out.scores["alert"].tolist() == [False, False, True, False]
    assert out.scores["suppressed_by"].tolist() == ["r1", pd.NA, pd.NA, pd.NA]
    assert out.scores["suppression_reason"].iloc[0] == "known benchmark"
    assert out.scores["risk_score"].tolist() == scores["risk_score"].tolist()
    assert out.suppressed == {"r1": 1}
    assert scores["alert"].tolist() == [True, False, True, False]  # input unchanged


def test_conditions_and_nan_never_match(tmp_path):
    scores = scores_frame().assign(alert=True)  # origin_evidence of s4 is NaN
    ruleset = rules(tmp_path, HEAD + 'conditions = ["origin_evidence < 0.5", "risk_score < 90"]\n')
    out = suppress.apply_rules(scores, ruleset, NOW)
    assert out.scores["suppressed_by"].notna().tolist() == [False, True, True, False]


def test_first_matching_rule_wins_and_counts(tmp_path):
    two = HEAD + 'tenant = ["a", "b"]\n' + HEAD.replace("r1", "r2") + 'tenant = "b"\n'
    out = suppress.apply_rules(scores_frame(), rules(tmp_path, two), NOW)
    assert out.suppressed == {"r1": 2, "r2": 0}
    assert out.scores["alert"].sum() == 0


def test_country_rules_need_every_origin_listed(tmp_path):
    scores = scores_frame().assign(
        alert=True,
        origin_countries=[
            json.dumps({"SG": 12}),
            json.dumps({"SG": 3, "CN": 1}),  # also driven from elsewhere: not suppressed
            json.dumps({}),  # nothing known: not suppressed
            '["sg", "my"]',
        ],
    )
    ruleset = rules(tmp_path, HEAD + 'country = ["SG", "MY"]\n')
    out = suppress.apply_rules(scores, ruleset, NOW)
    assert out.scores["suppressed_by"].notna().tolist() == [True, False, False, True]


def test_asn_rules_accept_numbers_and_as_prefixes(tmp_path):
    scores = scores_frame().assign(alert=True, origin_asns=[[13335], ["AS13335"], [7922], None])
    out = suppress.apply_rules(scores, rules(tmp_path, HEAD + 'asn = ["AS13335"]\n'), NOW)
    assert out.scores["suppressed_by"].notna().tolist() == [True, True, False, False]


def test_rule_on_a_column_the_scores_lack_matches_nothing_and_says_so(tmp_path):
    out = suppress.apply_rules(scores_frame(), rules(tmp_path, HEAD + 'entity = "e1"\n'), NOW)
    assert out.scores["alert"].sum() == 2
    assert out.suppressed == {"r1": 0}
    assert "entity_id" in out.warnings[0] and "matches nothing" in out.warnings[0]


def test_expired_rules_stop_applying_and_are_reported(tmp_path, caplog):
    ruleset = rules(tmp_path, HEAD + 'tenant = "a"\nexpires = 2024-06-10\n')
    assert ruleset.rules[0].expires == pd.Timestamp("2024-06-10T00:00:00Z")
    out = suppress.apply_rules(scores_frame(), ruleset, NOW)
    assert out.expired == ["r1"] and out.suppressed == {}
    assert out.scores["alert"].sum() == 2
    assert "expired" in caplog.text
    before = suppress.apply_rules(scores_frame(), ruleset, pd.Timestamp("2024-06-09T23:59Z"))
    assert before.expired == [] and before.suppressed == {"r1": 1}


def test_values_of_reads_every_evidence_shape():
    assert suppress.values_of('{"CN": 3, "SG": 1}') == ["CN", "SG"]
    assert suppress.values_of('[{"country": "CN", "events": 3}]') == ["CN"]
    assert suppress.values_of(["a", "b"]) == ["a", "b"]
    assert suppress.values_of("SG") == ["SG"]
    assert suppress.values_of(None) == [] and suppress.values_of(float("nan")) == []


def test_add_and_expire_edit_the_file_keep_comments_and_log_every_change(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text("# owned by the compliance team\n")
    suppress.add_rule(
        path,
        {"id": "acme", "reason": "benchmarks", "tenant": ["a"], "country": ["sg"]},
        "alice",
        NOW,
    )
    suppress.add_rule(path, {"id": "lab", "reason": "lab", "asn": ["AS7"]}, "bob", NOW)
    text = path.read_text()
    assert text.startswith("# owned by the compliance team\n")
    assert 'country = ["SG"]' in text and "asn = [7]" in text
    later = NOW + pd.Timedelta(hours=1)
    suppress.expire_rule(path, "acme", "contract ended", "carol", later)
    loaded = suppress.load_rules(path)
    assert loaded.rules[0].expires == later and loaded.rules[0].created == NOW
    entries, problem = suppress.audit_status(path)
    assert problem is None
    assert [(e["action"], e["rule"], e["author"]) for e in entries] == [
        ("add", "acme", "alice"),
        ("add", "lab", "bob"),
        ("expire", "acme", "carol"),
    ]
    assert entries[2]["reason"] == "contract ended" and entries[2]["at"] == "2024-06-10T13:00:00Z"
    with pytest.raises(ConfigError, match="expired already"):
        suppress.expire_rule(path, "acme", "again", "carol", later)
    with pytest.raises(ConfigError, match="exists already"):
        suppress.add_rule(path, {"id": "lab", "reason": "x", "tenant": "t"}, "bob", later)
    assert len(suppress.audit_status(path)[0]) == 3  # refused changes are not logged


def test_audit_detects_hand_edits_of_the_rules_and_of_the_log(tmp_path):
    path = tmp_path / "rules.toml"
    suppress.add_rule(path, {"id": "a", "reason": "x", "tenant": "t"}, "alice", NOW)
    suppress.add_rule(path, {"id": "b", "reason": "y", "tenant": "u"}, "alice", NOW)
    path.write_text(path.read_text().replace('"t"', '"t2"'))
    assert "edited outside `gpuwatch suppress`" in suppress.audit_status(path)[1]
    log = suppress.audit_path(path)
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0].replace("alice", "mallory"), lines[1]]) + "\n")
    assert "line 2 does not follow line 1" in suppress.audit_status(path)[1]


def test_suppression_metrics_per_rule_and_by_state():
    report = replace(run_report(), suppressed={"acme": 2, "lab": 0}, rules_expired=["old"])
    families = snapshot_families(scores_frame(), report, ExportOptions())
    text = generate_latest(registry_of(lambda: families)).decode()
    got = {
        (s.name, tuple(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if "suppress" in s.name
    }
    assert got == {
        ("gpuwatch_suppressed_alerts", (("rule", "acme"),)): 2.0,
        ("gpuwatch_suppressed_alerts", (("rule", "lab"),)): 0.0,
        ("gpuwatch_suppression_rules", (("state", "active"),)): 2.0,
        ("gpuwatch_suppression_rules", (("state", "expired"),)): 1.0,
    }
    plain = generate_latest(
        registry_of(lambda: snapshot_families(scores_frame(), run_report(), ExportOptions()))
    ).decode()
    assert "suppress" not in plain  # runs without --suppress export no suppression series


def test_suppress_commands_through_the_cli(tmp_path):
    path = str(tmp_path / "rules.toml")
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, ["suppress", *args])
        assert result.exit_code == code, result.output
        return result.output

    run("add", "--rules", path, "--id", "acme", "--reason", "nightly MLPerf", "--tenant", "a",
        "--when", "n_gpus <= 8", "--expires", "2099-01-01", "--author", "alice")  # fmt: skip
    out = run("add", "--rules", path, "--id", "x", "--reason", "r", "--when", "n_gpu < 3", code=2)
    assert "did you mean 'n_gpus'?" in out
    listed = json.loads(run("list", "--rules", path, "--format", "json"))
    assert [(r["id"], r["state"], r["author"]) for r in listed["rules"]] == [
        ("acme", "active", "alice")
    ]
    assert listed["audit_entries"] == 1 and listed["audit_problem"] is None
    assert "did you mean 'acme'?" in run(
        "expire", "acme2", "--rules", path, "--reason", "r", code=2
    )
    run("expire", "acme", "--rules", path, "--reason", "done", "--author", "bob")
    listed = json.loads(run("list", "--rules", path, "--format", "json"))
    assert listed["rules"][0]["state"] == "expired" and listed["audit_entries"] == 2
