"""Check what a run stored in ClickHouse against the batch oracle (a fast wrong answer fails).

Checked: every distinct valid event is in call_events exactly once (FINAL); every window
cell of the oracle is stored as final with exactly the oracle's counts, and no other final
cell exists; the borrower flag transitions (flag_id, status) equal the oracle's.

chdb allows one session per process, so for the embedded store this runs as its own
process after the sink stopped:
    python -m bench.verify --chdb PATH --db DB  (prints the stored results as JSON)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bench.data import COUNT_FIELDS, Dataset

_COUNTS = ", ".join(COUNT_FIELDS)


def stored_results(backend: Any, db: str) -> dict[str, Any]:
    """What the store holds, in plain JSON-able values."""
    q = backend.query
    events = q(f"SELECT count(), uniqExact(event_id) FROM {db}.call_events FINAL").rows[0]
    raw_rows = q(f"SELECT count() FROM {db}.call_events").scalar()
    rates = q(f"""SELECT window_size_s, toUInt32(window_start), toString(dimension), toString(value), final, {_COUNTS}
FROM {db}.hangup_rates FINAL""").rows
    finals = {f"{r[0]}|{r[1]}|{r[2]}|{r[3]}": list(r[5:]) for r in rates if r[4]}
    open_cells = sum(1 for r in rates if not r[4])
    flags = q(f"SELECT DISTINCT flag_id, toString(status) FROM {db}.borrower_flags").rows
    dead = q(f"SELECT count() FROM (SELECT DISTINCT source_partition, source_offset FROM {db}.dead_letters)").scalar()
    rate_rows = q(f"SELECT count() FROM {db}.hangup_rates").scalar()
    return {"events_final": int(events[0]), "events_distinct": int(events[1]), "events_raw_rows": int(raw_rows),
            "final_cells": finals, "open_cells": open_cells, "rate_rows": int(rate_rows),
            "flags": [list(f) for f in flags], "dead_letters": int(dead)}


def check(ds: Dataset, stored: dict[str, Any], expect_dead_letters: bool = True) -> dict[str, Any]:
    """Compare with the oracle; returns {"ok": bool, "problems": [...], figures}."""
    problems: list[str] = []
    distinct = ds.distinct_events
    if stored["events_distinct"] != distinct or stored["events_final"] != distinct:
        problems.append(f"call_events: {stored['events_final']} rows FINAL / {stored['events_distinct']} distinct ids, "
                        f"expected {distinct}")
    oracle = ds.oracle_rates()
    got = {k: tuple(v) for k, v in stored["final_cells"].items()}
    missing = [k for k in oracle if k not in got]
    wrong = [k for k in oracle if k in got and got[k] != oracle[k]]
    extra = [k for k in got if k not in oracle]
    if missing or wrong or extra:
        problems.append(f"hangup_rates: {len(missing)} final cells missing, {len(wrong)} wrong, {len(extra)} extra "
                        f"(of {len(oracle)}); e.g. missing {missing[:2]} wrong "
                        f"{[(k, got[k], oracle[k]) for k in wrong[:2]]}")
    if stored["open_cells"]:
        problems.append(f"hangup_rates: {stored['open_cells']} cells not final")
    flags = {tuple(f) for f in stored["flags"]}
    oflags = ds.oracle_flags()
    if flags != oflags:
        problems.append(f"borrower_flags: {len(oflags - flags)} oracle transitions missing, "
                        f"{len(flags - oflags)} extra (of {len(oflags)})")
    malformed = sum(1 for r in ds.records if r.event is None)
    if expect_dead_letters and stored["dead_letters"] != malformed:
        problems.append(f"dead_letters: {stored['dead_letters']} stored, {malformed} malformed messages sent")
    return {"ok": not problems, "problems": problems, "final_cells": len(got), "oracle_cells": len(oracle),
            "events": stored["events_distinct"], "flags": len(flags), "oracle_flags": len(oflags),
            "dead_letters": stored["dead_letters"], "rate_rows": stored["rate_rows"]}


def read_native(url: str, db: str) -> dict[str, Any]:
    from pydantic import SecretStr

    from hangwatch.platform.settings import ClickHouseSettings
    from hangwatch.sinks.backends import open_backend

    backend = open_backend(ClickHouseSettings(url=SecretStr(url)))
    try:
        return stored_results(backend, db)
    finally:
        backend.close()


def read_chdb_subprocess(path: str, db: str) -> dict[str, Any]:
    import subprocess

    out = subprocess.run([sys.executable, "-m", "bench.verify", "--chdb", path, "--db", db], check=True,
                         capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chdb", required=True)
    ap.add_argument("--db", required=True)
    a = ap.parse_args()
    from pathlib import Path

    from hangwatch.sinks.backends.embedded import EmbeddedBackend

    backend = EmbeddedBackend(Path(a.chdb))
    try:
        print(json.dumps(stored_results(backend, a.db)))
    finally:
        backend.close()


if __name__ == "__main__":
    main()
