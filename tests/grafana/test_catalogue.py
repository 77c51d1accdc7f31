"""The query catalogue (hangwatch.sinks.catalogue): parameters with their valid choices, one
query text for Grafana's macros and for concrete times, and the one way current flags and
alerts are read (argMax over their version)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from hangwatch.cli import app
from hangwatch.platform.settings import Settings
from hangwatch.schemas.call_outcome import CONNECTED_OUTCOMES, OUTCOMES
from hangwatch.schemas.records import OUTCOME_COUNT_FIELDS, RateUpdate
from hangwatch.sinks import catalogue, migrate, tables
from hangwatch.sinks.backends.base import Backend
from hangwatch.sinks.catalogue import Context, FixedFrame, MacroFrame, QueryError, render
from hangwatch.sinks.catalogue.expr import CONNECTED_LIST, outcome_list
from tests.grafana import macro_helper
from tests.grafana.pipeline_fixture import END, PERSONAL_DATA_HMAC, SPIKE_BRANCH, START, Fixture

S = Settings()
FIXED = Context.of(S, FixedFrame(START, END, 300))
NAMES = sorted(catalogue.catalogue())


# --- parameters and their choices ---------------------------------------------------------

def test_a_wrong_dimension_lists_the_dimensions() -> None:
    with pytest.raises(QueryError, match=r"dimension 'brnch' is not one of all, branch, agent_id, campaign"):
        render("rolling_rates", FIXED, dimension="brnch")


def test_window_sizes_are_the_configured_ones() -> None:
    with pytest.raises(QueryError, match=r"window_size_s 120 is not one of 60, 300, 3600"):
        render("current_rates", FIXED, window_size_s="120")
    ctx = Context.of(Settings(worker={"window_sizes_s": [120]}), FixedFrame())  # type: ignore[arg-type]
    assert "window_size_s = 120" in render("current_rates", ctx, window_size_s="120")


def test_unknown_query_parameter_and_value_type() -> None:
    with pytest.raises(QueryError, match=r"unknown query 'nope'; known: .*rolling_rates"):
        render("nope", FIXED)
    with pytest.raises(QueryError, match=r"no parameter window_size_s; it takes minutes, dimension"):
        render("rolling_rates", FIXED, window_size_s=60)
    with pytest.raises(QueryError, match=r"limit must be a whole number"):
        render("dlq_latest", FIXED, limit="many")
    with pytest.raises(QueryError, match=r"factor 'colour' is not one of script_version, channel"):
        render("comparison", FIXED, factor="colour")


def test_alert_rules_cannot_use_dashboard_variables() -> None:
    rule = Context.of(S, MacroFrame(dashboard=False))
    assert "$__conditionalAll" not in render("hangup_spike_by_branch", rule)
    with pytest.raises(QueryError, match="alert rules cannot filter"):
        render("live_summary", rule)


@pytest.mark.parametrize("name", NAMES)
def test_every_query_renders_for_both_readers(name: str) -> None:
    grafana = render(name, Context.of(S, MacroFrame()))
    fixed = render(name, FIXED)
    assert "$" not in fixed, "concrete times and filters leave no macro behind"
    assert not re.search(r"(borrower_flags|hangup_alerts)( AS \w+)? FINAL", grafana + fixed), "argMax, not FINAL"
    if catalogue.get(name).time:
        assert "$__" in grafana, "a timed query takes its range from the frame"


def test_settings_reach_the_sql() -> None:
    s = Settings(alerts={"min_connected": 50}, worker={"grace_s": 900, "timezone": "UTC"})  # type: ignore[arg-type]
    ctx = Context.of(s, MacroFrame())
    assert "HAVING connected >= 50" in render("top_agents", ctx)
    assert ">= 50" in render("hangup_spike_by_branch", ctx)
    assert "(> 900 s)" in render("late_events", ctx)
    assert "toHour(bucket_start, 'UTC')" in render("branch_hour_heatmap", ctx)


# --- outcome sets from the contract -------------------------------------------------------

def test_outcome_sets_come_from_the_contract() -> None:
    assert OUTCOME_COUNT_FIELDS == OUTCOMES
    assert tuple(f for f in RateUpdate.__annotations__ if f in OUTCOMES) == OUTCOMES
    assert CONNECTED_LIST == "('completed', 'hung_up', 'refused', 'wrong_party')"
    assert set(re.findall(r"'(\w+)'", CONNECTED_LIST)) == CONNECTED_OUTCOMES
    with pytest.raises(ValueError, match="not outcomes"):
        outcome_list({"hung_up", "ghosted"})


# --- one text, two readers: the same answers ------------------------------------------------

def _grafana(backend: Backend, fx: Fixture, name: str, variables: dict[str, list[str]],
             **params: Any) -> list[tuple[Any, ...]]:
    sql = render(name, Context.of(S, MacroFrame()), **params)
    text = macro_helper.expand(sql, int(START.timestamp()), int(END.timestamp()), 300, variables)
    return backend.query(re.sub(r"\bhangwatch(_dash)?\.(?=\w)", rf"{fx.db}\1.", text)).rows


TIMED = [n for n in NAMES if catalogue.get(n).time and n not in ("freshness_age", "seconds_since_stored")]


@pytest.mark.parametrize("variables", [{}, {"branch": [SPIKE_BRANCH, "beijing-haidian"], "channel": ["human"]}],
                         ids=["all", "selected"])
@pytest.mark.parametrize("name", TIMED)
def test_grafana_and_concrete_times_give_the_same_rows(name: str, variables: dict[str, list[str]],
                                                       backend: Backend, fixture_db: Fixture) -> None:
    params = {"factor": "channel"} if name == "comparison" else {}
    ctx = Context.of(S, FixedFrame(START, END, 300, variables), fixture_db.db)
    fixed = backend.query(render(name, ctx, **params)).rows
    assert fixed == _grafana(backend, fixture_db, name, variables, **params)


# --- current flags and alerts: argMax over the version --------------------------------------

T0 = datetime(2025, 6, 2, 1, 0, tzinfo=UTC)


@pytest.fixture
def versioned(backend: Backend) -> Iterator[str]:
    db = f"versions_{uuid.uuid4().hex[:8]}"
    migrate.apply(backend, db, {})
    yield db
    migrate.drop(backend, db)


def _flag(backend: Backend, db: str, flag: str, borrower: str, status: str, severity: str, last_min: int,
          emitted_ms: int, explanation: str) -> None:
    """One transition per INSERT (its own part): nothing is merged before the reads."""
    last = int((T0 + timedelta(minutes=last_min)).timestamp())
    evidence = ([f"e{i}" for i in range(3)], [f"c{i}" for i in range(3)], [last - 120, last - 60, last],
                ["hung_up", "refused", "hung_up"], ["greeting", "", "income_check"], ["A1", "A1", ""],
                ["human"] * 3, ["v1", "", "v2"])
    backend.insert(f"{db}.borrower_flags", tables.BORROWER_FLAGS.columns[:23], [  # v1 columns; v2 ones default
        (flag, borrower, "loan", "repeated_refusal", 1, severity, status, "[]", 3, int(T0.timestamp()), last,
         explanation, emitted_ms // 1000, emitted_ms, last, *evidence)])


def _alert(backend: Backend, db: str, alert: str, status: str, version: int) -> None:
    ws = int(T0.timestamp())
    rate = 0.5 if status == "firing" else 0.2  # a resolved record carries the numbers it resolved with
    backend.insert(f"{db}.hangup_alerts", tables.HANGUP_ALERTS.columns, [
        (alert, status, "branch", alert, 300, ws, ws + 300, 40, 20, rate, 0.4, 0.6, 0.2, 500, f"{alert} {status}",
         version, ws + 300 * version, ws + 300 * version)])


def test_current_flags_are_the_furthest_status_latest_emission(backend: Backend, versioned: str) -> None:
    b, db = backend, versioned
    base = int(T0.timestamp() * 1000)
    # Flag 1: raised, escalated twice (a redelivery with a later emission and new text),
    # inserted newest first: the current state is the later escalation.
    _flag(b, db, "f1", "b-1", "escalated", "high", 20, base + 3000, "escalated again")
    _flag(b, db, "f1", "b-1", "escalated", "high", 20, base + 2000, "escalated")
    _flag(b, db, "f1", "b-1", "raised", "medium", 10, base + 1000, "raised")
    # Flag 2: raised, then resolved (inserted first): closed.
    _flag(b, db, "f2", "b-2", "resolved", "medium", 30, base + 5000, "resolved")
    _flag(b, db, "f2", "b-2", "raised", "medium", 10, base + 4000, "raised")
    # Flag 3: only raised, with a stale redelivery emitted earlier.
    _flag(b, db, "f3", "b-3", "raised", "low", 5, base + 6000, "raised late copy")
    _flag(b, db, "f3", "b-3", "raised", "low", 5, base + 500, "raised first")

    for frame in (FixedFrame(), FixedFrame(T0, T0 + timedelta(hours=1))):
        ctx = Context.of(S, frame, db)
        rows = catalogue.run(b, "open_flag_list", ctx).dicts()
        assert [(r["borrower_id"], r["status"], r["severity"], r["explanation"]) for r in rows] == [
            ("b-1", "escalated", "high", "escalated again"), ("b-3", "raised", "low", "raised late copy")]
        assert catalogue.run(b, "open_flag_count", ctx).scalar() == 2
        top = catalogue.run(b, "top_flagged_borrowers", ctx).dicts()
        assert [(r["borrower"], r["max_severity"], r["explanation"]) for r in top] == [
            ("b-1", "high", "escalated again"), ("b-3", "low", "raised late copy")]
    # A range that starts after flag 1 escalated (minute 20) still sees it; after its last
    # call it does not.
    late = Context.of(S, FixedFrame(T0 + timedelta(minutes=15), T0 + timedelta(hours=1)), db)
    assert [r["borrower_id"] for r in catalogue.run(b, "open_flag_list", late).dicts()] == ["b-1"]
    later = Context.of(S, FixedFrame(T0 + timedelta(minutes=25), T0 + timedelta(hours=1)), db)
    assert catalogue.run(b, "open_flag_count", later).scalar() == 0


def test_current_alerts_are_the_highest_version(backend: Backend, versioned: str) -> None:
    b, db = backend, versioned
    _alert(b, db, "a-resolved", "resolved", 2)  # resolved record stored before the firing one
    _alert(b, db, "a-resolved", "firing", 1)
    _alert(b, db, "a-firing", "firing", 1)
    _alert(b, db, "a-firing", "firing", 1)  # redelivered
    ctx = Context.of(S, FixedFrame(T0 - timedelta(hours=1), T0 + timedelta(hours=1)), db)
    assert [r["alert_id"] for r in catalogue.run(b, "active_alerts", ctx).dicts()] == ["a-firing"]
    assert [r["value"] for r in catalogue.run(b, "firing_alerts_in_range", ctx).dicts()] == ["a-firing"]
    assert catalogue.run(b, "firing_alert_count", ctx).scalar() == 1


# --- the CLI: errors that list the choices, one line, no traceback ----------------------------

def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    out = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in out
    return result.exit_code, re.sub(r"\s+", " ", out)


def test_cli_lists_the_valid_choices() -> None:
    code, out = _cli("query", "current_rates", "--dimension", "brnch", "--sql")
    assert code == 2 and "'brnch' is not one of all, branch" in out
    code, out = _cli("query", "rolling_rates", "--window-size", "60", "--sql")
    assert code == 2 and "no parameter window_size_s" in out
    code, out = _cli("query", "curent_rates", "--sql")
    assert code == 2 and "known:" in out and "current_rates" in out
    code, out = _cli("query", "freshness", "--since", "1h", "--sql")
    assert code == 2 and "takes no --since" in out
    code, out = _cli("query", "comparison", "-p", "factor=channel", "--since", "2h", "--sql")
    assert code == 0 and "channel AS channel" in out and "rollup_1m" in out


def test_cli_times_follow_the_one_grammar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANGWATCH_LANGUAGE", "en")  # the messages below; zh-CN: tests/hangwatch/cli
    code, out = _cli("query", "dlq_summary", "--since", "90s", "--sql")
    assert code == 0 and "d_received_at >= toDateTime(" in out
    code, out = _cli("query", "dlq_summary", "--since", "soon", "--sql")
    assert code == 2 and "not a time: 'soon'" in out and "now-2h" in out
    code, out = _cli("report", "--since", "soon")
    assert code == 2 and "now-2h" in out
    code, out = _cli("report", "--since", "now", "--until", "now-1h")
    assert code == 2 and "must be before" in out


# --- every query on every supported server ----------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_every_query_runs_on_every_server(name: str, backend: Backend, fixture_db: Fixture) -> None:
    """As `hangwatch query NAME` and the report run it (concrete times), on chdb and on 18.16."""
    params = {"comparison": {"factor": "credit_grade"},
              "borrower_calls": {"borrower": fixture_db.events[0].borrower_id},
              "dlq_personal_data": {"hmac": PERSONAL_DATA_HMAC}}.get(name, {})
    ctx = Context.of(S, FixedFrame(START, END, 300), fixture_db.db)
    r = backend.query(render(name, ctx, **params))
    assert r.columns
    if name not in ("freshness_age", "seconds_since_stored", "active_alerts", "current_rates"):
        assert r.rows, f"{name}: no rows over the fixture"
