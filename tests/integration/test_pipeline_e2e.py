"""The whole pipeline on real components: simulator -> Kafka -> worker -> sink -> ClickHouse
(the 18.16 server and embedded chdb), compared with the batch oracles through the same
queries the CLI and dashboards use."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from hangwatch.platform.settings import ClickHouseSettings, Settings
from hangwatch.schemas.records import OUTCOME_COUNT_FIELDS
from hangwatch.simulator import FaultConfig, SimConfig, generate, produce
from hangwatch.sinks import migrate
from hangwatch.sinks.backends import Backend
from hangwatch.sinks.backends.embedded import EmbeddedBackend
from hangwatch.sinks.backends.native import NativeBackend
from hangwatch.sinks.backends.url import parse_url
from hangwatch.streams.core.rules_config import load_rules
from testkit.oracles.flags import oracle_flags
from testkit.oracles.rates import oracle_counts
from testkit.sinks import CH_URL, SinkThread
from testkit.waits import wait_for
from tests.integration.harness import KafkaEnv, WorkerProcess
from tests.integration.test_worker_flags_alerts import yesterday_8am_ms

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
SIZES = (60, 300, 3600)
COUNTS = ("attempts", "connected", *OUTCOME_COUNT_FIELDS)


@pytest.fixture(params=[pytest.param("native", marks=pytest.mark.clickhouse), "embedded"])
def store(request: pytest.FixtureRequest, chdb_root: Path) -> Iterator[tuple[Backend, ClickHouseSettings]]:
    db = f"e2e_{request.param}_{KafkaEnv().app_id.replace('-', '_')}"
    if request.param == "native":
        backend: Backend = NativeBackend(parse_url(CH_URL))
        ch = ClickHouseSettings(url=SecretStr(CH_URL), database=db)
    else:
        backend = EmbeddedBackend(chdb_root)
        ch = ClickHouseSettings(embedded_path=chdb_root, database=db)
    migrate.apply(backend, db, ch.retention_days)
    yield backend, ch
    migrate.drop(backend, db)
    backend.close()


def stored_final_rates(backend: Backend, db: str) -> dict[str, list[int]]:
    res = backend.query(
        f"SELECT window_size_s, toUInt32(window_start), dimension, value, {', '.join(COUNTS)} "
        f"FROM {db}.hangup_rates FINAL WHERE final = 1")
    return {f"{r[0]}|{r[1]}|{r[2]}|{r[3]}": list(r[4:]) for r in res.rows}


def test_simulator_to_clickhouse_equals_the_oracles(store: tuple[Backend, ClickHouseSettings]) -> None:
    backend, ch = store
    env = KafkaEnv()
    try:
        cfg = SimConfig(seed=31, rate=0.5, count=6000, start_ms=yesterday_8am_ms(days=3), borrowers=400,
                        refuser_share=0.15,
                        faults=FaultConfig(duplicates=0.03, out_of_order=0.05, malformed=0.01))
        records = list(generate(cfg))
        asyncio.run(produce(records, env.settings.kafka, env.topic("call-outcomes")))
        events = list({r.event.event_id: r.event for r in records if r.event is not None}.values())
        n_malformed = sum(r.event is None for r in records)
        expected_rates = {k: [v[f] for f in COUNTS] for k, v in oracle_counts(events, SIZES).items()}
        expected_flags = oracle_flags(events, load_rules())

        settings = Settings(kafka={"topic_prefix": env.prefix}, clickhouse=ch,
                            sink={"group_id": f"{env.app_id}-sink", "flush_interval_s": 0.5})
        db = ch.database
        w = WorkerProcess(env)
        try:
            with SinkThread(settings):
                wait_for(lambda: backend.query(f"SELECT count() FROM {db}.call_events FINAL").scalar() == len(events),
                         120, "every distinct event stored", [w], every_s=1.0)
                wait_for(lambda: stored_final_rates(backend, db) == expected_rates, 120,
                         "stored final rates equal to the oracle", [w], every_s=2.0)
                wait_for(lambda: backend.query(
                    f"SELECT uniqExact(source_topic, source_partition, source_offset) FROM {db}.dead_letters"
                ).scalar() == n_malformed, 60, "every malformed message in dead_letters", [w])
                wait_for(lambda: sorted(map(tuple, backend.query(
                    f"SELECT DISTINCT flag_id, status FROM {db}.borrower_flags").rows)) == expected_flags,
                         60, "stored flags equal to the oracle", [w])
        finally:
            w.stop()
        # duplicates on the wire never become duplicate rows in the answers
        assert backend.query(f"SELECT count() FROM {db}.call_events FINAL").scalar() == len(events)
        assert n_malformed > 0 and any(r.fault == "duplicate" for r in records)
    finally:
        env.cleanup()
