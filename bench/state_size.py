"""Borrower state size with N distinct borrowers, measured the way the worker holds it.

The worker keeps one BorrowerState per borrower in its borrower store (streams.borrower_store),
key "<partition>|<borrower_id>". This process opens the worker's borrower store
(hangwatch.streams.borrower_store) as configured (worker.borrower_store), then writes N borrowers through the
worker's own functions (apply_events, to_bytes, BorrowerStore.get_many/put, as PartitionStage
does), one call each, from simulator events with fresh borrower and event ids, in batches of
10,000 as the worker flushes them (the changelog records are dropped instead of sent: no
broker is needed). It reports the bytes held and the RSS growth.

--store memory|rocksdb picks the store (default: the worker's setting). --raw-orjson (memory
store) keeps to_bytes()'s result as it is (the worker before ccbcabb: orjson's bytes keep a
~4 KB buffer each). Run as its own process:
    python -m bench.state_size --borrowers 1000000 [--store memory] [--raw-orjson]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import msgspec

from bench.env import peak_rss_mb, rss_mb

BATCH = 10_000


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(borrowers: int, seed: int = 7, raw_orjson: bool = False, store: str | None = None) -> dict[str, Any]:
    import hangwatch.streams.worker  # noqa: F401  (the worker's imports: its baseline memory)
    from bench.data import make_dataset
    from hangwatch.platform.settings import Settings
    from hangwatch.streams import changelogs
    from hangwatch.streams.borrower_store import BorrowerStore
    from hangwatch.streams.changelog_restore import KafkaChangelogSource
    from hangwatch.streams.core.flags import apply_events
    from hangwatch.streams.core.rules_config import load_rules

    with tempfile.TemporaryDirectory(prefix="hw-state-") as tmp:
        s = Settings()
        s.worker.data_dir = Path(tmp)
        if store:
            s.worker.borrower_store = store  # type: ignore[assignment]
        w = s.worker
        rules = load_rules(w.rules_file, w.timezone)
        writer = BorrowerStore(changelogs.BORROWERS.name(w.app_id), KafkaChangelogSource(s.kafka), w)
        for p in range(4):
            writer.open_local(p)
        templates = list(make_dataset(min(borrowers, 5_000), seed=seed).events)
        gc.collect()
        pid = os.getpid()
        base = rss_mb(pid) or 0.0
        now = int(time.time() * 1000)
        value_bytes = 0

        def end_batch() -> None:
            # what a checkpoint does once the broker acknowledged the batch's changelog records
            held, writer._overlay = writer._overlay, {}
            writer.write_at(held, dict.fromkeys(range(4), i))

        t0 = time.perf_counter()
        for i in range(borrowers):
            t = templates[i % len(templates)]
            bid = f"b-{i:012x}"
            e = msgspec.structs.replace(t, borrower_id=bid, event_id=f"{t.event_id}-{i}")
            p = zlib.crc32(bid.encode()) % 4
            key = f"{p}|{bid}".encode()
            writer.get_many([(p, key)])  # the worker's lookup (a miss)
            st, _ = apply_events(None, bid, [(e, i)], rules, now_ms=now)  # a new borrower: raw is None
            value = st.to_bytes()
            value_bytes += len(key) + len(value)
            if raw_orjson:
                writer._dbs[p][key] = value
            else:
                writer.put(p, key, value)
            if i % BATCH == BATCH - 1:
                end_batch()
        end_batch()
        secs = time.perf_counter() - t0
        del templates
        gc.collect()
        after = rss_mb(pid) or 0.0
        rocks = writer.on_disk
        out: dict[str, Any] = {
            "borrowers": borrowers,
            "store": "rocksdb" if rocks else "memory",
            "path": "raw orjson bytes" if raw_orjson else type(writer).__name__ + (" rocksdb" if rocks else " memory"),
            "state_bytes": value_bytes, "bytes_per_borrower": round(value_bytes / borrowers, 1),
            "rss_baseline_mb": round(base, 1), "rss_with_state_mb": round(after, 1),
            "rss_growth_mb": round(after - base, 1), "peak_rss_mb": round(peak_rss_mb(pid) or 0.0, 1),
            "build_seconds": round(secs, 1)}
        if rocks:
            # the read path after the build: every borrower looked up once (the next call's get)
            t1 = time.perf_counter()
            found = 0
            for i in range(0, borrowers, max(1, borrowers // 100_000)):
                bid = f"b-{i:012x}"
                p = zlib.crc32(bid.encode()) % 4
                found += writer.get_many([(p, f"{p}|{bid}".encode())])[0] is not None
            n = len(range(0, borrowers, max(1, borrowers // 100_000)))
            out["get_us"] = round((time.perf_counter() - t1) / n * 1e6, 1)
            out["found"] = found == n
            out["disk_mb"] = round(_dir_bytes(Path(tmp)) / 1e6, 1)
            out["rss_after_reads_mb"] = round(rss_mb(pid) or 0.0, 1)
            out["rocksdb_mb"] = {k: round(v / 1e6, 1) for k, v in writer.memory_usage().items()}
            out["peak_rss_mb"] = round(peak_rss_mb(pid) or 0.0, 1)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--borrowers", type=int, default=1_000_000)
    ap.add_argument("--store", choices=("memory", "rocksdb"), help="default: worker.borrower_store")
    ap.add_argument("--raw-orjson", action="store_true", help="memory store: keep orjson's bytes (before ccbcabb)")
    a = ap.parse_args()
    print(json.dumps(measure(a.borrowers, raw_orjson=a.raw_orjson, store="memory" if a.raw_orjson else a.store)))


if __name__ == "__main__":
    main()
