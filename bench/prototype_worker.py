"""PROTOTYPE, bench only: the worker with two recommended changes patched in at run time, to
measure what they would gain. The shipped code is not changed; `make bench` reports this as
its own variant ("ours + batched sends (prototype)") next to the real worker.

1. streams.outbox.Outbox.flush without Faust's per-record Topic.send: the records of a flush
   are appended to aiokafka BatchBuilders (one per topic partition) of the app's own
   AIOKafkaProducer and handed over with send_batch, as simulator/kafka.py does; delivery is
   still awaited before the flush returns, so the stages' ordering guarantees are unchanged
   (one producer, batches of a partition queued in order).
2. streams.table_io.TableWriter.put stores an exact-size copy of each value: orjson.dumps
   returns bytes that keep a ~4 KB buffer, so every table value costs ~4 KB of RAM.
3. No Faust progress spinner: with loglevel >= warn, faust.Worker sets the root logger to
   DEBUG so that its spinner "spins for every log message", so every log.debug() in aiokafka
   and Faust (one per record sent) builds a LogRecord, walks the stack and runs the handlers.
   Setting worker.spinner = None before it starts keeps the root logger at the given level.

    python -m bench.prototype_worker --metrics-port 9300 [--fixes batched,copy,nospinner]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

log = logging.getLogger(__name__)


def patch(fixes: set[str]) -> None:
    from streams import outbox, table_io

    partitioner = DefaultPartitioner()
    parts_cache: dict[str, list[int]] = {}

    async def flush(self: Any) -> int:
        todo = self._records
        self._records = []
        sent = len(todo)
        backoff = 0.2
        while todo:
            app = todo[0][0].app
            producer = app.producer._ensure_producer()  # the AIOKafkaProducer Faust itself uses
            builders: dict[tuple[str, int], Any] = {}
            futures: list[tuple[Any, list[Any]]] = []
            members: dict[tuple[str, int], list[Any]] = {}
            failed: list[Any] = []
            try:
                for rec in todo:
                    t, k, v, p = rec
                    name = t.get_topic_name()
                    if p is None:
                        parts = parts_cache.get(name)
                        if parts is None:
                            parts = parts_cache[name] = sorted(await producer.partitions_for(name))
                        p = partitioner(k, parts, parts)
                    tp = (name, p)
                    b = builders.get(tp)
                    if b is None:
                        b = builders[tp] = producer.create_batch()
                        members[tp] = []
                    if b.append(key=k, value=v, timestamp=None) is None:  # full: hand it over
                        futures.append((await producer.send_batch(b, name, partition=p), members.pop(tp)))
                        b = builders[tp] = producer.create_batch()
                        members[tp] = []
                        b.append(key=k, value=v, timestamp=None)
                    members[tp].append(rec)
                for (name, p), b in builders.items():
                    futures.append((await producer.send_batch(b, name, partition=p), members[(name, p)]))
            except Exception as e:  # no metadata yet etc.: retry everything not handed over
                log.warning("batched send failed before hand-over (%r); retrying", e)
                handed = {id(r) for _, recs in futures for r in recs}
                failed = [r for r in todo if id(r) not in handed]
            results = await asyncio.gather(*(f for f, _ in futures), return_exceptions=True)
            for (_, recs), r in zip(futures, results, strict=True):
                if isinstance(r, BaseException):
                    failed.extend(recs)
            if failed:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
            todo = failed
        return sent

    if "batched" in fixes:
        outbox.Outbox.flush = flush  # type: ignore[method-assign]

    put = table_io.TableWriter.put

    def put_copy(self: Any, partition: int, key: bytes, value: bytes | None) -> None:
        put(self, partition, key, None if value is None else bytes(memoryview(value)))

    if "copy" in fixes:
        table_io.TableWriter.put = put_copy  # type: ignore[method-assign]

    if "gcstats" in fixes:  # not a fix: log every garbage collection of generation 2 and its pause
        import gc
        import time

        started: list[float] = []

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if info.get("generation") != 2:
                return
            if phase == "start":
                started[:] = [time.perf_counter()]
            elif started:
                pause_ms = (time.perf_counter() - started[0]) * 1000
                log.warning("gc gen2 pause %.0f ms, collected %s, objects %d", pause_ms, info.get("collected"),
                            len(gc.get_objects()))

        gc.callbacks.append(on_gc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metrics-port", type=int)
    ap.add_argument("--fixes", default="batched,copy,nospinner")
    a = ap.parse_args()
    fixes = set(a.fixes.split(","))
    patch(fixes)
    import faust
    from prometheus_client import start_http_server

    from hangwatch.settings import Settings
    from streams.worker import build

    s = Settings()
    pipe, _, _ = build(s)  # as streams.worker.run_worker does
    worker = faust.Worker(pipe.app, loglevel="warn", quiet=True, redirect_stdouts=False)
    if "nospinner" in fixes:
        worker.spinner = None
    if a.metrics_port:
        start_http_server(a.metrics_port, addr="127.0.0.1")
    sys.argv = sys.argv[:1]
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
