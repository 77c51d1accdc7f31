"""The one time zone and the language: settings (with the deprecated worker.timezone and rules
file zone), local inputs on the CLI, the rules' fingerprint, CLI errors in the configured
language, and `hangwatch query --format` writing data to stdout."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hangwatch.cli import common, run
from hangwatch.platform.settings import Settings
from hangwatch.platform.timeparse import local_zone_name
from hangwatch.streams.core.rules_config import load_rules, rules_from_dict

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)  # 16:00 in Shanghai


def test_one_timezone_setting_with_the_old_one_deprecated() -> None:
    assert Settings().timezone == "Asia/Shanghai" and local_zone_name(Settings()) == "Asia/Shanghai"
    s = Settings(timezone="Europe/Berlin")
    assert s.worker.timezone == "Europe/Berlin"  # the worker reads the one zone
    with pytest.warns(FutureWarning, match="worker.timezone is deprecated"):
        old = Settings(worker={"timezone": "UTC"})  # type: ignore[arg-type]
    assert old.timezone == "UTC" and local_zone_name(old) == "UTC"
    with pytest.raises(ValueError, match="differ"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Settings(timezone="Asia/Tokyo", worker={"timezone": "UTC"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown time zone"):
        Settings(timezone="Mars/Olympus")


def test_env_sets_the_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANGWATCH_TIMEZONE", "UTC")
    monkeypatch.setenv("HANGWATCH_LANGUAGE", "en")
    s = Settings()
    assert s.timezone == "UTC" and s.language == "en"


def test_rules_version_carries_the_zone(tmp_path: Path) -> None:
    shanghai = load_rules(None, "Asia/Shanghai")
    utc = load_rules(None, "UTC")
    assert shanghai.fingerprint != utc.fingerprint
    assert "@Asia/Shanghai" in shanghai.fingerprint and "repeated_refusal:v1" in shanghai.fingerprint
    doc = {"timezone": "UTC", "rules": [{"id": "compliance_quiet_hours", "version": 3}]}
    with pytest.warns(FutureWarning, match="deprecated"):
        assert rules_from_dict(doc, "Asia/Shanghai").timezone == "Asia/Shanghai"  # the setting decides
    with pytest.warns(FutureWarning, match="deprecated"):
        assert rules_from_dict(doc).timezone == "UTC"  # alone, the file's zone still works


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(common._state, "settings", Settings(timezone="Asia/Shanghai", language="en"))


def test_inputs_without_an_offset_are_local(zone: None) -> None:
    # 2026-12-03 15:30 in Beijing is 07:30 UTC: before "now" (08:00 UTC), not 8 hours after it.
    start, end = common.time_range("2026-12-03 15:30", None, now=NOW)
    assert start == datetime(2026, 12, 3, 7, 30, tzinfo=UTC) and end == NOW
    assert common.parse_when("2026-12-03T15:30", now=NOW) == datetime(2026, 12, 3, 7, 30, tzinfo=UTC)
    assert common.parse_when("2026-12-03T15:30+00:00", now=NOW) == datetime(2026, 12, 3, 15, 30, tzinfo=UTC)
    assert common.parse_when("today", now=NOW) == datetime(2026, 12, 2, 16, 0, tzinfo=UTC)  # local midnight
    assert common.time_range("1h30m", None, now=NOW)[0] == datetime(2026, 12, 3, 6, 30, tzinfo=UTC)


def test_errors_in_the_configured_language(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HANGWATCH_LANGUAGE", "zh-CN")
    monkeypatch.delenv("HANGWATCH_CONFIG", raising=False)
    assert run(["report", "--since", "2026-12-03 15:30", "--until", "2026-12-03 15:00"]) == 2
    err = capsys.readouterr().err
    assert "错误" in err and "必须早于" in err and "2026-12-03 15:30 +0800" in err
    assert run(["query", "open_flag_list", "--since", "yesterdayy"]) == 2
    assert "无法识别的时间" in capsys.readouterr().err
    monkeypatch.setenv("HANGWATCH_LANGUAGE", "en")
    assert run(["export", "flags", "--out", "flags.pdf"]) == 2
    assert "--out must end in .xlsx or .csv" in capsys.readouterr().err


def test_query_formats_write_data_to_stdout(monkeypatch: pytest.MonkeyPatch, chdb_root: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """On an empty embedded store: the header row reaches stdout (so `> file` keeps it)."""
    monkeypatch.setenv("HANGWATCH_CLICKHOUSE__EMBEDDED_PATH", str(chdb_root))
    monkeypatch.setenv("HANGWATCH_CLICKHOUSE__DATABASE", "cli_formats")
    monkeypatch.setenv("HANGWATCH_LANGUAGE", "zh-CN")
    monkeypatch.delenv("HANGWATCH_CLICKHOUSE__URL", raising=False)
    monkeypatch.delenv("HANGWATCH_CONFIG", raising=False)
    assert run(["migrate"]) == 0
    capsys.readouterr()
    assert run(["query", "branch_rates", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "branch,attempts,connected,hangup_rate,decline_rate"
    assert run(["query", "branch_rates"]) == 0
    table = capsys.readouterr().out
    assert "挂断率" in table and "分行" in table and "Asia/Shanghai" in table
