"""End-to-end throughput on the local cluster (deploy/local/cluster.sh): 3 Kafka brokers
(replication factor 3, min.insync.replicas 2), ClickHouse 18.16 as 2 shards x 2 replicas in
cluster mode, two workers on hosts worker1 and worker2 and the sink on host sink1, each host
its own network namespace on this one machine.

    python -m bench.cluster [--events 200000] [--seed 7]      (make bench-cluster)

The same seeded data set and clock as the single-node figure (bench/pipeline.py, `python -m
bench --only ours`): the whole set is produced first to topics of the run's own prefix, then
the workers and the sink start; end-to-end events/s = messages / (t_stored - t_first), where
t_first is the first event a worker counted and t_stored the moment the sink's group has
committed every message of the five topics and what the Distributed tables return equals the
batch oracle exactly (bench/verify.py; read again through a replica of the other shard at the
end). The migrations are applied before the clock (cluster mode takes ~15 s of ON CLUSTER DDL).

The cluster is started unless it is up, and stopped at the end only if this run started it.
Everything the run creates has its own name (topic prefix, app id, sink group, database
hw_bench_<tag>) and is deleted afterwards (the database ON CLUSTER). The machine's 2 cores
carry every broker, ClickHouse server, worker and the sink, so the figure is reported with the
load average and beside the single-node figure of bench/results, not held to a target.
Output: a table on the terminal and bench/results/cluster-<stamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.data import Dataset, make_dataset, produce_records
from bench.env import LOCAL, ROOT, MachineCpu, Offsets, Proc, cpu_seconds, delete_run_topics, parse_metrics
from bench.pipeline import Progress
from bench.verify import check, read_native
from hangwatch.platform.settings import ClickHouseSettings, KafkaSettings
from hangwatch.schemas.topics import CALL_OUTCOMES

CLUSTER_SH = ROOT / "deploy" / "local" / "cluster.sh"
TOPICS = ("call-outcomes", "call-outcomes.dlq", "hangup-rates", "borrower-flags", "hangup-alerts")
WORKER_HOSTS = ("worker1", "worker2")
SINK_HOST = "sink1"
SINGLE_NODE_VARIANT = "ours native 1w"
RESULTS = ROOT / "bench" / "results"


def facts_path() -> Path:
    """cluster.json, written by `cluster.sh start` (as tests/cluster/conftest.py reads it)."""
    state = Path(os.environ.get("HANGWATCH_LOCAL_STATE") or ROOT / ".local")
    return state / "cluster" / "cluster.json"


def cluster_sh(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLUSTER_SH), *args], capture_output=True, text=True, timeout=timeout_s, check=False)


def cluster_up() -> bool:
    return facts_path().is_file() and cluster_sh("status", timeout_s=60).returncode == 0


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


class ClusterRun:
    """One run's names on the cluster and the environment of its processes."""

    def __init__(self, facts: dict[str, Any], ch_host: str) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.hosts = {h["name"]: h for h in facts["hosts"]}
        self.bootstrap: str = facts["kafka_bootstrap"]
        self.ch_cluster: str = facts["clickhouse_cluster"]
        self.prefix = f"hwbench{self.tag}."
        self.app_id = f"hw-bench-cl-{self.tag}"
        self.sink_group = f"hw-bench-cl-sink-{self.tag}"
        self.db = f"hw_bench_{self.tag}"
        self.ch_host = ch_host
        self.kafka = KafkaSettings(bootstrap_servers=self.bootstrap, topic_prefix=self.prefix, replication_factor=3,
                                   min_insync_replicas=2)
        self.logs = LOCAL / "logs" / f"cluster-{self.tag}"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.data_dir = LOCAL / "faust" / self.app_id

    def ch_url(self, host: str) -> str:
        return f"clickhouse://default@{self.hosts[host]['ip']}:{self.hosts[host]['port']}"

    def netns(self, host: str) -> list[str]:
        return ["ip", "netns", "exec", self.hosts[host]["namespace"]]

    def topic(self, name: str) -> str:
        return self.prefix + name

    def env(self) -> dict[str, str]:
        """As bench.env.RunEnv.env (same worker settings), pointed at the cluster."""
        e = {k: v for k, v in os.environ.items() if not k.startswith("HANGWATCH_")}
        e.update({
            "PYTHONPATH": str(ROOT),
            "HANGWATCH_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "HANGWATCH_KAFKA__REPLICATION_FACTOR": "3",
            "HANGWATCH_KAFKA__MIN_INSYNC_REPLICAS": "2",
            "HANGWATCH_KAFKA__TOPIC_PREFIX": self.prefix,
            "HANGWATCH_WORKER__APP_ID": self.app_id,
            "HANGWATCH_WORKER__GRACE_S": "60",
            "HANGWATCH_WORKER__IDLE_CLOSE_S": "1",
            "HANGWATCH_WORKER__BROKER_SESSION_TIMEOUT_S": "10",
            "HANGWATCH_WORKER__BROKER_HEARTBEAT_INTERVAL_S": "1",
            "HANGWATCH_SINK__GROUP_ID": self.sink_group,
            "HANGWATCH_SINK__LOG_INTERVAL_S": "0",
            "HANGWATCH_CLICKHOUSE__URL": f"{self.ch_url(self.ch_host)}/{self.db}",
            "HANGWATCH_CLICKHOUSE__CLUSTER": self.ch_cluster,
            "HANGWATCH_LOG_LEVEL": "WARNING",
        })
        return e

    def clickhouse(self, host: str) -> ClickHouseSettings:
        from pydantic import SecretStr

        return ClickHouseSettings(url=SecretStr(self.ch_url(host)), database=self.db, cluster=self.ch_cluster,
                                  send_receive_timeout_s=120)

    def scrape(self, host: str, port: int) -> dict[str, float]:
        """The worker's metrics: it serves them on 127.0.0.1 of its own namespace."""
        r = subprocess.run([*self.netns(host), "curl", "-s", "--max-time", "2", f"http://127.0.0.1:{port}/metrics"],
                           capture_output=True, text=True, check=False)
        return parse_metrics(r.stdout) if r.returncode == 0 else {}

    def create_topics(self) -> dict[str, Any]:
        """`hangwatch topics create` with the cluster's settings; the replicas it got."""
        r = subprocess.run([sys.executable, "-m", "hangwatch", "topics", "create"], env=self.env(), cwd=ROOT,
                           capture_output=True, text=True, timeout=120, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"hangwatch topics create failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        from hangwatch.platform.kafka_admin import admin_client

        admin = admin_client(self.kafka)
        name = self.topic(CALL_OUTCOMES)
        isr = None
        try:
            (d,) = admin.describe_topics([name])
            with contextlib.suppress(Exception):  # {"topic": {name: {config: {"value": ...}}}}
                cfg = admin.describe_configs([_topic_resource(name)])
                isr = cfg["topic"][name]["min.insync.replicas"]["value"]
        finally:
            admin.close()
        return {"replicas": sorted({len(p["replica_nodes"]) for p in d["partitions"]}),
                "min_insync_replicas": isr, "partitions": len(d["partitions"])}

    def migrate(self) -> list[str]:
        """The store in cluster mode, made as the sink would make it at its start."""
        from hangwatch.sinks import migrate
        from hangwatch.sinks.backends import open_backend

        ch = self.clickhouse(self.ch_host)
        backend = open_backend(ch)
        try:
            done = migrate.apply(backend, self.db, ch.retention_days, cluster=self.ch_cluster,
                                 zookeeper_path=ch.zookeeper_path)
        finally:
            backend.close()
        return [f"{m.version:04d}_{m.name}" for m in done]

    def service_cpu(self) -> dict[str, float]:
        """CPU seconds so far of each cluster service (brokers, ZooKeeper, ClickHouse servers)."""
        out: dict[str, float] = {}
        for name in self.hosts:
            with contextlib.suppress(OSError, ValueError):
                pid = int((facts_path().parent / name / "service.pid").read_text().strip())
                t = cpu_seconds(pid)
                if t is not None:
                    out[name] = t
        return out

    def cleanup(self) -> list[str]:
        """Delete the run's topics, groups, database (ON CLUSTER) and worker data; what failed."""
        failed: list[str] = []
        try:
            delete_run_topics(self.kafka, (self.prefix, self.app_id), [self.app_id, self.sink_group])
        except Exception as e:
            failed.append(f"topics: {e!r}")
        try:
            from hangwatch.sinks.backends import open_backend

            backend = open_backend(self.clickhouse(self.ch_host))
            try:
                for name in (self.db, f"{self.db}_dash", f"{self.db}_dash_mask"):
                    backend.execute(f"DROP DATABASE IF EXISTS {name} ON CLUSTER {self.ch_cluster}")
            finally:
                backend.close()
        except Exception as e:
            failed.append(f"database {self.db}: {e!r}")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return failed


def _topic_resource(name: str) -> Any:
    from kafka.admin import ConfigResource, ConfigResourceType

    return ConfigResource(ConfigResourceType.TOPIC, name)


def run_cluster(ds: Dataset, run: ClusterRun, *, timeout_s: float = 600.0) -> dict[str, Any]:
    res: dict[str, Any] = {"variant": "cluster: 3 brokers RF 3 + ClickHouse 2x2, 2 workers + sink",
                           "messages": ds.messages, "topic_prefix": run.prefix, "database": run.db,
                           "clickhouse_url": run.ch_url(run.ch_host), "clickhouse_cluster": run.ch_cluster,
                           "hosts": {"workers": list(WORKER_HOSTS), "sink": SINK_HOST}}
    procs: list[Proc] = []
    offsets: Offsets | None = None
    try:
        res["topics"] = run.create_topics()
        t = time.perf_counter()
        res["migrations_applied"] = run.migrate()
        res["migrations_s"] = round(time.perf_counter() - t, 1)
        offsets = Offsets(run.kafka)
        delivered, secs = produce_records(ds.records, run.kafka, run.topic(CALL_OUTCOMES))
        res["produce_events_per_s"] = round(delivered / secs)
        port = 20000 + int(run.tag, 16) % 20000  # each namespace has its own ports
        res["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
        res["uptime_at_start"] = uptime()
        level = os.environ.get("HANGWATCH_BENCH_WORKER_LOG_LEVEL", "info")
        t_start = time.perf_counter()
        wprocs = [Proc(h, [*run.netns(h), sys.executable, "-m", "hangwatch", "worker", "--metrics-port", str(port),
                           "--faust-log-level", level, "--data-dir", str(run.data_dir / h)], run.env(), run.logs)
                  for h in WORKER_HOSTS]
        sink = Proc("sink", [*run.netns(SINK_HOST), sys.executable, "-m", "hangwatch", "sink"], run.env(), run.logs)
        procs = [*wprocs, sink]
        topics = [run.topic(t) for t in TOPICS]
        progress = Progress(ds.messages, len(ds.oracle_rates()))
        marks = progress.marks
        verified: dict[str, Any] | None = None
        machine: MachineCpu | None = None
        cpu0: dict[str, float] = {}
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            for p in procs:
                p.assert_alive()
            last = [run.scrape(h, port) for h in WORKER_HOSTS]
            now = time.perf_counter()
            if progress.update(last, now):
                machine, cpu0 = MachineCpu(), run.service_cpu()
            if progress.done and offsets.caught_up(run.sink_group, topics):
                if machine is not None and "machine" not in res:
                    res["machine"] = machine.since_start()
                    res["machine"].pop("service_cpu_s", None)  # the single-node services'; the cluster's below
                    cpu1 = run.service_cpu()
                    res["service_cpu_s"] = {k: round(v - cpu0[k], 2) for k, v in cpu1.items() if k in cpu0}
                got = check(ds, read_native(run.ch_url(run.ch_host), run.db))
                if got["ok"]:
                    marks["stored"] = now
                    verified = got
                    break
                res["last_check"] = got
            time.sleep(0.25)
        for p in procs:
            p.sample()
        res["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        res["uptime_at_end"] = uptime()
        res["peak_rss_mb"] = {p.name: round(p.peak_rss_mb, 1) for p in procs}
        res["cpu_s"] = {p.name: round(p.cpu_s, 2) for p in procs}
        res["startup_s"] = round(marks.get("first", t_start) - t_start, 2)
        if "first" in marks:
            res["seconds"] = progress.seconds()
        if verified is None:
            res["ok"] = False
            res["problems"] = [f"timed out after {timeout_s:.0f} s: reached {sorted(marks)}"]
            with contextlib.suppress(Exception):
                res["caught_up"] = offsets.caught_up(run.sink_group, topics)
            return res
        res.update(progress.figures())
        for p in procs:
            p.stop()
        res["check"] = verified
        # the same answer through a replica of the other shard
        other = "ch-s2r2" if run.ch_host != "ch-s2r2" else "ch-s1r2"
        res["check_other_host"] = {"host": other, **check(ds, read_native(run.ch_url(other), run.db))}
        res["ok"] = verified["ok"] and res["check_other_host"]["ok"]
        return res
    except Exception as e:
        res["ok"] = False
        res.setdefault("problems", []).append(repr(e)[:3000])
        return res
    finally:
        for p in procs:
            with contextlib.suppress(Exception):
                p.stop()
        if offsets is not None:
            with contextlib.suppress(Exception):
                offsets.close()
        res["logs"] = str(run.logs.relative_to(ROOT))
        res["cleanup_failed"] = run.cleanup()


def single_node_reference(results: Path) -> dict[str, Any]:
    """The single-node end-to-end figure (`python -m bench --only ours`): the newest run in
    latest.json and the range of the runs of the same commit."""
    latest = results / "latest.json"
    if not latest.is_file():
        return {"missing": f"{latest}: run `python -m bench --only ours`"}
    d = json.loads(latest.read_text())
    commit = d.get("code", {}).get("commit")
    runs = []
    for f in sorted(results.glob("bench-*.json")):
        with contextlib.suppress(ValueError, OSError):
            r = json.loads(f.read_text())
            if r.get("code", {}).get("commit") != commit:
                continue
            for v in r.get("variants", []):
                if v.get("variant") == SINGLE_NODE_VARIANT and v.get("ok"):
                    runs.append({"file": f.name, "events_per_s": v["events_per_s"],
                                 "load_avg_1m_at_start": v.get("load_avg_1m_at_start")})
    figures = [r["events_per_s"] for r in runs]
    return {"variant": SINGLE_NODE_VARIANT, "commit": commit, "runs": runs,
            "events_per_s_range": [min(figures), max(figures)] if figures else None,
            "setup": "1 Kafka broker (RF 1) + 1 ClickHouse 18.16 server (plain MergeTree), 1 worker + sink, "
                     "same data set and clock"}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000, help="calls in the data set (as python -m bench)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--ch-host", default="ch-s1r1", help="the ClickHouse host the sink writes to")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds from the processes' start")
    ap.add_argument("--keep-cluster", action="store_true", help="leave a cluster this run started running")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    from rich.console import Console

    console = Console(width=160)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    was_up = cluster_up()
    if not was_up:
        console.print("starting the local cluster (deploy/local/cluster.sh start) ...")
        r = cluster_sh("start", timeout_s=600)
        if r.returncode != 0:
            console.print(f"[red]cluster.sh start failed[/red]\n{r.stderr[-3000:]}")
            return 1
    try:
        facts = json.loads(facts_path().read_text())
        console.print(f"generating {a.events:,} calls (seed {a.seed}) and the oracle ...")
        ds = make_dataset(a.events, seed=a.seed)
        ds.oracle_rates()
        ds.oracle_flags()
        run = ClusterRun(facts, a.ch_host)
        console.print(f"run {run.tag}: topics {run.prefix}*, database {run.db} on cluster {run.ch_cluster}")
        res = run_cluster(ds, run, timeout_s=a.timeout)
    finally:
        if not was_up and not a.keep_cluster:
            cluster_sh("stop", timeout_s=300)
    from bench.__main__ import _code_state

    out: dict[str, Any] = {"started": stamp, "code": _code_state(), "cpus": os.cpu_count(),
                           "cluster_was_up": was_up, "dataset": ds.describe(), "cluster": res,
                           "single_node": single_node_reference(RESULTS)}
    single = out["single_node"].get("events_per_s_range")
    if res.get("events_per_s") and single:
        out["cluster_over_single_node"] = [round(res["events_per_s"] / single[1], 2),
                                           round(res["events_per_s"] / single[0], 2)]
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"cluster-{stamp}.json"
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    _print(console, out)
    console.print(f"results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0 if res.get("ok") else 1


def _print(console: Any, out: dict[str, Any]) -> None:
    from rich.table import Table

    res, single = out["cluster"], out["single_node"]
    t = Table("setup", "end to end events/s", "worker events/s", "exact", "load avg (1, 5, 15 min)")
    t.add_row(res["variant"], f"{res.get('events_per_s', '-'):,}" if res.get("events_per_s") else "-",
              f"{res.get('worker_events_per_s', '-'):,}" if res.get("worker_events_per_s") else "-",
              str(res.get("ok")), f"{res.get('load_avg_at_start')} -> {res.get('load_avg_at_end')}")
    rng = single.get("events_per_s_range")
    t.add_row(f"single node ({single.get('variant')}, commit {single.get('commit')})",
              f"{rng[0]:,} - {rng[1]:,}" if rng else "-", "", "True" if rng else "-",
              ", ".join(str(r.get("load_avg_1m_at_start")) for r in single.get("runs", [])) + " (1 min)")
    console.print(t)
    for p in res.get("problems", []):
        console.print(f"[red]{p}[/red]")


if __name__ == "__main__":
    sys.exit(main())
