"""BorrowerFlag v2 on its way out: a v1 consumer (examples/flags_consumer.py) reads it unchanged,
the sink stores its facts and next action (migration 0011, on chdb and as 18.16 SQL), and the
suggestion renders in zh-CN and en."""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from hangwatch.i18n.explain import next_action_text
from hangwatch.i18n.glossary import load_glossary
from hangwatch.platform.settings import ClickHouseSettings
from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.schemas.records import NEXT_ACTIONS
from hangwatch.sinks import convert, migrate
from hangwatch.sinks.backends.base import ServerVersion
from hangwatch.sinks.backends.embedded import EmbeddedBackend
from hangwatch.sinks.tables import BORROWER_FLAGS
from hangwatch.sinks.validate import RowError
from hangwatch.streams.core.flags import apply_events
from hangwatch.streams.core.rules_config import default_rules
from testkit.fakes import FakeMessage

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_795_312_800_000  # 2026-11-23 10:00 +08:00
HOUR = 3_600_000
DAY = 86_400_000


def _ev(i: int, t_ms: int, channel: str) -> CallOutcome:
    return CallOutcome(
        event_id=f"e{i}", call_id=f"c{i}", borrower_id="b1", loan_id="loan-1", occurred_at_ms=t_ms,
        campaign="post_loan_review", channel=channel, agent_id=None if channel == "robot" else "ag-1", branch="br-1",
        outcome="refused", hangup_stage="income_check", duration_s=3.0, attempt_no=1, pre_notified=False,
        credit_grade="A", first_time_borrower=False, script_version="v2")


def v2_flags() -> list[dict[str, Any]]:
    evs = [(_ev(i, T0 + i * HOUR, "robot"), i) for i in range(5)]
    _, flags = apply_events(None, "b1", evs, default_rules(), T0 + DAY)
    return [dict(f) for f in flags]



def _consumer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flags_consumer", ROOT / "examples" / "flags_consumer.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_v1_example_consumer_handles_a_v2_record(caplog: pytest.LogCaptureFixture) -> None:
    flag = json.loads(orjson.dumps(v2_flags()[0]))  # as the consumer's json deserializer gives it
    assert flag["schema_version"] == 2 and flag["next_action"]["code"] == "switch_to_human"
    consumer = _consumer()
    with caplog.at_level(logging.INFO, logger="flags_consumer"):
        consumer.handle(flag, None)
    assert "[medium] RAISED repeated_refusal b1: 3 negative outcomes in 7 days" in caplog.text
    received: list[bytes] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.handle_request, daemon=True).start()
    try:
        consumer.handle(flag, f"http://127.0.0.1:{server.server_port}/hook")
    finally:
        server.server_close()
    assert json.loads(received[0]) == flag  # forwarded whole, v2 fields included


def _row(record: dict[str, Any]) -> dict[str, Any]:
    row = convert.flag_row(FakeMessage("borrower-flags", 0, 0, b"b1", orjson.dumps(record)), 0)
    assert len(row) == len(BORROWER_FLAGS.columns)
    return dict(zip(BORROWER_FLAGS.columns, row, strict=True))


def test_the_sink_row_carries_the_v2_facts_and_defaults_for_v1() -> None:
    raised, escalated = v2_flags()
    row = _row(escalated)
    assert (row["schema_version"], row["fact_outcomes"], row["fact_outcome_counts"]) == (2, ["refused"], [5])
    assert (row["fact_channels"], row["fact_channel_counts"], row["fact_hangup_stages"]) == (["robot"], [5],
                                                                                           ["income_check"])
    assert (row["fact_pre_notified_calls"], row["fact_bad_hour_calls"]) == (0, 2)  # 12:00 and 13:00 local
    assert (row["threshold_metric"], row["threshold_op"], row["threshold_count"], row["threshold_limit"],
            row["threshold_window_ms"]) == ("negative_outcomes", ">=", 5, 5, 7 * DAY)
    assert (row["next_action"], row["next_action_param_names"], row["next_action_param_values"],
            row["next_action_also"]) == ("escalate_branch_visit", ["refusals", "limit"], [5, 5],
                                         ["switch_to_human", "pre_notify_sms"])
    v1 = {k: v for k, v in raised.items() if k not in ("schema_version", "facts", "next_action")}
    old = _row(v1)
    assert old["schema_version"] == 1 and old["next_action"] == "" and old["fact_outcomes"] == []
    assert {k: old[k] for k in list(old)[:23]} == {k: _row(raised)[k] for k in list(old)[:23]}


