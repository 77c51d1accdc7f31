"""End-to-end throughput of hangwatch: backfill -> worker(s) -> Kafka -> sink -> ClickHouse.

The whole event set is produced BEFORE the worker starts (a backfill with event times in the
past), then worker(s) and sink start together. Clock:
  t_first      the first event counted by a worker (worker metrics; Faust start-up excluded);
  t_processed  every message of the topic processed by the partition stage;
  t_final      the merge stage emitted a final RateUpdate for as many cells as the oracle has
               (the last windows close by idleness, idle_close_s after the last event);
  t_stored     the sink's group has committed every message of all five topics (it commits
               only after ClickHouse accepted the rows) and, on the server, the stored results
               equal the oracle.
End-to-end throughput = messages / (t_stored - t_first). Results are checked against the
oracle at the end; a mismatch fails the run.

With several workers, the first to join the group starts on every partition and the others'
arrival rebalances it mid-run (the local broker forms groups at once:
group.initial.rebalance.delay.ms=0). So the run also reports
  t_stable     every worker owns call-outcomes partitions, together all of them, and all are
               ready (tables recovered, no rebalance running): worker metrics;
and the steady throughput = messages processed after t_stable / (t_processed - t_stable),
which is what more workers add once the group has formed.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from bench.data import Dataset, produce_records
from bench.env import MachineCpu, Offsets, Proc, RunEnv, free_port, metric_sum, python_module, scrape
from bench.verify import check, read_chdb_subprocess, read_native, stored_results
from hangwatch.schemas.topics import CALL_OUTCOMES, topic

NOT_PROCESSED = ("not_owned", "not_ready", "gap", "replay_skipped", "too_late_for_flags")


def _worker_argv(port: int, profile_out: str | None, profiler: str) -> list[str]:
    if profile_out:
        return python_module("bench.profile_worker", "--metrics-port", str(port), "--out", profile_out,
                             "--profiler", profiler)
    # info: the workers' assignments, restores and seeks in .local/bench/logs (a few lines per
    # rebalance), the evidence when a run fails; HANGWATCH_BENCH_WORKER_LOG_LEVEL overrides it
    level = os.environ.get("HANGWATCH_BENCH_WORKER_LOG_LEVEL", "info")
    return python_module("hangwatch", "worker", "--metrics-port", str(port), "--faust-log-level", level)


def _events_by_result(scraped: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in scraped:
        for k, v in m.items():
            if k.startswith("hangwatch_events_total"):
                out[k.split('"')[1]] = out.get(k.split('"')[1], 0) + v
    return out


class Progress:
    """The marks of a run's clock (module docstring) from the workers' metrics."""

    def __init__(self, messages: int, cells: int) -> None:
        self.messages = messages
        self.cells = cells
        self.marks: dict[str, float] = {}
        self.processed_at_stable = 0.0

    def update(self, scraped: list[dict[str, float]], now: float) -> bool:
        """Set the marks reached; True when this is the first event counted (t_first). Each
        message once: not the re-deliveries (not owned, not ready, after a gap, replays) nor the
        second label of an event too late for the flag rules."""
        marks = self.marks
        processed = sum(metric_sum(m, "hangwatch_events_total", exclude=NOT_PROCESSED) for m in scraped)
        finals = sum(metric_sum(m, 'hangwatch_rate_updates_total{final="true"}') for m in scraped)
        owned = [m.get(f'hangwatch_assigned_partitions{{topic="{CALL_OUTCOMES}"}}', 0) for m in scraped]
        if "stable" not in marks and all(owned) and sum(owned) == topic(CALL_OUTCOMES).partitions and all(
                m.get("hangwatch_ready") == 1 for m in scraped):
            marks["stable"] = now
            self.processed_at_stable = processed
        first = processed > 0 and "first" not in marks
        if first:
            marks["first"] = now
        if processed >= self.messages:
            marks.setdefault("processed", now)
        if finals >= self.cells:
            marks.setdefault("final", now)
        return first

    @property
    def done(self) -> bool:
        """Every message processed and every final rate emitted (what remains is the sink)."""
        return "processed" in self.marks and "final" in self.marks

    def seconds(self) -> dict[str, float]:
        first = self.marks.get("first")
        return {} if first is None else {k: round(v - first, 2) for k, v in self.marks.items() if k != "first"}

    def figures(self) -> dict[str, Any]:
        """events/s end to end (to `stored`), of the workers, of the finals, and steady (after
        `stable`), once `stored` is marked."""
        marks, t0, n = self.marks, self.marks["first"], self.messages
        out: dict[str, Any] = {"events_per_s": round(n / (marks["stored"] - t0)),
                               "worker_events_per_s": round(n / (marks["processed"] - t0)),
                               "final_events_per_s": round(n / (marks["final"] - t0))}
        if "stable" in marks and marks["stable"] < marks["processed"]:
            steady_from = max(marks["stable"], t0)
            out["steady_events_per_s"] = round((n - self.processed_at_stable) / (marks["processed"] - steady_from))
            out["processed_before_stable"] = self.processed_at_stable
        return out


def run_pipeline(ds: Dataset, *, label: str, backend: str = "native", workers: int = 1, timeout_s: float = 240.0,
                 profile_out: str | None = None, profiler: str = "pyinstrument", grace_s: int = 60,
                 idle_close_s: float = 1.0, settings_env: dict[str, str] | None = None) -> dict[str, Any]:
    """settings_env: HANGWATCH_* variables for the worker(s) and the sink (bench --set)."""
    env = RunEnv(label, backend=backend, grace_s=grace_s, idle_close_s=idle_close_s, worker_env=settings_env)
    res: dict[str, Any] = {"variant": label, "backend": backend, "workers": workers, "messages": ds.messages,
                           "load_avg_1m_at_start": round(os.getloadavg()[0], 2)}
    procs: list[Proc] = []
    offsets = Offsets(env.kafka)
    try:
        delivered, secs = produce_records(ds.records, env.kafka, env.topic(CALL_OUTCOMES))
        res["produce_events_per_s"] = round(delivered / secs)
        progress = Progress(ds.messages, len(ds.oracle_rates()))
        marks = progress.marks
        ports = [free_port() for _ in range(workers)]
        t_start = time.perf_counter()
        wprocs = [Proc(f"worker{i + 1}", _worker_argv(p, profile_out if i == 0 else None, profiler),
                       env.worker_env_for(f"worker{i + 1}"),
                       env.logs) for i, p in enumerate(ports)]
        sink = Proc("sink", python_module("hangwatch", "sink"), env.env(), env.logs)
        procs = [*wprocs, sink]
        topics = [env.topic(t) for t in ("call-outcomes", "call-outcomes.dlq", "hangup-rates", "borrower-flags",
                                         "hangup-alerts")]
        last: list[dict[str, float]] = []
        verified: dict[str, Any] | None = None
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            for p in procs:
                p.assert_alive()
            last = [scrape(p) for p in ports]
            now = time.perf_counter()
            if progress.update(last, now):
                machine = MachineCpu()
            if progress.done and offsets.caught_up(env.sink_group, topics):
                # the window first..stored, before the oracle check's own queries
                res["machine"] = machine.since_start()
                if backend != "native":
                    marks["stored"] = now
                    break
                got = check(ds, read_native(env.ch_url, env.db))
                if got["ok"]:
                    marks["stored"] = now
                    verified = got
                    break
            time.sleep(0.25)
        for p in procs:
            p.sample()
        res["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
        res["peak_rss_mb"] = {p.name: round(p.peak_rss_mb, 1) for p in procs}
        res["cpu_s"] = {p.name: round(p.cpu_s, 2) for p in procs}
        res["sys_cpu_s"] = {p.name: round(p.sys_s, 2) for p in procs}
        res["startup_s"] = round(marks.get("first", t_start) - t_start, 2)
        res["metrics"] = {
            "events": _events_by_result(last),
            "partition_stage_busy_s": round(sum(m.get('hangwatch_batch_seconds_sum{stage="partition"}', 0)
                                                for m in last), 2),
            "merge_stage_busy_s": round(sum(m.get('hangwatch_batch_seconds_sum{stage="merge"}', 0) for m in last), 2),
            "partition_batches": sum(m.get('hangwatch_batch_seconds_count{stage="partition"}', 0) for m in last),
            "merge_batches": sum(m.get('hangwatch_batch_seconds_count{stage="merge"}', 0) for m in last),
            "rate_updates": sum(metric_sum(m, "hangwatch_rate_updates_total") for m in last),
            "flags": sum(metric_sum(m, "hangwatch_flags_total") for m in last),
            # collector pauses (hangwatch.platform.gc_policy), summed over the workers
            "gc_s": round(sum(metric_sum(m, "hangwatch_gc_seconds_total") for m in last), 2),
        }
        if "first" in marks:
            res["seconds"] = progress.seconds()
        if "stored" not in marks:
            res["ok"] = False
            with contextlib.suppress(Exception):
                res["caught_up"] = offsets.caught_up(env.sink_group, topics)
                if backend == "native":
                    res["check"] = check(ds, read_native(env.ch_url, env.db))
            res["problems"] = [f"timed out after {timeout_s:.0f} s: reached {sorted(marks)}"]
            return res
        res.update(progress.figures())
        for p in procs:
            p.stop()
        if verified is None:
            if backend == "native":
                verified = check(ds, read_native(env.ch_url, env.db))
            else:
                verified = check(ds, read_chdb_subprocess(str(env.chdb_path), env.db))
        res["ok"] = verified["ok"]
        res["check"] = verified
        if profile_out:
            res["profile_file"] = profile_out
        return res
    finally:
        for p in procs:
            with contextlib.suppress(Exception):
                p.stop()
        offsets.close()
        env.cleanup()


__all__ = ["run_pipeline", "stored_results"]
