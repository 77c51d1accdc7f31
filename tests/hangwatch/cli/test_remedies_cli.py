"""`hangwatch query compare` and `hangwatch query best-times` on an embedded store filled through
the sink's Flusher: the JSON equals hangwatch.report.remedies' judgement, the tables speak the
configured language, and every wrong use ends in one line with the documented exit code."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from hangwatch.cli import run
from hangwatch.cli.common import EXIT_FAILED, EXIT_USAGE
from hangwatch.platform.settings import ClickHouseSettings, load_settings
from hangwatch.report import remedies
from hangwatch.sinks import migrate
from hangwatch.sinks.backends.embedded import EmbeddedBackend
from hangwatch.sinks.writer.flush import Flusher
from testkit.events import BASE_MS, event_records, make_events
from testkit.sinks import Store, batch_of, router_for

DB = "cli_remedies"


@pytest.fixture(scope="module")
def filled(chdb_root: Path) -> Iterator[EmbeddedBackend]:
    backend = EmbeddedBackend(chdb_root)
    migrate.apply(backend, DB, ClickHouseSettings().retention_days)
    store = Store("embedded", backend, DB, ClickHouseSettings(embedded_path=chdb_root, database=DB))
    events = make_events(1200, seed=43, start_ms=BASE_MS, span_s=36 * 3600)
    batch = batch_of(router_for(store), {"call_events": event_records(events)}, int(time.time()))
    Flusher(backend, DB, "sink@test", "Asia/Shanghai").flush(batch)
    yield backend
    migrate.drop(backend, DB)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, chdb_root: Path) -> None:
    monkeypatch.setenv("HANGWATCH_CLICKHOUSE__EMBEDDED_PATH", str(chdb_root))
    monkeypatch.setenv("HANGWATCH_CLICKHOUSE__DATABASE", DB)
    monkeypatch.setenv("HANGWATCH_LANGUAGE", "en")
    monkeypatch.delenv("HANGWATCH_CLICKHOUSE__URL", raising=False)
    monkeypatch.delenv("HANGWATCH_CONFIG", raising=False)


START = datetime.fromtimestamp(BASE_MS // 1000, tz=UTC)
END = START + timedelta(hours=36)


def _iso(t: datetime) -> str:
    return t.isoformat()


def test_compare_groups_json_equals_the_judgement(env: None, filled: EmbeddedBackend,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["query", "compare", "--by", "credit_grade", "--a", "AAA,AA", "--b", "B,C", "--since", _iso(START),
            "--until", _iso(END), "--json"]
    assert run(argv) == 0
    got = orjson.loads(capsys.readouterr().out)
    expected = remedies.compare_groups(filled, load_settings(), DB, "credit_grade", ("AAA", "AA"), ("B", "C"),
                                       START, END)
    assert got == orjson.loads(orjson.dumps(expected.as_dict(), default=str))
    assert [r["rate"] for r in got["rates"]] == ["hangup_rate", "decline_rate", "contact_rate"]
    assert got["rates"][0]["result"]["n_a"] > 0 and got["rates"][0]["needed_per_group"] > 0


def test_compare_table_in_the_configured_language(env: None, filled: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["query", "compare", "--by", "channel", "--since", _iso(START), "--until", _iso(END)]) == 0
    out = capsys.readouterr().out
    assert "hang-up rate" in out and "a = robot" in out and "b = human" in out and "Cochran-Mantel-Haenszel" in out
    assert "design effect" in out
    monkeypatch.setenv("HANGWATCH_LANGUAGE", "zh-CN")
    assert run(["query", "compare", "--by", "pre_notified", "--since", _iso(START), "--until", _iso(END)]) == 0
    out = capsys.readouterr().out
    assert "挂断率" in out and "设计效应" in out and "a = false" in out


def test_compare_rollout(env: None, filled: EmbeddedBackend, capsys: pytest.CaptureFixture[str]) -> None:
    rollout = START + timedelta(hours=18)
    assert run(["query", "compare", "--rollout", _iso(rollout), "--days", "1", "--filter", "channel=robot",
                "--json"]) == 0
    got = orjson.loads(capsys.readouterr().out)
    expected = remedies.compare_rollout(filled, load_settings(), DB, rollout, 1, datetime.now(tz=UTC),
                                        {"channel": ["robot"]})
    assert got == orjson.loads(orjson.dumps(expected.as_dict(), default=str))
    assert got["mode"] == "rollout" and got["mix"]["dof"] > 0
    assert run(["query", "compare", "--rollout", _iso(rollout), "--days", "1"]) == 0
    out = capsys.readouterr().out
    assert "Before and after the rollout" in out and "mix" in out


def test_best_times(env: None, filled: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HANGWATCH_ANALYTICS__BEST_TIME_MIN_ATTEMPTS", "12")
    monkeypatch.setenv("HANGWATCH_ANALYTICS__BEST_TIME_MIN_CONNECTED", "4")
    argv = ["query", "best-times", "--segment", "campaign", "--since", _iso(START), "--until", _iso(END)]
    assert run([*argv, "--json"]) == 0
    got = orjson.loads(capsys.readouterr().out)
    s = load_settings()
    expected = remedies.best_times(filled, s, DB, "campaign", START, END)
    assert [g["value"] for g in got] == [e.value for e in expected]
    assert [[x["slot"] for x in g["recommended"]] for g in got] == [
        [x.label for x in e.best.recommended] for e in expected]
    assert all(g["min_attempts"] == 12 for g in got) and any(g["recommended"] for g in got)
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "Best time to call" in out and "at least 12 attempts" in out


@pytest.mark.parametrize(("argv", "code", "says"), [
    (["query", "compare"], EXIT_USAGE, "give --by"),
    (["query", "compare", "--by", "colour"], EXIT_USAGE, "is not one of"),
    (["query", "compare", "--by", "script_version"], EXIT_USAGE, "needs --a and --b"),
    (["query", "compare", "--by", "channel", "--rollout", "2026-12-01"], EXIT_USAGE, "either --rollout"),
    (["query", "compare", "--rollout", "someday"], EXIT_USAGE, "someday"),
    (["query", "compare", "--by", "channel", "--filter", "colour=red"], EXIT_USAGE, "--filter takes"),
    (["query", "compare", "--by", "channel", "--bogus"], EXIT_USAGE, "--bogus"),
    (["query", "compare", "--by", "script_version", "--a", "v1", "--b", "v1"], EXIT_FAILED, "none in both"),
    (["query", "compare", "--by", "script_version", "--a", "v8", "--b", "v9", "--since", "2020-01-01",
      "--until", "2020-01-02"], EXIT_FAILED, "values with calls"),
    (["query", "compare", "--rollout", "2099-01-01"], EXIT_FAILED, "future"),
    (["query", "best-times", "--segment", "colour"], EXIT_FAILED, "segments:"),
    (["query", "best-times", "--since", "2026-12-03", "--until", "2026-12-01"], EXIT_USAGE, "--since"),
])
def test_errors_in_one_line(env: None, filled: EmbeddedBackend, capsys: pytest.CaptureFixture[str], argv: list[str],
                            code: int, says: str) -> None:
    assert run(argv) == code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1 and says in err, err


def test_unreachable_store_in_one_line(env: None, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HANGWATCH_CLICKHOUSE__URL", "clickhouse://default@127.0.0.1:1/x")
    assert run(["query", "compare", "--by", "channel"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "ClickHouse" in err


def test_help_says_how_borrowers_are_handled(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["query", "compare", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "design effect" in out and "docs/analytics.md" in out and "--rollout" in out
    assert run(["query", "best-times", "--help"]) == 0
    assert "best_time_min_attempts" in " ".join(capsys.readouterr().out.split())


def test_export_has_the_best_slot_column(env: None, filled: EmbeddedBackend, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "flags.csv"
    assert run(["export", "flags", "--since", _iso(START), "--until", _iso(END), "--out", str(out)]) == 0
    header = out.read_text(encoding="utf-8-sig").splitlines()[0]
    assert "next action,best slot" in header, header