def test_a_malformed_v2_record_names_the_field() -> None:
    bad = v2_flags()[0]
    bad["next_action"] = {**bad["next_action"], "params": {"calls": "three"}}
    with pytest.raises(RowError, match=r"next_action\.params: calls"):
        _row(bad)
    bad = v2_flags()[0]
    bad["facts"] = {**bad["facts"], "threshold": {"metric": "negative_outcomes"}}
    with pytest.raises(RowError, match=r"facts\.op: required field is missing"):
        _row(bad)


def test_migration_0011_renders_for_clickhouse_18_16_without_json_functions() -> None:
    m = next(m for m in migrate.discover() if m.version == 11)
    retention = ClickHouseSettings().retention_days
    old = "\n".join(migrate.render(m, migrate.RenderContext("d", ServerVersion(18, 16, 1), retention)))
    new = "\n".join(migrate.render(m, migrate.RenderContext("d", ServerVersion(26, 9, 2), retention)))
    assert "LowCardinality" not in old and "next_action LowCardinality(String)" in new
    assert "JSON" not in old.upper().replace("JSON FUNCTIONS", "")


def test_v2_rows_round_trip_through_chdb(chdb_root: Path) -> None:
    backend = EmbeddedBackend(chdb_root)
    db = "flag_v2_roundtrip"
    try:
        migrate.apply(backend, db, ClickHouseSettings().retention_days)
        raised, escalated = v2_flags()
        v1 = {k: v for k, v in raised.items() if k not in ("schema_version", "facts", "next_action")}
        backend.insert(f"{db}.borrower_flags", BORROWER_FLAGS.columns,
                       [tuple(_row(escalated).values()), tuple(_row(v1).values())])
        # A row written by the release before 0011 (its columns only) gets the defaults.
        backend.insert(f"{db}.borrower_flags", BORROWER_FLAGS.columns[:23],
                       [tuple(_row({**v1, "flag_id": "old"}).values())[:23]])
        rows = backend.query(
            f"SELECT flag_id, status, schema_version, fact_outcome_counts, next_action, "
            f"arrayStringConcat(next_action_param_names, ','), next_action_param_values, next_action_also "
            f"FROM {db}.borrower_flags ORDER BY flag_id, status").rows
        fid = escalated["flag_id"]
        assert [tuple(r) for r in rows] == [  # status is an Enum: raised < escalated
            (fid, "raised", 1, [], "", "", [], []),
            (fid, "escalated", 2, [5], "escalate_branch_visit", "refusals,limit", [5, 5],
             ["switch_to_human", "pre_notify_sms"]),
            ("old", "raised", 1, [], "", "", [], []),
        ]
    finally:
        migrate.drop(backend, db)


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_every_next_action_renders_from_the_record_and_from_the_columns(lang: str) -> None:
    w = load_glossary().words(lang)
    raised, escalated = v2_flags()
    sms = {"code": "pre_notify_sms", "params": {"calls": 3}, "also": []}
    slot = {"code": "call_in_best_slot", "params": {"bad_hour_calls": 2, "calls": 3}, "also": []}
    texts = {a["code"]: next_action_text(w, {"next_action": a}) for a in
             (raised["next_action"], escalated["next_action"], sms, slot,
              {"code": "manual_review", "params": {"calls": 3}}, {"code": "none", "params": {}},
              {"code": "pause_until_next_day", "params": {"attempts": 7, "limit": 6}},
              {"code": "reschedule_outside_quiet_hours", "params": {"calls": 1}})}
    assert set(texts) == set(NEXT_ACTIONS)
    assert all(t and "{" not in t for t in texts.values()), texts
    row = _row(escalated)
    assert next_action_text(w, row) == texts["escalate_branch_visit"]
    assert ("5" in texts["escalate_branch_visit"]) and next_action_text(w, {"next_action": ""}) == ""
    expected = {"zh-CN": "4 次中 4 次为智能外呼", "en": "4 of 4 calls were by the robot dialler"}
    assert next_action_text(w, {"next_action": {"code": "switch_to_human", "params": {"robot_calls": 4, "calls": 4}}}
                            ).startswith(expected[lang])


def test_the_example_consumer_takes_hangwatchs_tls_and_sasl_settings() -> None:
    env = {"HANGWATCH_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "HANGWATCH_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
           "HANGWATCH_KAFKA__SASL_USERNAME": "hangwatch", "HANGWATCH_KAFKA__SASL_PASSWORD": "secret",
           "HANGWATCH_KAFKA__SSL_CAFILE": "/etc/ca.pem", "HANGWATCH_KAFKA__SSL_KEYFILE": ""}
    assert _consumer().security_options(env) == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "hangwatch",
        "sasl_plain_password": "secret", "ssl_cafile": "/etc/ca.pem"}
    assert _consumer().security_options({}) == {}
