"""The two stages without Faust or a broker (tests/streams/fake_broker.py provides the ports):
the checkpoint's commit order, exact counts against the batch oracle, restarts that replay a
batch, records of partitions not owned, and sends that fail before they succeed."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import orjson
import pytest

from hangwatch.platform.settings import Settings
from hangwatch.schemas.topics import CALL_OUTCOMES, registry
from hangwatch.simulator import FaultConfig, SimConfig, generate
from hangwatch.streams import changelogs
from hangwatch.streams.core.partition_rates import WATERMARK_KEY
from hangwatch.streams.core.rules_config import load_rules
from hangwatch.streams.merge_stage import MergeStage
from hangwatch.streams.partition_stage import PartitionStage
from hangwatch.streams.stage import StageIO
from testkit.fake_broker import FakeBroker
from testkit.oracles.flags import oracle_flags
from testkit.oracles.rates import oracle_counts

START_MS = 1_764_547_200_000  # 2025-12-01T00:00Z: a fixed past, so nothing is in the future


def _settings(tmp_path: Path) -> Settings:
    s = Settings()
    s.worker.data_dir = tmp_path
    s.worker.borrower_store = "memory"
    return s


def _broker(s: Settings) -> FakeBroker:
    parts = {s.kafka.topic(t.name): t.partitions for t in registry().values()}
    parts.update({c.name(s.worker.app_id): changelogs.partitions() for c in changelogs.ALL})
    return FakeBroker(parts)


def _stages(s: Settings, broker: FakeBroker) -> tuple[PartitionStage, MergeStage]:
    io = StageIO(producer=broker, control=broker, changelogs=broker)
    p1, p2 = PartitionStage(s, io), MergeStage(s, io)
    p1.assign(range(broker.partitions[p1.topics.source]))
    p2.assign(range(broker.partitions[p2.topics.partials]))
    return p1, p2


def _load_calls(s: Settings, broker: FakeBroker, count: int, faults: FaultConfig | None = None) -> list:
    cfg = SimConfig(seed=3, rate=20.0, count=count, start_ms=START_MS, borrowers=300, refuser_share=0.2,
                    faults=faults or FaultConfig())
    records = list(generate(cfg))
    for r in records:
        broker.produce(s.kafka.topic(CALL_OUTCOMES), r.key, r.value)
    return [r.event for r in records if r.event is not None]


async def _drain(stage: PartitionStage | MergeStage, broker: FakeBroker, topic: str, positions: dict[int, int],
                 batch: int = 150) -> None:
    while records := broker.consume(topic, positions, batch):
        await stage.process(records, broker.acknowledge)


def _latest_rates(broker: FakeBroker, topic: str) -> dict[str, dict[str, int]]:
    latest: dict[str, dict] = {}
    for raw in broker.values(topic):
        u = orjson.loads(raw)
        if u["key"] not in latest or u["version"] > latest[u["key"]]["version"]:
            latest[u["key"]] = u
    return {k: {f: u[f] for f in ("attempts", "connected", "completed", "hung_up", "refused", "wrong_party",
                                  "declined", "no_answer", "busy", "voicemail", "invalid_number")}
            for k, u in latest.items()}


def test_a_batch_commits_outputs_then_state_then_positions_then_acknowledges(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    broker = _broker(s)
    p1, _ = _stages(s, broker)
    _load_calls(s, broker, 400, FaultConfig(malformed=0.02))
    asyncio.run(p1.load(range(4)))
    claims = [(t, k.split(b"|", 1)[1]) for ev, t, k in broker.events]
    assert claims == [(p1.topics.rates_changelog, WATERMARK_KEY.encode())] * 4, \
        "loading a partition persists its new epoch (in the watermark record) before any output"
    broker.events.clear()
    records = broker.consume(p1.topics.source, {}, 1000)
    processed = asyncio.run(p1.process(records, broker.acknowledge))
    assert len(processed) == len(records)
    watermark_key = WATERMARK_KEY.encode()

    def step(topic: str, key: bytes) -> int:
        if topic in (p1.topics.dlq, p1.topics.flags) or (topic == p1.topics.partials and key):
            return 1  # outputs
        if topic == p1.topics.borrowers_changelog or (topic == p1.topics.rates_changelog
                                                      and key.split(b"|", 1)[1] != watermark_key):
            return 2  # state
        return 3  # positions: the watermark record and its broadcast (partials without a key)

    steps = [step(t, k) if ev == "send" else 4 for ev, t, k in broker.events]
    assert steps == sorted(steps), "outputs, then state, then positions, then the acknowledgement"
    assert set(steps) == {1, 2, 3, 4} and steps.count(4) == 1
    assert broker.events[-1] == ("ack", f"{len(records)} records", b"")
    watermarks = [v for k, v in broker.logs[(p1.topics.partials, 0)] if k == b""]
    assert len(watermarks) == 4, "one broadcast per source partition to every partials partition"


def test_counts_through_both_stages_equal_the_batch_oracle_with_duplicates_and_disorder(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    broker = _broker(s)
    p1, p2 = _stages(s, broker)
    events = _load_calls(s, broker, 1500, FaultConfig(duplicates=0.05, out_of_order=0.05, malformed=0.01))
    asyncio.run(_drain(p1, broker, p1.topics.source, {}))
    asyncio.run(_drain(p2, broker, p2.topics.partials, {}))
    assert _latest_rates(broker, p2.topics.rates) == oracle_counts(events, s.worker.window_sizes_s)


def test_a_restart_restores_from_the_changelogs_and_a_replayed_batch_changes_nothing(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    broker = _broker(s)
    p1, p2 = _stages(s, broker)
    events = _load_calls(s, broker, 1200, FaultConfig(duplicates=0.03))
    source, partials = p1.topics.source, p2.topics.partials
    first = broker.consume(source, {}, 200)
    asyncio.run(p1.process(first, broker.acknowledge))
    outputs_before = len(broker.values(p1.topics.flags)) + len(broker.values(partials))

    # A crash after the commit, before the offsets were committed: a new worker replays the batch.
    p1_again, p2_again = _stages(s, broker)
    replayed = asyncio.run(p1_again.process(first, broker.acknowledge))
    assert len(replayed) == len(first), "replays are acknowledged"
    assert len(broker.values(p1.topics.flags)) + len(broker.values(partials)) == outputs_before, \
        "a replay of persisted work sends no outputs"
    asyncio.run(_drain(p1_again, broker, source, {p: 200 for p in range(4)}))
    asyncio.run(_drain(p2_again, broker, partials, {}))
    assert _latest_rates(broker, p2.topics.rates) == oracle_counts(events, s.worker.window_sizes_s)


def test_records_of_partitions_not_owned_are_neither_processed_nor_acknowledged(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    broker = _broker(s)
    p1, _ = _stages(s, broker)
    _load_calls(s, broker, 300)
    p1.revoke([1, 2, 3])
    records = broker.consume(p1.topics.source, {}, 1000)
    processed = asyncio.run(p1.process(records, broker.acknowledge))
    assert processed and {r.partition for r in processed} == {0}
    assert broker.events[-1] == ("ack", f"{len(processed)} records", b"")


def test_nothing_is_processed_while_the_group_is_not_settled(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    broker = _broker(s)
    io = StageIO(producer=broker, control=broker, changelogs=broker, ready=lambda: False)
    p1 = PartitionStage(s, io)
    p1.assign(range(4))
    _load_calls(s, broker, 50)
    assert asyncio.run(p1.process(broker.consume(p1.topics.source, {}, 100), broker.acknowledge)) == []
    assert broker.events == []


def test_a_failed_state_send_is_retried_and_the_batch_acknowledged_only_after_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings(tmp_path)
    broker = _broker(s)
    p1, _ = _stages(s, broker)
    _load_calls(s, broker, 200)
    broker.failures[p1.topics.rates_changelog] = 2
    sleeps: list[float] = []

    async def no_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr("hangwatch.streams.outbox.asyncio.sleep", no_sleep)
    records = broker.consume(p1.topics.source, {}, 1000)
    asyncio.run(p1.process(records, broker.acknowledge))
    assert len(sleeps) >= 1, "the failed send was retried after a back-off"
    assert broker.failures[p1.topics.rates_changelog] == 0
    acks = [i for i, (ev, _, _) in enumerate(broker.events) if ev == "ack"]
    rates_sends = [i for i, (ev, t, _) in enumerate(broker.events) if ev == "send" and t == p1.topics.rates_changelog]
    assert acks == [len(broker.events) - 1] and rates_sends and max(rates_sends) < acks[0]


def test_every_alert_setting_reaches_the_detector(tmp_path: Path) -> None:
    """Each field of AlertSettings is passed to the spike rule's AlertConfig (a setting the
    worker ignored would be a silent misconfiguration)."""
    import dataclasses

    from hangwatch.platform.settings import AlertSettings
    from hangwatch.streams.merge_stage import alert_config

    s = _settings(tmp_path)
    changed = {"window_size_s": 600, "baseline_s": 7200, "min_connected": 11, "min_baseline_connected": 12, "z": 2.5,
               "min_relative_increase": 0.7, "resolve_after_windows": 3, "seasonal_days": 3,
               "min_seasonal_connected": 13, "seasonal_relative_increase": 0.2, "scan_windows": 4,
               "min_scan_windows": 3,
               "rate_drift": 0.07}
    assert set(changed) == set(AlertSettings.model_fields), "a new alert setting needs a value here"
    s.alerts = AlertSettings(**changed)
    cfg = dataclasses.asdict(alert_config(s))
    assert {k: cfg[k] for k in changed} == changed


def _cells(stage: MergeStage) -> dict[str, list[int]]:
    return {k: c.total for st in stage.states.values() for k, c in st.cells.items()}


def test_a_replaced_owner_that_resumes_late_cannot_roll_back_the_rates(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Issue 17 (the soak's paused worker): worker A is paused past its session timeout with a
    fetch in flight; B takes its partitions over, restores them and goes on; A resumes, still
    thinks it owns them and commits its batch: stale snapshots to the merge stage and stale
    cells to the changelog, both after B's newer ones. Then C takes over from the changelog.
    Neither the merge stage (fenced by the owners' epochs and the snapshots' positions) nor C's
    restore (fenced by the cells' applied offsets) may take A's late writes over B's."""
    s = _settings(tmp_path)
    broker = _broker(s)
    events = _load_calls(s, broker, 1600, FaultConfig(duplicates=0.03, out_of_order=0.03))
    a, merge = _stages(s, broker)
    source = a.topics.source
    positions: dict[int, int] = {}
    asyncio.run(a.process(broker.consume(source, positions, 100), broker.acknowledge))
    in_flight = broker.consume(source, positions, 100)  # fetched by A just before it was paused

    b, _ = _stages(s, broker)  # A's session expired: B restores from the changelogs
    b_positions = {p: 100 for p in range(4)}
    for _ in range(2):
        asyncio.run(b.process(broker.consume(source, b_positions, 100), broker.acknowledge))
    stale_from = {p: len(broker.logs[(a.topics.partials, p)]) for p in range(4)}

    asyncio.run(a.process(in_flight, broker.acknowledge))  # A resumes and commits its batch
    assert any(len(broker.logs[(a.topics.partials, p)]) > n for p, n in stale_from.items()), \
        "the zombie's snapshots reached the partials topic after the new owner's"

    c, _ = _stages(s, broker)  # another rebalance: C restores from the changelogs
    asyncio.run(_drain(c, broker, source, dict(b_positions)))
    with caplog.at_level(logging.INFO, logger="hangwatch.streams.merge_stage"):
        asyncio.run(_drain(merge, broker, merge.topics.partials, {}))
    assert _latest_rates(broker, merge.topics.rates) == oracle_counts(events, s.worker.window_sizes_s)
    assert "stale snapshots of a replaced owner" in caplog.text, "the zombie's snapshots were dropped"


