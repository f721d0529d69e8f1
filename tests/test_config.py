from __future__ import annotations

import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.config import country_zones, load_settings
from detector.errors import ConfigError


def test_defaults_are_the_documented_policy():
    s = load_settings(env={})
    assert s.jurisdiction.countries_of_concern == {"CN", "HK", "MO", "CU", "IR", "KP", "RU", "VE"}
    assert s.jurisdiction.zone_of("CN") == "Asia/Shanghai"
    assert s.jurisdiction.zone_of("US") == "America/New_York"  # from the tz database table
    assert 14061 in s.hosting.asns and "m247" in s.hosting.org_keywords
    assert s.source == ("default",)


def test_a_user_file_overrides_only_what_it_names(tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[jurisdiction]\ncountries_of_concern = ["ir", "KP"]\n[sessions]\ngap_seconds = 600\n'
    )
    s = load_settings(policy, env={})
    assert s.jurisdiction.countries_of_concern == {"IR", "KP"}
    assert s.sessions.gap_seconds == 600.0 and s.sessions.min_active_samples == 10
    assert s.source == ("default", str(policy))


def test_environment_overrides_file_and_config_path(tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text("[scoring]\nalert_risk = 50\n")
    s = load_settings(
        env={
            "GPUWATCH_CONFIG": str(policy),
            "GPUWATCH_SCORING_ALERT_RISK": "80",
            "GPUWATCH_JURISDICTION_COUNTRIES_OF_CONCERN": "RU, BY",
        }
    )
    assert s.scoring.alert_risk == 80.0
    assert s.jurisdiction.countries_of_concern == {"RU", "BY"}
    assert s.override("sessions", gap_seconds=60).sessions.gap_seconds == 60
    assert s.override("sessions", gap_seconds=None) is s


@pytest.mark.parametrize(
    "text, match",
    [
        ("[nonsense]\nx = 1\n", "unknown section"),
        ("[sessions]\ngap = 1\n", "unknown key"),
        ("[sessions\n", "not valid TOML"),
        ('[jurisdiction]\ncountries_of_concern = ["China"]\n', "alpha-2"),
        ("[jurisdiction]\nworking_hours = [19, 9]\n", "working_hours"),
        ('[jurisdiction]\ntimezones = { CN = "Mars/Olympus" }\n', "no valid zone for CN"),
        ("[scoring]\nalert_risk = 120\n", "alert_risk"),
        ("[sessions]\ngap_seconds = -5\n", "positive"),
    ],
)
def test_invalid_settings_name_the_problem(tmp_path, text, match):
    policy = tmp_path / "bad.toml"
    policy.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_settings(policy, env={})


def test_bad_environment_value_is_a_config_error():
    with pytest.raises(ConfigError, match="GPUWATCH_SESSIONS_GAP_SECONDS"):
        load_settings(env={"GPUWATCH_SESSIONS_GAP_SECONDS": "soon"})


def test_cli_reports_a_bad_config_as_usage_error(tmp_path):
    policy = tmp_path / "bad.toml"
    policy.write_text("[sessions]\ngap = 1\n")
    result = CliRunner().invoke(main, ["--config", str(policy), "features"])
    assert result.exit_code == 2 and "unknown key" in result.output
    assert "Traceback" not in result.output


def test_every_country_has_a_valid_zone():
    from zoneinfo import ZoneInfo

    zones = country_zones()
    assert len(zones) > 240
    for zone in set(zones.values()):
        ZoneInfo(zone)
