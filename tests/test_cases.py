"""Cases: the evidence of a session as an analyst reads it, on the bundled samples and by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from export_fixtures import scores_frame
from factories import ROOT, SAMPLE_INPUTS, SAMPLES

from detector import cases
from detector.cli import main
from detector.features import origin


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, result.output + repr(result.exception)
    return result.output


@pytest.fixture(scope="module")
def scores(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cases") / "scores.parquet"
    run(
        "-q",
        "score",
        *SAMPLE_INPUTS,
        "--registry",
        str(ROOT / "models"),
        "--out",
        str(out),
    )
    return out


def scenario_case(scores: Path, scenario: str) -> cases.Case:
    """The highest-risk session of the sample tenant that plays `scenario` in truth.csv."""
    truth = pd.read_csv(SAMPLES / "truth.csv")
    tenant = truth.loc[truth["scenario"] == scenario, "tenant_id"].iloc[0]
    table = pd.read_parquet(scores)
    return cases.build_case(table[table["tenant_id"] == tenant].iloc[0])


def test_a_vpn_pretraining_case_names_its_tells_and_countries(scores):
    case = scenario_case(scores, "restricted_vpn_pretraining")
    facts = case.facts()
    assert case.alert and "direct" in case.fired
    countries = json.loads(json.dumps(facts["origin_countries"].value))
    assert "RU" in countries and countries["RU"] >= 1  # the leaks behind the VPN
    assert "RU" in facts["origin_countries"].text and "RU" in case.summary
    assert "direct" in case.summary  # "origin tells fired: direct, ..."
    assert facts["origin_as_orgs"].value and facts["origin_prefixes"].value
    tell = facts["direct"]
    assert tell.fired and tell.push == pytest.approx(
        next(t.weight for t in origin.TELLS if t.name == "direct") * tell.value, abs=1e-3
    )
    assert facts["tensor_share"].push is not None  # the training signals, with their push
    assert facts["est_flop"].value["low"] <= facts["est_flop"].value["high"]


def test_a_reseller_case_names_the_reseller(scores):
    case = scenario_case(scores, "reseller_pretraining")
    facts = case.facts()
    assert "reseller" in case.fired
    assert facts["reseller_name"].text == facts["reseller_name"].value != ""


def test_a_split_job_case_says_why_its_tenants_are_linked(scores):
    case = scenario_case(scores, "restricted_split_pretraining")
    facts = case.facts()
    linked = facts["linked_tenants"].value.split(",")
    assert len(linked) == 2
    reasons = facts["link_reasons"].value
    assert all(f"{t}: " in reasons for t in linked) and "in-step sessions" in reasons


def test_a_benign_case_has_no_fired_tell(scores):
    case = scenario_case(scores, "domestic_finetuning")
    assert not case.alert and case.fired == []
    assert "origin tells fired" not in case.summary
    assert all(not f.fired for f in case.facts().values())


def test_json_holds_the_same_content_as_the_text(scores):
    session = pd.read_parquet(scores)["session_id"].iloc[0]
    text = run("explain", session[:8].upper(), "--scores", str(scores))
    data = json.loads(run("explain", session[:8], "--scores", str(scores), "--format", "json"))
    assert data["session_id"] == session and data["fired"]
    shown = [data["session_id"], data["tenant"], *data["fired"]]
    for section in data["sections"]:
        shown.append(section["title"])
        for fact in section["facts"]:
            shown += [fact["name"], fact["text"]]
            if fact["push"] is not None:
                shown.append(f"{fact['push']:+.2f}")
    for push in data["pushes"]:
        shown += [push["feature"], push["text"], f"{push['contribution']:+.2f}"]
    unwrapped = " ".join(text.split())
    missing = [s for s in shown if " ".join(str(s).split()) not in unwrapped]
    assert not missing


def test_all_alerts_gives_every_alerting_case_highest_risk_first(scores):
    table = pd.read_parquet(scores)
    data = json.loads(run("explain", "--all-alerts", "--scores", str(scores), "--format", "json"))
    assert [d["session_id"] for d in data] == table.loc[table["alert"], "session_id"].tolist()
    assert [d["risk"] for d in data] == sorted((d["risk"] for d in data), reverse=True)


def test_ids_that_are_unknown_or_ambiguous_are_named(scores):
    ids = pd.read_parquet(scores)["session_id"]
    shared = next(p for p in "0123456789abcdef" if ids.str.startswith(p).sum() > 1)
    out = run("explain", shared, "zzzz", "--scores", str(scores), code=2)
    assert "unknown session id(s): zzzz" in out and f"'{shared}' matches" in out
    assert "give session ids or --all-alerts" in run("explain", "--scores", str(scores), code=2)


def test_a_minimal_row_gives_a_case_without_the_evidence_sections():
    row = (
        scores_frame()
        .assign(
            origin_countries=json.dumps({"CN": 120, "SG": 3}),
            origin_tells=json.dumps([{"tell": "working-hours clock", "weight": 0.8}]),
            est_flop=2.2e21,
            est_flop_low=1.1e21,
            est_flop_high=4.4e21,
        )
        .iloc[0]
    )
    case = cases.build_case(row)
    facts = {name: f.text for name, f in case.facts().items()}
    assert facts["origin_countries"] == "CN 120, SG 3"
    assert facts["origin_tells"] == "working-hours clock 0.8"
    assert facts["origin_evidence"] == "90%"
    assert facts["gpu_hours"] == "16.0 GPU h"
    assert facts["est_flop"] == "2.2 ZFLOP (1.1 ZFLOP to 4.4 ZFLOP)"
    assert "about 2.2 ZFLOP (1.1 ZFLOP to 4.4 ZFLOP) of compute" in case.summary
    keys = [s.key for s in case.sections]
    assert cases.TELLS not in keys and cases.TRAINING not in keys
    assert keys[-1] == cases.OTHER  # origin_tells is unknown here
    assert [p.feature for p in case.pushes] == ["origin:direct"]
    assert case.pushes[0].meaning == next(t.meaning for t in origin.TELLS if t.name == "direct")


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("duration_s", 7200.0, "2.0 h"),
        ("est_flop", 1.41e21, "1.41 ZFLOP"),
        ("nvlink_bps", 3.06e11, "306 GB/s"),
        ("reseller", 1.0, "yes"),
        ("busy_frac", 0.97, "97%"),
        ("lockstep", 0.99578, "0.996"),
        ("n_gpus", 24, "24"),
        ("util_mean", float("nan"), "n/a"),
        ("anything", "[1, 2]", "1, 2"),
    ],
)
def test_values_are_formatted_by_their_unit(name, value, text):
    assert cases.format_value(name, value) == text


def test_readable_json_shapes():
    assert cases.readable({"a": 1, "b": 2.5}) == "a 1, b 2.5"
    assert cases.readable([{"prefix": "1.2.3.0/24", "events": 9}, "x"]) == "1.2.3.0/24 9, x"


def test_country_rules_match_the_origin_facts_of_the_scores(scores):
    """The suppression rules' country matcher reads `origin_countries`, which scoring now
    writes: a rule listing every country of a case silences it; one missing a country does not."""
    from detector.suppress import RuleSet, apply_rules, parse_rules

    table = pd.read_parquet(scores)
    case = scenario_case(scores, "restricted_vpn_pretraining")
    countries = list(case.facts()["origin_countries"].value)

    def silenced(listed: list[str]) -> list[str]:
        rule = {"id": "r", "reason": "test", "author": "t", "tenant": [case.tenant]}
        rules = RuleSet(Path("r.toml"), parse_rules({"rule": [rule | {"country": listed}]}, "r"))
        out = apply_rules(table, rules, pd.Timestamp("2026-12-01T00:00:00Z")).scores
        return out.loc[out["suppressed_by"].notna(), "session_id"].tolist()

    assert silenced(countries) == [case.session_id]
    assert silenced(countries[:-1]) == []
