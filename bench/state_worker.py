"""A real worker process that ends up holding N distinct borrowers in its borrower store.

bench.state_size measures the store alone inside one process; this runs `hangwatch worker`
against the local Kafka on N calls of N distinct borrowers (one call each, event times
increasing, so every call is applied to the state) and reports the worker's RSS: the peak
while it works through the backlog (fetch buffers and batches included) and the resident
size once it has caught up and idled. The borrower-state changelog must hold N records.
Run on its own (Kafka must be running):
    python -m bench.state_worker --borrowers 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import msgspec

from bench.data import make_dataset, past_start_ms
from bench.env import Offsets, Proc, RunEnv, free_port, python_module, rss_mb, scrape, settings_env
from hangwatch.schemas.topics import CALL_OUTCOMES
from hangwatch.simulator import produce
from hangwatch.simulator.records import SimRecord


def spacing_ms(n: int, span_days: float) -> int:
    """Event-time step between the calls: `n` calls spread over `span_days` (0: 2 ms apart)."""
    return 2 if span_days <= 0 else max(1, int(span_days * 86_400_000 / n))


def _records(n: int, seed: int, span_days: float) -> Iterator[SimRecord]:
    templates = [e for e in make_dataset(2_000, seed=seed).events]
    step = spacing_ms(n, span_days)
    start = past_start_ms(days=math.ceil(n * step / 86_400_000) + 1)  # every window long closed
    for i in range(n):
        t = templates[i % len(templates)]
        bid = f"b-{i:012x}"
        e = msgspec.structs.replace(t, borrower_id=bid, event_id=f"{t.event_id[:20]}{i:012x}",
                                occurred_at_ms=start + i * step)
        yield SimRecord(bid.encode(), e.to_json(), None)


def run_state_worker(borrowers: int = 1_000_000, seed: int = 7, timeout_s: float = 600.0,
                     worker_env: dict[str, str] | None = None, span_days: float = 0.0) -> dict[str, Any]:
    """`span_days`: the event time the calls cover. 0 (the default, the figures of
    bench/HISTORY.md): 2 ms apart, 10 M calls in 5.5 hours of event time. A worker that holds N
    borrowers has called them within the borrower retention (8 days): `span_days` 7 spreads the
    calls over a week, so each minute closes windows for a few calls instead of 30,000, and the
    worker writes many more final windows per call (bench/HISTORY.md, "Scale per worker on a
    quiet machine, and a week of event time")."""
    env = RunEnv("state-worker", grace_s=60, idle_close_s=2.0, worker_env=worker_env)
    res: dict[str, Any] = {"borrowers": borrowers, "worker_env": worker_env or {}, "span_days": span_days,
                           "event_spacing_ms": spacing_ms(borrowers, span_days)}
    offsets = Offsets(env.kafka)
    proc: Proc | None = None
    try:
        topic = env.topic(CALL_OUTCOMES)
        t0 = time.perf_counter()
        res["produced"] = asyncio.run(produce(_records(borrowers, seed, span_days), env.kafka, topic))
        res["produce_seconds"] = round(time.perf_counter() - t0, 1)
        res["load_avg_start"] = [round(x, 2) for x in os.getloadavg()]
        t1 = time.perf_counter()
        port = free_port()
        proc = Proc("worker1", python_module("hangwatch", "worker"),
                    {**env.worker_env_for("worker1"), "HANGWATCH_METRICS_PORT": str(port)}, env.logs)
        deadline = time.monotonic() + timeout_s
        while not offsets.caught_up(env.app_id, [topic]):
            proc.assert_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the worker did not catch up in {timeout_s:.0f} s")
            time.sleep(1.0)
        res["catch_up_seconds"] = round(time.perf_counter() - t1, 1)
        res["load_avg_caught_up"] = [round(x, 2) for x in os.getloadavg()]  # a shared machine: how busy it was
        res["events_per_s"] = round(borrowers / (time.perf_counter() - t1))
        time.sleep(10)  # idle: buffers of the backlog released, timers run
        proc.sample()
        idle = rss_mb(proc.pid)
        res["rss_idle_mb"] = None if idle is None else round(idle, 1)
        res["peak_rss_mb"] = round(proc.peak_rss_mb, 1)
        # where the idle RSS is: RocksDB's own accounts and the C heap (pymalloc's arenas, where
        # Python's small objects live, are not in the C heap)
        m = scrape(port)
        res["memory_idle_mb"] = {
            **{f"rocksdb_{k}": round(m.get(f'hangwatch_borrower_store_memory_bytes{{kind="{k}"}}', 0) / 1e6, 1)
               for k in ("memtables", "table_readers", "block_cache", "block_cache_pinned")},
            **{f"malloc_{k}": round(m.get(f'hangwatch_malloc_bytes{{kind="{k}"}}', 0) / 1e6, 1)
               for k in ("in_use", "free", "mmapped")}}
        changelog = f"{env.app_id}-borrower-state-changelog"
        res["borrower_state_records"] = sum(offsets.ends([changelog]).values())
        res["store"] = env.settings().worker.borrower_store
        res["ok"] = res["borrower_state_records"] >= borrowers
        return res
    finally:
        if proc is not None:
            proc.stop()
        offsets.close()
        env.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--borrowers", type=int, default=1_000_000)
    ap.add_argument("--span-days", type=float, default=0.0,
                    help="event time the calls cover (default 0: 2 ms apart; 7: a week)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting of the worker, as in python -m bench --set, e.g. WORKER__BORROWER_STORE=memory")
    a = ap.parse_args()
    try:
        worker_env = settings_env(a.set)
    except ValueError as e:
        ap.error(str(e))
    print(json.dumps(run_state_worker(a.borrowers, worker_env=worker_env, span_days=a.span_days)))


if __name__ == "__main__":
    main()
