"""Borrower state size with N distinct borrowers, measured the way the worker holds it.

The worker keeps one BorrowerState per borrower in the borrower-state table (Faust memory
store: a dict of key bytes -> value bytes, key "<partition>|<borrower_id>"). This process
imports the worker's modules (streams.worker, Faust: the worker's baseline RSS), then builds
that dict for N borrowers with the worker's own functions (apply_events + to_bytes), one
call each, from the benchmark's simulator events with fresh borrower and event ids, and
reports the bytes held and the RSS growth. Run as its own process:
    python -m bench.state_size --borrowers 1000000
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import time
import zlib

from bench.env import peak_rss_mb, rss_mb


def measure(borrowers: int, seed: int = 7, copy_values: bool = False) -> dict[str, float | int | bool]:
    import os

    import streams.worker  # noqa: F401  (the worker's imports: its baseline memory)
    from bench.data import make_dataset
    from hangwatch.settings import Settings
    from streams.core.flags import apply_events
    from streams.core.rules_config import load_rules

    w = Settings().worker
    rules = load_rules(w.rules_file, w.timezone)
    templates = [e for e in make_dataset(min(borrowers, 50_000), seed=seed).events][:50_000]
    gc.collect()
    pid = os.getpid()
    base = rss_mb(pid) or 0.0
    data: dict[bytes, bytes] = {}
    now = int(time.time() * 1000)
    t0 = time.perf_counter()
    for i in range(borrowers):
        t = templates[i % len(templates)]
        bid = f"b-{i:012x}"
        e = dataclasses.replace(t, borrower_id=bid, event_id=f"{t.event_id}-{i}")
        p = zlib.crc32(bid.encode()) % 4
        st, _ = apply_events(None, bid, [(e, i)], rules, now_ms=now)
        value = st.to_bytes()
        # orjson.dumps returns bytes that keep their ~4 KB output buffer allocated; a copy is exact size
        data[f"{p}|{bid}".encode()] = bytes(memoryview(value)) if copy_values else value
    secs = time.perf_counter() - t0
    del templates
    gc.collect()
    after = rss_mb(pid) or 0.0
    held = sum(len(k) + len(v) for k, v in data.items())
    return {"borrowers": borrowers, "copy_values": copy_values, "state_bytes": held,
            "bytes_per_borrower": round(held / borrowers, 1),
            "rss_baseline_mb": round(base, 1), "rss_with_state_mb": round(after, 1),
            "rss_growth_mb": round(after - base, 1), "peak_rss_mb": round(peak_rss_mb(pid) or 0.0, 1),
            "build_seconds": round(secs, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--borrowers", type=int, default=1_000_000)
    ap.add_argument("--copy-values", action="store_true",
                    help="store exact-size copies of the values (the recommended fix) instead of orjson's bytes")
    a = ap.parse_args()
    print(json.dumps(measure(a.borrowers, copy_values=a.copy_values)))


if __name__ == "__main__":
    main()
