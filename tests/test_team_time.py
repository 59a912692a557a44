"""The team's time zone: the setting, and the presets people pick times from."""

from datetime import datetime

import pytest

from app import team


def test_time_zone_defaults_to_config_then_admin_choice_wins(app):
    with app.app_context():
        app.config["TEAM_TIME_ZONE"] = "Europe/Tallinn"
        assert team.time_zone_name() == "Europe/Tallinn"
        team.set_time_zone("America/New_York")
        assert team.time_zone_name() == "America/New_York"


def test_unknown_zone_is_refused(app):
    with app.app_context(), pytest.raises(ValueError, match="not a time zone"):
        team.set_time_zone("Mars/Olympus")


def test_presets_are_wall_times_in_the_team_zone(app):
    with app.app_context():
        team.set_time_zone("Europe/Tallinn")  # UTC+2 in winter
        # Wednesday 2026-12-09 10:30 in Tallinn.
        choices = team.presets(datetime(2026, 12, 9, 8, 30))
        assert choices == {
            "in an hour": datetime(2026, 12, 9, 9, 30),
            "this evening": datetime(2026, 12, 9, 16, 0),
            "tomorrow": datetime(2026, 12, 10, 7, 0),
            "next Monday": datetime(2026, 12, 14, 7, 0),
        }


def test_presets_across_a_dst_change(app):
    with app.app_context():
        team.set_time_zone("Europe/Tallinn")
        # Saturday 2027-03-27 20:00 local (UTC+2); clocks go to UTC+3 on Sunday morning.
        choices = team.presets(datetime(2027, 3, 27, 18, 0))
        assert "this evening" not in choices
        assert choices["tomorrow"] == datetime(2027, 3, 28, 6, 0)
        assert choices["next Monday"] == datetime(2027, 3, 29, 6, 0)
