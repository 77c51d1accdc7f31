"""hangwatch.platform.logs.RepeatFilter: a flood of the same line becomes one line per interval
with a count; different lines, and the project's own INFO lines, are not held back."""

from __future__ import annotations

import logging

from hangwatch.platform.logs import RepeatFilter, kind_of


def _record(name: str, level: int, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args or None, None)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_flood_is_one_line_per_interval_with_the_count() -> None:
    clock = Clock()
    f = RepeatFilter(every_s=30, clock=clock)
    passed = []
    for i in range(4000):  # 40 s of aiokafka retrying at 100 lines/s, node ids and ports varying
        clock.now = 1000.0 + i / 100
        r = _record("aiokafka.conn", logging.ERROR, "Unable connect to node with id %s: [Errno 111] Connect call "
                    "failed ('127.0.0.1', %d)", i % 3, 9092 + i % 2)
        if f.filter(r):
            passed.append(r.getMessage())
    assert len(passed) == 2, passed
    assert "more like this" not in passed[0]
    assert passed[1].endswith("[2999 more like this in the last 30 s]")


def test_different_lines_and_levels_are_kinds_of_their_own() -> None:
    f = RepeatFilter(every_s=30, clock=Clock())
    records = [_record("aiokafka", logging.ERROR, "Unable to update metadata from %s", 1),
               _record("aiokafka", logging.ERROR, "Unable connect to node with id %s", 1),
               _record("aiokafka", logging.WARNING, "Unable connect to node with id %s", 1),
               _record("kafka.client", logging.ERROR, "Unable connect to node with id %s", 1)]
    assert [f.filter(r) for r in records] == [True, True, True, True]
    assert f.filter(_record("aiokafka", logging.ERROR, "Unable to update metadata from %s", 2)) is False


def test_own_info_lines_always_pass_but_own_warnings_are_limited() -> None:
    f = RepeatFilter(every_s=30, clock=Clock())
    restores = [_record("hangwatch.streams.partition_stage", logging.INFO, "partition %d: restored %d cells", p, 10)
                for p in range(4)]
    assert all(f.filter(r) for r in restores)
    retry = "%d of %d records were not delivered; retrying in %.1f s"
    warns = [_record("hangwatch.streams.outbox", logging.WARNING, retry, n, 100, 0.4) for n in range(5)]
    assert [f.filter(r) for r in warns] == [True, False, False, False, False]


def test_the_kind_ignores_numbers_addresses_and_quoted_values() -> None:
    a = _record("kafka.conn", logging.WARNING, "<BrokerConnection node_id=1 host=127.0.0.1:9092> timed out after 3.5 s")
    b = _record("kafka.conn", logging.WARNING, "<BrokerConnection node_id=2 host=10.0.0.7:9093> timed out after 12 s")
    assert kind_of(a) == kind_of(b)


def test_a_library_retry_keeps_its_exception_in_one_line() -> None:
    f = RepeatFilter(every_s=30, clock=Clock())
    try:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9092)")
    except OSError:
        import sys

        r = logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, "Unable connect to %s", ("node 1",),
                              sys.exc_info())
    assert f.filter(r)
    assert r.exc_info is None and r.getMessage().startswith("Unable connect to node 1 (ConnectionRefusedError(")
    assert logging.Formatter().format(r).count("\n") == 0
