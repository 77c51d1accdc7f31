"""Per-stage throughput, in-process, on the benchmark's own events (no Kafka, no Faust).

Each stage runs the project's own functions the way the worker calls them, in batches of
worker.batch_max events split by source partition:
  decode     schemas.call_outcome.decode of every message (the contract check);
  rates      PartitionRates.process per event + per batch the partial snapshots
             (drain_dirty_cells, encode_partials) and state records (state_changes);
  flags      per borrower of a batch: BorrowerState.from_bytes, apply_events, to_bytes;
  merge      apply_message of the partials into MergeRates (per merge partition), finalize,
             drain_updates and orjson of every RateUpdate, state_changes;
  sink       the sink's Router (decode + row + validate) and Flusher INSERT of call_events
             into the ClickHouse server (fresh database);
  send       the changelog/output writes of these events through aiokafka batch builders
             (create_batch/append/send_batch, as streams.outbox does since d95670f); the
             per-record producer.send rate is reported beside it for comparison.
Rates are events per second of that stage alone (single core). The slowest stage bounds the
pipeline; the gap between the sum of the stages and the end-to-end figure is the framework.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections import defaultdict
from typing import Any

import orjson

from bench.data import Dataset
from hangwatch.platform.settings import Settings
from hangwatch.schemas.call_outcome import ContractError, decode
from hangwatch.streams.core.flags import BorrowerState, apply_events
from hangwatch.streams.core.merge_rates import MergeRates, apply_message, encode_partials, encode_watermark
from hangwatch.streams.core.partition_rates import PartitionRates
from hangwatch.streams.core.rules_config import load_rules

N_SOURCE = 4
N_MERGE = 4


def _partition(key: bytes | None, n: int) -> int:
    return zlib.crc32(key or b"") % n


def run_stages(ds: Dataset, ch_url: str | None = None, batch: int = 2000, grace_s: int = 60) -> dict[str, Any]:
    s = Settings()
    w = s.worker
    rules = load_rules(w.rules_file, w.timezone)
    recs = ds.records
    n = len(recs)
    out: dict[str, Any] = {}

    # decode
    t0 = time.perf_counter()
    decoded: list[tuple[int, int, Any]] = []
    offsets = [0] * N_SOURCE
    for r in recs:
        p = _partition(r.key, N_SOURCE)
        off = offsets[p]
        offsets[p] += 1
        with contextlib.suppress(ContractError):
            decoded.append((p, off, decode(r.value, r.key)))
    out["decode"] = n / (time.perf_counter() - t0)

    batches = [decoded[i:i + batch] for i in range(0, len(decoded), batch)]
    valid = len(decoded)
    writes = {"changelog": 0, "partials": 0}

    # rates (+ partial snapshots and state records per batch)
    states = {p: PartitionRates(p, w.window_sizes_s, grace_s * 1000) for p in range(N_SOURCE)}
    partials: list[list[tuple[int, bytes]]] = []  # per batch: (merge partition, message)
    t0 = time.perf_counter()
    for b in batches:
        touched = set()
        for p, off, co in b:
            states[p].process(co, off)
            touched.add(p)
        msgs: list[tuple[int, bytes]] = []
        for p in touched:
            st = states[p]
            groups: dict[str, list[tuple[str, list[int]]]] = defaultdict(list)
            for key, counts in st.drain_dirty_cells().items():
                groups[key.split("|", 2)[2]].append((key, counts))
            for dim_value, cells in groups.items():
                msgs.append((_partition(dim_value.encode(), N_MERGE), encode_partials(p, cells)))
            writes["changelog"] += sum(1 for _ in st.state_changes())
            wm = st.watermark_change()
            if wm is not None:
                msgs.extend((q, encode_watermark(p, st.watermark_ms)) for q in range(N_MERGE))
                writes["changelog"] += 1
            st.mark_persisted()
        writes["partials"] += len(msgs)
        partials.append(msgs)
    out["rates"] = valid / (time.perf_counter() - t0)

    # flags
    table: dict[bytes, bytes] = {}
    t0 = time.perf_counter()
    now = int(time.time() * 1000)
    for b in batches:
        by_borrower: dict[tuple[int, str], list[tuple[Any, int]]] = defaultdict(list)
        for p, off, co in b:
            by_borrower[(p, co.borrower_id)].append((co, off))
        for (p, borrower), items in by_borrower.items():
            bkey = f"{p}|{borrower}".encode()
            raw = table.get(bkey)
            new_state, flags = apply_events(BorrowerState.from_bytes(raw) if raw else None, borrower, items, rules,
                                            now_ms=now)
            for f in flags:
                orjson.dumps(f)
            table[bkey] = new_state.to_bytes()
            writes["changelog"] += 1
    out["flags"] = valid / (time.perf_counter() - t0)
    out["borrower_state_bytes"] = sum(len(k) + len(v) for k, v in table.items())
    out["borrowers"] = len(table)

    # merge
    merges = {q: MergeRates(N_SOURCE) for q in range(N_MERGE)}
    updates = 0
    t0 = time.perf_counter()
    for msgs in partials:
        touched = set()
        for q, raw in msgs:
            apply_message(merges[q], raw)
            touched.add(q)
        for q in touched:
            ms = merges[q]
            ms.finalize()
            for u in ms.drain_updates(now):
                orjson.dumps(u)
                updates += 1
            writes["changelog"] += sum(1 for _ in ms.state_changes())
            ms.mark_persisted()
    out["merge"] = valid / (time.perf_counter() - t0)
    out["rate_updates"] = updates
    out["writes_per_event"] = {k: round(v / valid, 2) for k, v in writes.items()}

    # the cost of sending that many records (aiokafka, no Faust): per record, and batched
    n_send = min(100_000, writes["changelog"] + writes["partials"])
    out["send_per_record"] = _send_rate(n_send, batched=False)
    out["send_batched"] = _send_rate(n_send, batched=True)
    total_writes = writes["changelog"] + writes["partials"] + updates
    out["send_events_per_s"] = out["send_batched"] * valid / total_writes if total_writes else None

    if ch_url:
        out["sink"] = _sink_rate(ds, ch_url)
    return {k: (round(v) if isinstance(v, float) else v) for k, v in out.items()}


def _send_rate(count: int, batched: bool) -> float:
    """Records/s to a scratch topic with aiokafka: per-record send(), or batch builders of up to
    256 KB per partition handed over with send_batch; delivery of all awaited at the end."""
    import asyncio
    import uuid

    from aiokafka import AIOKafkaProducer

    from bench.env import BOOTSTRAP
    from hangwatch.platform.kafka_admin import admin_client

    topic = f"bench-send-{uuid.uuid4().hex[:8]}"
    admin = admin_client(Settings().kafka.model_copy(update={"bootstrap_servers": BOOTSTRAP}))
    try:
        from kafka.admin import NewTopic

        admin.create_topics([NewTopic(topic, 4, 1)])

        async def go() -> float:
            p = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks=-1, linger_ms=5, max_batch_size=256 * 1024)
            await p.start()
            try:
                await p.partitions_for(topic)
                value = b"x" * 120
                t0 = time.perf_counter()
                if not batched:
                    futs = [await p.send(topic, value, key=b"k%d" % (i % 1000)) for i in range(count)]
                else:
                    futs = []
                    builders: dict[int, Any] = {}
                    for i in range(count):
                        part = i % 4
                        b = builders.get(part)
                        if b is None:
                            b = builders[part] = p.create_batch()
                        if b.append(key=b"k%d" % (i % 1000), value=value, timestamp=None) is None:
                            futs.append(await p.send_batch(b, topic, partition=part))
                            b = builders[part] = p.create_batch()
                            b.append(key=b"k%d" % (i % 1000), value=value, timestamp=None)
                    for part, b in builders.items():
                        futs.append(await p.send_batch(b, topic, partition=part))
                await asyncio.gather(*futs)
                return count / (time.perf_counter() - t0)
            finally:
                await p.stop()

        return asyncio.run(go())
    finally:
        admin.delete_topics([topic])
        admin.close()


def _sink_rate(ds: Dataset, ch_url: str) -> float:
    import uuid

    from pydantic import SecretStr

    from hangwatch.platform.settings import ClickHouseSettings
    from hangwatch.sinks import migrate
    from hangwatch.sinks.backends import open_backend
    from hangwatch.sinks.writer.flush import Flusher
    from testkit.sinks import Store, batch_of, router_for

    ch = ClickHouseSettings(url=SecretStr(ch_url))
    backend = open_backend(ch)
    db = f"bench_stage_{uuid.uuid4().hex[:8]}"
    try:
        migrate.apply(backend, db, {})
        store = Store("native", backend, db, ch.model_copy(update={"database": db}))
        router = router_for(store)
        flusher = Flusher(backend, db, "bench", "Asia/Shanghai")
        records: list[tuple[bytes | None, bytes | None]] = [(r.key, r.value) for r in ds.records]
        t0 = time.perf_counter()
        for i in range(0, len(records), 50_000):
            flusher.flush(batch_of(router, {"call_events": records[i:i + 50_000]}, int(time.time())))
        return len(records) / (time.perf_counter() - t0)
    finally:
        backend.execute(f"DROP DATABASE IF EXISTS {db}")
        backend.close()