def test_a_replaced_merge_owner_that_resumes_late_cannot_roll_back_the_merged_cells(tmp_path: Path) -> None:
    """The same for the merge stage: merge worker A resumes after B took its partitions over and
    commits a stale batch (its merged cells reach the changelog after B's); C restores the cells
    B held: per source partition, the share with the newest stamp."""
    s = _settings(tmp_path)
    broker = _broker(s)
    _load_calls(s, broker, 1200, FaultConfig(duplicates=0.03))
    p1, a = _stages(s, broker)
    asyncio.run(_drain(p1, broker, p1.topics.source, {}, batch=100))
    partials = a.topics.partials
    positions: dict[int, int] = {}
    asyncio.run(a.process(broker.consume(partials, positions, 40), broker.acknowledge))
    in_flight = broker.consume(partials, positions, 40)

    _, b = _stages(s, broker)
    asyncio.run(_drain(b, broker, partials, {p: 40 for p in range(4)}, batch=40))
    asyncio.run(a.process(in_flight, broker.acknowledge))  # A resumes: stale cells after B's

    _, c = _stages(s, broker)
    asyncio.run(c.load(range(4)))
    assert _cells(c) == _cells(b)


def _flags_on_topic(broker: FakeBroker, topic: str) -> set[tuple[str, str]]:
    return {(f["flag_id"], f["status"]) for f in map(orjson.loads, broker.values(topic))}


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_a_replaced_owner_that_resumes_late_cannot_roll_back_the_borrower_states(tmp_path: Path, store: str) -> None:
    """Issue 17 (a flag lost in a CI soak): the zombie of the test above also commits borrower
    states after the new owner's newer ones. Neither a restore from the changelog (the newest
    state by the offsets it applied wins, not the last written) nor the zombie's own local store
    when its partitions come back (its late write is not a prefix of the changelog any more) may
    take them: every flag transition of the batch oracle reaches the flag topic."""
    s = _settings(tmp_path)
    s.worker.borrower_store = store
    broker = _broker(s)
    events = _load_calls(s, broker, 2400, FaultConfig(duplicates=0.03))
    rules = load_rules(s.worker.rules_file, s.worker.timezone)

    def stage(name: str) -> PartitionStage:
        own = s.model_copy(deep=True)
        own.worker.data_dir = tmp_path / name  # a host's own local store, kept across its restarts
        return _stages(own, broker)[0]

    a = stage("a")
    source = a.topics.source
    positions: dict[int, int] = {}
    asyncio.run(a.process(broker.consume(source, positions, 150), broker.acknowledge))
    in_flight = broker.consume(source, positions, 150)  # fetched by A just before it was paused

    b = stage("b")  # A's session expired: B takes over from the changelogs
    b_positions = {p: 150 for p in range(4)}
    for _ in range(3):
        asyncio.run(b.process(broker.consume(source, b_positions, 150), broker.acknowledge))
    asyncio.run(a.process(in_flight, broker.acknowledge))  # A resumes and commits its stale batch
    a.borrowers.close()
    b.borrowers.close()

    again = stage("a")  # the partitions come back to A's host (restarted, or static membership)
    asyncio.run(_drain(again, broker, source, dict(b_positions)))
    assert _flags_on_topic(broker, a.topics.flags) == set(oracle_flags(events, rules))
