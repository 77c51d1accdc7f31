"""Raw ceiling: a plain aiokafka consumer that only decodes and validates the events.

This is the most any Python consumer can do on this machine; the benchmark reports
hangwatch's throughput as a share of it.

    python -m bench.peers.raw_ceiling --topic t.call-outcomes --count 200000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiokafka import AIOKafkaConsumer

from hangwatch.schemas.call_outcome import ContractError, decode


async def run(bootstrap: str, topic: str, count: int, timeout_s: float) -> dict[str, float]:
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                         group_id=None, fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024)
    await c.start()
    n = bad = 0
    t0 = None
    deadline = time.monotonic() + timeout_s
    try:
        while n < count and time.monotonic() < deadline:
            batches = await c.getmany(timeout_ms=500, max_records=10_000)
            for records in batches.values():
                if t0 is None:
                    t0 = time.perf_counter()
                for r in records:
                    try:
                        decode(r.value, r.key)
                    except ContractError:
                        bad += 1
                    n += 1
    finally:
        await c.stop()
    secs = time.perf_counter() - (t0 or time.perf_counter())
    return {"events": n, "invalid": bad, "seconds": secs, "events_per_s": n / secs if secs else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(run(a.bootstrap, a.topic, a.count, a.timeout))))


if __name__ == "__main__":
    main()
