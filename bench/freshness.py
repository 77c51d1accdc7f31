"""Freshness at a steady offered rate: live events (occurred_at = now) paced at --rate.

Worker and sink run first and are warmed up; then the simulator produces live calls at the
rate for the duration. Latencies, per event, from its produce time (its occurred_at: a live
call is stamped when it is generated, which is when it is handed to the producer):
  to ClickHouse  until its call_events row is visible (the server is polled every 100 ms for
                 rows past the last seen offset of each partition);
  to rate        until the hangup_rates row of its 60 s window (dimension all) counts it,
                 i.e. stored attempts >= its rank among the window's events;
  to flag        for each transition on borrower-flags: arrival at a consumer in this process
                 minus the time of the event that triggered it (its last evidence event).
A small borrower population (and a higher refuser share) makes flags frequent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import defaultdict
from typing import Any

import orjson

from bench.env import Proc, RunEnv, python_module
from hangwatch.schemas.call_outcome import parse_ts
from hangwatch.schemas.topics import BORROWER_FLAGS, CALL_OUTCOMES
from hangwatch.schemas.topics import topic as registry_topic
from hangwatch.simulator import SimConfig, generate, paced, produce


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "n": 0}
    v = sorted(values)

    def q(p: float) -> float:
        return round(v[min(len(v) - 1, int(p * len(v)))], 1)

    return {"p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": round(v[-1], 1), "n": len(v)}


class _Poller(threading.Thread):
    """Polls the server for new call_events rows and the 60 s all/all attempts."""

    def __init__(self, url: str, db: str) -> None:
        super().__init__(daemon=True)
        from clickhouse_driver import Client

        self.client = Client.from_url(url)
        self.db = db
        self.seen: dict[str, float] = {}  # event_id -> first visible (epoch ms)
        self.attempts: dict[int, list[tuple[float, int]]] = defaultdict(list)  # window -> [(ms, attempts)]
        self.max_offset: dict[int, int] = {}
        self.stop = threading.Event()
        self.errors = 0

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.time() * 1000
            try:
                self._poll(t)
            except Exception:
                self.errors += 1
            self.stop.wait(0.1)

    def _poll(self, t: float) -> None:
        cond = " OR ".join(f"(kafka_partition = {p} AND kafka_offset > {o})" for p, o in self.max_offset.items())
        known = ",".join(str(p) for p in self.max_offset) or "99999"
        where = f"({cond}) OR kafka_partition NOT IN ({known})" if cond else "1"
        rows = self.client.execute(f"SELECT kafka_partition, kafka_offset, event_id FROM {self.db}.call_events "
                                   f"WHERE {where}")
        for p, off, eid in rows:
            self.seen.setdefault(eid, t)
            if off > self.max_offset.get(p, -1):
                self.max_offset[p] = off
        for w, a in self.client.execute(
                f"SELECT toUInt32(window_start), max(attempts) FROM {self.db}.hangup_rates "
                f"WHERE window_size_s = 60 AND dimension = 'all' GROUP BY window_start"):
            hist = self.attempts[w]
            if not hist or hist[-1][1] != a:
                hist.append((t, a))


async def _collect_flags(env: RunEnv, out: list[tuple[int, float]], stop: asyncio.Event,
                         ready: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = env.topic(BORROWER_FLAGS)
    c = AIOKafkaConsumer(bootstrap_servers=env.kafka.bootstrap_servers, enable_auto_commit=False, group_id=None)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(registry_topic(BORROWER_FLAGS).partitions)]
        c.assign(tps)
        await c.seek_to_end(*tps)
        for tp in tps:
            await c.position(tp)
        ready.set()
        while not stop.is_set():
            data = await c.getmany(timeout_ms=100)
            now = time.time() * 1000
            for msgs in data.values():
                for m in msgs:
                    f = orjson.loads(m.value)
                    t = parse_ts(f["last_event_at"], "last_event_at")
                    out.append((t, now - t))
    finally:
        await c.stop()


def run_freshness(rate: float = 2000, seconds: float = 60, borrowers: int = 5000, seed: int = 11) -> dict[str, Any]:
    env = RunEnv("freshness", grace_s=60, idle_close_s=2.0)
    procs: list[Proc] = []
    res: dict[str, Any] = {"rate": rate, "seconds": seconds, "borrower_population": borrowers,
                           "load_avg_1m_at_start": round(os.getloadavg()[0], 2)}
    poller: _Poller | None = None
    try:
        argv = python_module("hangwatch", "worker")
        w = Proc("worker1", argv, env.env(), env.logs)
        sink = Proc("sink", python_module("hangwatch", "sink"), env.env(), env.logs)
        procs = [w, sink]
        poller = _Poller(env.ch_url.rsplit("/", 1)[0], env.db)

        async def main() -> dict[str, Any]:
            # warm up: a few live calls must make it to ClickHouse before the measurement
            warm = list(generate(SimConfig(seed=seed + 1, rate=50, count=50, borrowers=borrowers)))
            await produce(warm, env.kafka, env.topic(CALL_OUTCOMES))
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                for p in procs:
                    p.assert_alive()
                with contextlib.suppress(Exception):
                    if poller is not None and poller.client.execute(
                            f"SELECT count() FROM {env.db}.call_events")[0][0] >= len(warm):
                        break
                await asyncio.sleep(0.5)
            else:
                raise RuntimeError("warm-up events never reached ClickHouse")
            await asyncio.sleep(2)  # let the worker's first windows settle
            assert poller is not None
            poller.start()
            flags: list[tuple[int, float]] = []
            stop, ready = asyncio.Event(), asyncio.Event()
            flag_task = asyncio.create_task(_collect_flags(env, flags, stop, ready))
            await asyncio.wait([flag_task, asyncio.create_task(ready.wait())], return_when=asyncio.FIRST_COMPLETED)
            if flag_task.done():
                flag_task.result()  # raises what went wrong
            cfg = SimConfig(seed=seed, rate=rate, count=int(rate * seconds), borrowers=borrowers, refuser_share=0.1)
            sent: list[Any] = []

            def keep(records: Any) -> Any:
                for r in records:
                    sent.append(r)
                    yield r

            t0 = time.perf_counter()
            n = await produce(paced(keep(generate(cfg)), rate), env.kafka, env.topic(CALL_OUTCOMES))
            produced_s = time.perf_counter() - t0
            ids = {r.event.event_id for r in sent if r.event is not None}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not ids <= poller.seen.keys():
                await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # late flag records
            stop.set()
            await flag_task
            return {"sent": n, "produce_seconds": produced_s, "records": sent, "flags": flags, "warm": warm}

        got = asyncio.run(main())
        for p in procs:
            p.sample()
        res["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
        res["peak_rss_mb"] = {p.name: round(p.peak_rss_mb, 1) for p in procs}
        res["cpu_s"] = {p.name: round(p.cpu_s, 2) for p in procs}
        assert poller is not None
        poller.stop.set()
        poller.join(5)
        records = got["records"]
        res["offered_events_per_s"] = round(got["sent"] / got["produce_seconds"])
        to_ch = []
        rank: dict[int, int] = defaultdict(int)
        to_rate = []
        missing = 0
        for r in got["warm"]:  # warm-up calls count in their windows too
            if r.event is not None:
                rank[r.event.occurred_at_ms // 1000 // 60 * 60] += 1
        for r in records:
            e = r.event
            if e is None:
                continue
            vis = poller.seen.get(e.event_id)
            if vis is None:
                missing += 1
            else:
                to_ch.append(vis - e.occurred_at_ms)
            w = e.occurred_at_ms // 1000 // 60 * 60
            rank[w] += 1
            k = rank[w]
            hit = next((t for t, a in poller.attempts.get(w, []) if a >= k), None)
            if hit is not None:
                to_rate.append(hit - e.occurred_at_ms)
        res["to_clickhouse_ms"] = percentiles(to_ch)
        res["to_rate_ms"] = percentiles(to_rate)
        res["to_flag_ms"] = percentiles([lat for _, lat in got["flags"]])
        # p99 per 10 s of produce time: shows whether the tail is steady or comes in bursts
        t0 = min((r.event.occurred_at_ms for r in records if r.event is not None), default=0)
        series: dict[str, dict[int, list[float]]] = {"flag": defaultdict(list), "ch": defaultdict(list)}
        for t, lat in got["flags"]:
            series["flag"][int((t - t0) // 10_000) * 10].append(lat)
        for r in records:
            if r.event is not None and r.event.event_id in poller.seen:
                e = r.event
                series["ch"][int((e.occurred_at_ms - t0) // 10_000) * 10].append(poller.seen[e.event_id]
                                                                                 - e.occurred_at_ms)
        res["p99_by_10s"] = {k: {s: percentiles(v)["p99"] for s, v in sorted(d.items())} for k, d in series.items()}
        res["not_visible"] = missing
        res["poll_errors"] = poller.errors
        res["ok"] = missing == 0 and bool(got["flags"])
        return res
    finally:
        if poller is not None:
            poller.stop.set()
        for p in procs:
            with contextlib.suppress(Exception):
                p.stop()
        env.cleanup()
