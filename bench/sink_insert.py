"""Insert throughput of the two storage backends (rows/s), as the sink writes call_events.

Three stages, each on a fresh database:
  insert  backend.insert of ready rows in batches of --batch rows (the storage ceiling);
  flush   the sink's own path without Kafka: decode JSON -> row -> validate -> Flusher;
  kafka   end to end: events produced to a fresh topic, `run_sink` until all are stored.

Usage:
  .venv/bin/python -m bench.sink_insert                       # both backends, insert + flush
  .venv/bin/python -m bench.sink_insert --stages insert,flush,kafka --rows 100000
  .venv/bin/python -m bench.sink_insert --backends native --url clickhouse://default@127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from hangwatch.platform.settings import ClickHouseSettings, Settings, SinkSettings
from hangwatch.sinks import migrate
from hangwatch.sinks.backends import Backend, open_backend
from hangwatch.sinks.tables import CALL_EVENTS
from hangwatch.sinks.writer.flush import Flusher
from testkit.events import BASE_MS, event_records, make_events
from testkit.sinks import Store as _Store
from testkit.sinks import Topics, batch_of, router_for


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_insert(backend: Backend, db: str, rows: list[tuple[object, ...]], batch: int) -> float:
    def go() -> None:
        for i in range(0, len(rows), batch):
            backend.insert(f"{db}.call_events", CALL_EVENTS.columns, rows[i:i + batch])

    return len(rows) / timed(go)


def bench_flush(store: _Store, records: list[tuple[bytes | None, bytes | None]], batch: int) -> float:
    router = router_for(store)
    flusher = Flusher(store.backend, store.db, "bench", "Asia/Shanghai")

    def go() -> None:
        for i in range(0, len(records), batch):
            flusher.flush(batch_of(router, {"call_events": records[i:i + batch]}, int(time.time())))

    return len(records) / timed(go)


def bench_kafka(store: _Store, records: list[tuple[bytes | None, bytes | None]], bootstrap: str) -> float:
    from aiokafka import AIOKafkaProducer

    from hangwatch.sinks.writer import run_sink

    topics = Topics(bootstrap, partitions=4)
    try:
        async def produce() -> None:
            p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024)
            await p.start()
            try:
                for key, value in records:
                    await p.send(topics.names["call_events"], value, key=key)
                await p.flush()
            finally:
                await p.stop()

        asyncio.run(produce())
        settings = Settings(clickhouse=store.ch, sink=SinkSettings(topics=topics.names, group_id=topics.group,
                                                                   log_interval_s=0))

        async def consume() -> float:
            stop = asyncio.Event()
            task = asyncio.create_task(run_sink(settings, stop))
            t0 = time.perf_counter()
            while await asyncio.to_thread(store.count, "call_events", False) < len(records):
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - t0
            stop.set()
            await task
            return elapsed

        return len(records) / asyncio.run(consume())
    finally:
        topics.delete()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="native,embedded")
    ap.add_argument("--stages", default="insert,flush")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=50_000, help="rows per INSERT (the sink's batch_rows)")
    ap.add_argument("--url", default="clickhouse://default@127.0.0.1:9000")
    ap.add_argument("--kafka", default="127.0.0.1:9092")
    args = ap.parse_args()

    events = make_events(args.rows, seed=1, start_ms=BASE_MS, span_s=24 * 3600)
    records = event_records(events)
    router_rows: list[tuple[object, ...]] = []
    print(f"{args.rows} call events (~{sum(len(v or b'') for _, v in records) // args.rows} B JSON each), "
          f"batches of {args.batch}")
    tmp = Path(tempfile.mkdtemp(prefix="hangwatch-bench-"))
    for kind in args.backends.split(","):
        ch = (ClickHouseSettings(url=SecretStr(args.url)) if kind == "native"
              else ClickHouseSettings(embedded_path=tmp / "chdb"))
        backend = open_backend(ch)
        version = backend.server_version()
        for stage in args.stages.split(","):
            db = f"bench_{uuid.uuid4().hex[:8]}"
            store = _Store(kind, backend, db, ch.model_copy(update={"database": db}))
            migrate.apply(backend, db, {})
            try:
                if stage == "insert":
                    if not router_rows:
                        router = router_for(store)
                        b = batch_of(router, {"call_events": records}, int(time.time()))
                        router_rows = b.buffers["call_events"].rows
                    rate = bench_insert(backend, db, router_rows, args.batch)
                elif stage == "flush":
                    rate = bench_flush(store, records, args.batch)
                elif stage == "kafka":
                    rate = bench_kafka(store, records, args.kafka)
                else:
                    raise SystemExit(f"unknown stage {stage}")
                print(f"{kind:9s} (ClickHouse {version}) {stage:6s}: {rate:>10,.0f} rows/s")
            finally:
                backend.execute(f"DROP DATABASE IF EXISTS {db}")
        backend.close()


if __name__ == "__main__":
    main()
