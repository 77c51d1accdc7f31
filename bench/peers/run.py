"""Run the peers on a dataset: naive Faust (subprocess + ClickHouse) and the raw ceiling."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from typing import Any

from bench.data import COUNT_FIELDS, Dataset, produce_records
from bench.env import ROOT, Proc, RunEnv, python_module
from bench.peers.naive_faust import DIMS, OUTCOMES
from hangwatch.schemas.topics import CALL_OUTCOMES


def naive_check(ds: Dataset, got: dict[str, Any]) -> dict[str, Any]:
    """The covered cells (branch x 60 s, campaign x 300 s, all x 3600 s) against the oracle."""
    covered = {(size, dim) for dim, size in DIMS}
    oracle = {}
    for key, counts in ds.oracle_rates().items():
        size, _, dim, _ = key.split("|", 3)
        if (int(size), dim) in covered:
            by = dict(zip(COUNT_FIELDS, counts, strict=True))
            oracle[key] = {o: by[o] for o in OUTCOMES if by[o]}
    cells = {k: {o: n for o, n in v.items() if n} for k, v in got["cells"].items()}
    missing = [k for k in oracle if k not in cells]
    wrong = [k for k in oracle if k in cells and cells[k] != oracle[k]]
    extra = [k for k in cells if k not in oracle]
    problems = []
    if missing or wrong or extra:
        problems.append(f"naive rates: {len(missing)} cells missing, {len(wrong)} wrong, {len(extra)} extra "
                        f"(of {len(oracle)}); e.g. wrong {[(k, cells[k], oracle[k]) for k in wrong[:1]]}")
    if got["events_distinct"] != ds.distinct_events:
        problems.append(f"naive events: {got['events_distinct']} distinct stored, expected {ds.distinct_events}")
    return {"ok": not problems, "problems": problems, "cells": len(cells), "oracle_cells": len(oracle),
            "events": got["events_distinct"], "event_rows": got["events_rows"]}


def run_naive(ds: Dataset, timeout_s: float = 240.0) -> dict[str, Any]:
    from clickhouse_driver import Client

    from bench.peers.naive_faust import stored

    env = RunEnv("naive")
    res: dict[str, Any] = {"variant": "naive Faust", "messages": ds.messages}
    proc: Proc | None = None
    client = Client.from_url(env.ch_url.rsplit("/", 1)[0])
    status = env.logs / "naive-status.json"
    try:
        produce_records(ds.records, env.kafka, env.topic(CALL_OUTCOMES))
        t_start = time.perf_counter()
        proc = Proc("naive", python_module("bench.peers.naive_faust", "--prefix", env.prefix, "--app-id", env.app_id,
                                           "--ch-url", env.ch_url.rsplit("/", 1)[0], "--db", env.db,
                                           "--status", str(status)), env.env(), env.logs)
        deadline = time.perf_counter() + timeout_s
        done_at = None
        while time.perf_counter() < deadline:
            proc.assert_alive()
            with contextlib.suppress(Exception):
                n = client.execute(f"SELECT uniqExact(event_id) FROM {env.db}.naive_events")[0][0]
                if n >= ds.distinct_events:
                    done_at = time.time()
                    break
            time.sleep(0.25)
        proc.sample()
        res["peak_rss_mb"] = {"naive": round(proc.peak_rss_mb, 1)}
        res["cpu_s"] = {"naive": round(proc.cpu_s, 2)}
        st = json.loads(status.read_text()) if status.exists() else {}
        if done_at is None or not st.get("first"):
            res["ok"] = False
            res["problems"] = [f"timed out after {timeout_s:.0f} s ({st.get('processed', 0)} processed)"]
            return res
        e2e = done_at - st["first"]
        res["startup_s"] = round(st["first"] - (time.time() - (time.perf_counter() - t_start)), 2)
        res["seconds"] = {"stored": round(e2e, 2)}
        res["events_per_s"] = round(ds.messages / e2e)
        res["check"] = naive_check(ds, stored(client, env.db))
        res["ok"] = res["check"]["ok"]
        return res
    finally:
        if proc is not None:
            proc.stop()
        client.disconnect()
        env.cleanup()


def run_ceiling(ds: Dataset) -> dict[str, Any]:
    env = RunEnv("ceiling")
    try:
        produce_records(ds.records, env.kafka, env.topic(CALL_OUTCOMES))
        out = subprocess.run([sys.executable, "-m", "bench.peers.raw_ceiling", "--topic", env.topic(CALL_OUTCOMES),
                              "--count", str(ds.messages), "--bootstrap", env.kafka.bootstrap_servers],
                             cwd=ROOT, env=env.env(), capture_output=True, text=True, timeout=300, check=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        return {"variant": "raw ceiling", "messages": ds.messages, "events_per_s": round(got["events_per_s"]),
                "seconds": {"stored": round(got["seconds"], 2)}, "invalid": got["invalid"],
                "ok": got["events"] == ds.messages}
    finally:
        env.cleanup()
