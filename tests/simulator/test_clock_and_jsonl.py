"""Timestamp formatting, the arrival clock, and the JSONL file format (the simulator's time
options are parsed by hangwatch.platform.timeparse, tested in tests/hangwatch/platform)."""

from __future__ import annotations

import random

import orjson
import pytest

from hangwatch.schemas.call_outcome import format_ts, parse_ts
from hangwatch.simulator import FaultConfig, SimConfig, SimRecord, generate, read_jsonl, write_jsonl
from hangwatch.simulator.clock import ArrivalClock, TsFormatter, is_quiet, local_hour
from hangwatch.simulator.jsonl import line_to_record, record_to_line

from .conftest import START_MS


def test_ts_formatter_equals_format_ts() -> None:
    fmt = TsFormatter()
    rng = random.Random(0)
    t = START_MS
    for _ in range(5000):
        t += rng.randrange(0, 3000)
        assert fmt(t) == format_ts(t)


def test_local_hour_is_shanghai_time() -> None:
    assert local_hour(parse_ts("2026-11-27T21:59:59+08:00")) == 21
    assert is_quiet(parse_ts("2026-11-27T22:00:00+08:00"))
    assert is_quiet(parse_ts("2026-11-28T07:59:59.999+08:00"))
    assert not is_quiet(parse_ts("2026-11-28T08:00:00+08:00"))


def test_arrival_clock_starting_at_night_waits_for_eight_o_clock() -> None:
    clock = ArrivalClock(parse_ts("2026-11-27T23:00:00+08:00"), 10.0, 0.0, random.Random(1))
    first = clock.next_ms()
    assert parse_ts("2026-11-28T08:00:00+08:00") <= first < parse_ts("2026-11-28T08:00:01+08:00")


def test_jsonl_round_trip_keeps_bytes_and_labels(tmp_path) -> None:  # type: ignore[no-untyped-def]
    faults = FaultConfig(duplicates=0.02, out_of_order=0.05, late=0.01, malformed=0.2)
    cfg = SimConfig(seed=21, count=4000, rate=0.5, start_ms=START_MS, faults=faults)
    records = list(generate(cfg))
    path = tmp_path / "run.jsonl"
    assert write_jsonl(records, path) == len(records)
    back = list(read_jsonl(path))
    assert back == records  # keys, exact value bytes, events, labels, lateness
    kinds = {r.error_kind for r in records if r.error_kind}
    assert {"not_utf8", "not_json", "empty_key", "oversized"} <= kinds
    # Plain JSON lines: every line parses; valid values are embedded as objects, readable.
    lines = path.read_bytes().splitlines()
    assert len(lines) == len(records)
    first = orjson.loads(lines[0])
    assert first["key"].startswith("b-") and first["value"]["schema_version"] == 1


def test_jsonl_value_that_would_not_survive_re_encoding_is_base64() -> None:
    pretty = b'{ "a": 1 }'
    r = SimRecord(key=None, value=pretty, event=None)
    line = orjson.loads(record_to_line(r))
    assert "value_b64" in line and line["key"] is None
    assert line_to_record(record_to_line(r)).value == pretty


def test_jsonl_reader_names_the_bad_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"key": "b-1", "value": {"x": 1}}\n\n{"key": "b-2"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:3: line has neither value"):
        list(read_jsonl(path))
