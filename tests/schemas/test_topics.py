from __future__ import annotations

from pathlib import Path

from hangwatch.schemas.topics import CALL_OUTCOMES, RATE_PARTIALS, registry, topic

ROOT = Path(__file__).resolve().parents[2]


def test_registry_declares_every_topic_once_with_sane_settings() -> None:
    reg = registry()
    assert {"call-outcomes", "call-outcomes.dlq", "hangup-rates", "borrower-flags", "hangup-alerts"} <= set(reg)
    for spec in reg.values():
        assert spec.partitions >= 1 and spec.retention_ms > 0
        assert set(spec.cleanup_policy.split(",")) <= {"compact", "delete"}
        assert spec.producers and spec.consumers and spec.description
        if spec.value_schema.endswith(".json"):
            assert (ROOT / spec.value_schema).is_file()
        if spec.examples:
            assert any((ROOT / spec.examples).glob("*.json"))


def test_partials_topic_is_copartitioned_with_the_source() -> None:
    # The merge stage writes its state to the merge-state changelog partition of the same
    # number as its partials partition, and every changelog has the source's partition count
    # (streams.changelogs).
    assert topic(RATE_PARTIALS).partitions == topic(CALL_OUTCOMES).partitions
