"""Micro-benchmark of the contract decoder on the valid examples: µs per event.

    .venv/bin/python tests/schemas/decode_bench.py [--n 200000]

Not a test (no assertion on a machine-dependent time); docs and issue 17 quote its output.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hangwatch.schemas.call_outcome import decode, parse_ts

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "call_outcome" / "valid"
NOW_MS = parse_ts("2026-11-28T00:00:00Z")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000, help="decodes per example and round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    for path in sorted(EXAMPLES.glob("*.json")):
        raw = path.read_bytes()
        key = json.loads(raw)["borrower_id"].encode()
        best = float("inf")
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for _ in range(args.n):
                decode(raw, key, now_ms=NOW_MS)
            best = min(best, time.perf_counter() - t0)
        print(f"{path.stem:40s} {best / args.n * 1e6:6.2f} µs/event (best of {args.rounds})")


if __name__ == "__main__":
    main()
