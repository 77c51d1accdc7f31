"""Borrower state size with N distinct borrowers, measured the way the worker holds it.

The worker keeps one BorrowerState per borrower in the borrower-state table (Faust memory
store: a dict of key bytes -> value bytes, key "<partition>|<borrower_id>"). This process
imports the worker's modules (streams.worker, Faust: the worker's baseline RSS), then builds
that dict for N borrowers with the worker's own functions (apply_events, to_bytes and
streams.table_io.TableWriter.put, as PartitionStage does), one call each, from simulator
events with fresh borrower and event ids, and reports the bytes held and the RSS growth.
--raw-orjson stores to_bytes()'s result as it is instead (the worker before ccbcabb: orjson's
bytes keep a ~4 KB buffer each). Run as its own process:
    python -m bench.state_size --borrowers 1000000 [--raw-orjson]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import time
import zlib

from bench.env import peak_rss_mb, rss_mb


class _Table:
    """What TableWriter needs of a Faust table: the store dict and a changelog topic."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.changelog_topic = None


def measure(borrowers: int, seed: int = 7, raw_orjson: bool = False) -> dict[str, float | int | bool]:
    import os

    import streams.worker  # noqa: F401  (the worker's imports: its baseline memory)
    from bench.data import make_dataset
    from hangwatch.settings import Settings
    from streams.core.flags import apply_events
    from streams.core.rules_config import load_rules
    from streams.table_io import TableWriter

    w = Settings().worker
    rules = load_rules(w.rules_file, w.timezone)
    templates = list(make_dataset(min(borrowers, 5_000), seed=seed).events)
    gc.collect()
    pid = os.getpid()
    base = rss_mb(pid) or 0.0
    table = _Table()
    writer = TableWriter(table)  # type: ignore[arg-type]
    data = table.data
    now = int(time.time() * 1000)
    t0 = time.perf_counter()
    for i in range(borrowers):
        t = templates[i % len(templates)]
        bid = f"b-{i:012x}"
        e = dataclasses.replace(t, borrower_id=bid, event_id=f"{t.event_id}-{i}")
        p = zlib.crc32(bid.encode()) % 4
        st, _ = apply_events(None, bid, [(e, i)], rules, now_ms=now)
        key = f"{p}|{bid}".encode()
        if raw_orjson:
            data[key] = st.to_bytes()
        else:
            writer.put(p, key, st.to_bytes())
            if i % 10_000 == 0:
                writer._out._records.clear()  # the changelog records are sent and dropped per batch
    writer._out._records.clear()
    secs = time.perf_counter() - t0
    del templates
    gc.collect()
    after = rss_mb(pid) or 0.0
    held = sum(len(k) + len(v) for k, v in data.items())
    return {"borrowers": borrowers, "path": "raw orjson bytes" if raw_orjson else "TableWriter.put",
            "state_bytes": held,
            "bytes_per_borrower": round(held / borrowers, 1),
            "rss_baseline_mb": round(base, 1), "rss_with_state_mb": round(after, 1),
            "rss_growth_mb": round(after - base, 1), "peak_rss_mb": round(peak_rss_mb(pid) or 0.0, 1),
            "build_seconds": round(secs, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--borrowers", type=int, default=1_000_000)
    ap.add_argument("--raw-orjson", action="store_true", help="store orjson's bytes as they are (before ccbcabb)")
    a = ap.parse_args()
    print(json.dumps(measure(a.borrowers, raw_orjson=a.raw_orjson)))


if __name__ == "__main__":
    main()
