"""hangwatch benchmarks: `make bench` (deploy/local/bench.sh) runs `python -m bench`.

Steps (each can be skipped with --skip NAME):
  stages     per-stage throughput in-process on the dataset (decode, rates, flags, merge,
             per-record send, sink insert into the server)
  ceiling    bench/peers/raw_ceiling.py on the dataset (decode-only aiokafka consumer)
  ours       worker + sink -> ClickHouse server, 1 worker        (variant "ours native 1w")
  chdb       worker + sink -> embedded chdb, 1 worker, first --chdb-events messages
  scale      worker x 2 in one consumer group + sink -> server   (variant "ours native 2w")
  naive      bench/peers/naive_faust.py on the first --naive-events messages
  freshness  live events at --fresh-rate for --fresh-seconds
  state      borrower state of --borrowers distinct borrowers: the store alone in one process
             with the worker's store (RocksDB by default) and with the in-memory store, then
             a real worker process working through --borrowers calls of as many borrowers
  profile    the worker under pyinstrument on the first --profile-events messages
Every pipeline run is checked against the batch oracle; a mismatch marks the run failed.
Output: tables on the terminal, bench/results/bench-<stamp>.json and .png (+ latest.*).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.env import LOCAL, ROOT

STEPS = ("stages", "ceiling", "ours", "chdb", "scale", "naive", "freshness", "state", "profile")
DEFAULT_SKIP: tuple[str, ...] = ()
MEMORY_STORE_MAX = 2_000_000  # state: borrowers above which the in-memory store is not measured


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000, help="calls in the throughput dataset")
    ap.add_argument("--naive-events", type=int, default=20_000, help="messages for naive Faust (slow)")
    ap.add_argument("--chdb-events", type=int, default=100_000, help="messages for the chdb variant")
    ap.add_argument("--profile-events", type=int, default=20_000)
    ap.add_argument("--fresh-rate", type=float, default=2000)
    ap.add_argument("--fresh-seconds", type=float, default=60)
    ap.add_argument("--borrowers", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--state-span-days", type=float, default=0.0,
                    help="state: the event time the worker's calls cover (default 0: 2 ms apart; 7: a week)")
    ap.add_argument("--skip", default=",".join(DEFAULT_SKIP),
                    help=f"comma-separated steps to skip: {', '.join(STEPS)} (default: %(default)s)")
    ap.add_argument("--only", default="", help="comma-separated steps to run (default: all but --skip)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="overrides",
                    help="a setting for the worker and sink of every pipeline run (ours, chdb, scale, "
                         "profile, and state's store and worker process), passed as HANGWATCH_NAME=VALUE: "
                         "NAME is a field of hangwatch.platform.settings.Settings as its environment variable "
                         "names it, nested "
                         "fields joined by __, e.g. --set WORKER__GC_YOUNG_THRESHOLD=700 or "
                         "--set WORKER__BATCH_MAX=2000 (an unknown NAME is refused); for A/B measurements; "
                         "recorded in the JSON")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--ch-url", default=None, help="ClickHouse server (default clickhouse://default@127.0.0.1:9000)")
    a = ap.parse_args()
    steps = [s for s in (a.only.split(",") if a.only else STEPS) if s and s not in a.skip.split(",")]
    unknown = set(steps) - set(STEPS)
    if unknown:
        ap.error(f"unknown steps {sorted(unknown)}")

    from bench import env as benv

    try:
        overrides = benv.settings_env(a.overrides)
    except ValueError as e:
        ap.error(str(e))
    if a.ch_url:
        benv.CH_URL = a.ch_url
    from bench.data import make_dataset
    from bench.report import print_report, summary, write_chart, write_json

    console = Console(width=160)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    t_all = time.perf_counter()
    results: dict[str, Any] = {"started": stamp, "host": _host(), "code": _code_state(), "steps": steps,
                               "settings_overrides": overrides, "variants": []}

    def step(name: str) -> bool:
        if name in steps:
            console.print(f"[bold]== {name}[/bold] ({time.perf_counter() - t_all:.0f} s)")
            return True
        return False

    console.print(f"generating {a.events:,} calls (seed {a.seed}) and the oracle ...")
    ds = make_dataset(a.events, seed=a.seed)
    ds.oracle_rates()
    ds.oracle_flags()
    results["dataset"] = ds.describe()
    results["dataset"]["oracle_cells"] = len(ds.oracle_rates())
    results["dataset"]["oracle_flags"] = len(ds.oracle_flags())

    def variant(fn: Any, *args: Any, **kw: Any) -> None:
        try:
            r = fn(*args, **kw)
        except Exception as e:  # a crashed variant is a failed variant, the rest still runs
            r = {"variant": kw.get("label", getattr(fn, "__name__", "?")), "ok": False, "problems": [repr(e)]}
        results["variants"].append(r)
        console.print({k: r.get(k) for k in ("variant", "events_per_s", "worker_events_per_s", "final_events_per_s",
                                             "ok", "seconds", "peak_rss_mb")})

    if step("stages"):
        from bench.stages import run_stages

        results["stages"] = run_stages(ds, ch_url=benv.CH_URL)
        console.print(results["stages"])
    if step("ceiling"):
        from bench.peers.run import run_ceiling

        variant(run_ceiling, ds)
    from bench.pipeline import run_pipeline

    if step("ours"):
        variant(run_pipeline, ds, label="ours native 1w", backend="native", workers=1, settings_env=overrides)
    if step("chdb"):
        variant(run_pipeline, ds.head(a.chdb_events), label="ours chdb 1w", backend="embedded", workers=1,
                settings_env=overrides)
    if step("scale"):
        variant(run_pipeline, ds, label="ours native 2w", backend="native", workers=2, settings_env=overrides)
    if step("naive"):
        from bench.peers.run import run_naive

        variant(run_naive, ds.head(a.naive_events))
    if step("freshness"):
        from bench.freshness import run_freshness

        try:
            results["freshness"] = run_freshness(rate=a.fresh_rate, seconds=a.fresh_seconds)
        except Exception as e:
            results["freshness"] = {"ok": False, "problems": [repr(e)], "rate": a.fresh_rate}
        console.print(results["freshness"])
    if step("state"):
        results["state"] = {}
        # the worker's store (worker.borrower_store, RocksDB by default) and the in-memory one
        # (~290 bytes of RAM per borrower: left out above MEMORY_STORE_MAX borrowers)
        for name, extra in (("worker", []), ("memory_store", ["--store", "memory"])):
            if extra and a.borrowers > MEMORY_STORE_MAX:
                results["state"][name] = {"skipped": f"more than {MEMORY_STORE_MAX:,} borrowers "
                                                     f"(~{a.borrowers * 290 / 1e9:.1f} GB in RAM)"}
                continue
            out = subprocess.run([sys.executable, "-m", "bench.state_size", "--borrowers", str(a.borrowers), *extra],
                                 cwd=ROOT, capture_output=True, text=True, timeout=300 + a.borrowers // 10_000,
                                 env={**os.environ, **overrides})
            results["state"][name] = (json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0
                                      else {"error": out.stderr[-2000:]})
        from bench.state_worker import run_state_worker

        try:  # the target figure: a real worker process that holds the borrowers
            results["state"]["worker_process"] = run_state_worker(a.borrowers, timeout_s=600 + a.borrowers / 5_000,
                                                                  worker_env=overrides, span_days=a.state_span_days)
        except Exception as e:
            results["state"]["worker_process"] = {"ok": False, "problems": [repr(e)]}
        console.print(results["state"])
    if step("profile"):
        prof_base = LOCAL / "profile" / f"worker-{stamp}"
        r = run_pipeline(ds.head(a.profile_events), label="ours native 1w (profiled)", profile_out=str(prof_base),
                         settings_env=overrides)
        r["note"] = "under pyinstrument: slower than unprofiled; for where time goes, not for throughput"
        results["variants"].append(r)
        pj = prof_base.with_suffix(".json")
        if pj.exists():
            results["profile"] = json.loads(pj.read_text())
            results["profile"]["tree_file"] = str(prof_base.with_suffix(".txt"))
            (a.out / "profiles").mkdir(parents=True, exist_ok=True)
            (a.out / "profiles" / "latest-worker.txt").write_text(prof_base.with_suffix(".txt").read_text())

    results["seconds_total"] = round(time.perf_counter() - t_all, 1)
    results["summary"] = summary(results)
    print_report(results, console)
    js = write_json(results, a.out, stamp)
    png = write_chart(results, a.out, stamp)
    def shown(path: Path) -> Path:
        return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path

    console.print(f"results: {shown(js)}, {shown(png)} "
                  f"(total {results['seconds_total']:.0f} s)")
    bad = [r["variant"] for r in results["variants"] if not r.get("ok") and r["variant"] != "naive Faust"]
    if bad:
        console.print(f"[red]failed runs: {bad}[/red]")
    return 1 if bad else 0


def _code_state() -> dict[str, Any]:
    """The commit measured and any uncommitted change to the pipeline's code (others may be editing)."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip()

    dirty = git("status", "--porcelain", "--", "streams", "sinks", "schemas", "hangwatch", "simulator")
    from hangwatch.platform.native import inspect_core

    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted": dirty.splitlines(),
            "stream_core": inspect_core().mode}


def _host() -> dict[str, Any]:
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_at_start": os.getloadavg()}


if __name__ == "__main__":
    sys.exit(main())
