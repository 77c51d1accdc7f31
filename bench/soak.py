"""Soak: live traffic through 2 workers and a sink while faults are injected at random times,
checked against the oracle of everything produced, during the run and at the end.

    python -m bench.soak --minutes 30 [--rate 300] [--seed 1] [--out bench/results]
    make soak SOAK_MINUTES=30

Traffic: the simulator in live mode (calls stamped now, `paced` at --rate calls/s, 1 % re-sent
duplicates, 1 % out of order within 20 s, 0.2 % malformed messages), sent with the simulator's
`produce`; a send that fails (the broker is down) is retried with the following records. The
oracle is built from what is really in call-outcomes: a tap consumer reads the topic and maps
every message's bytes back to the simulator's record (valid event or malformed), so a batch
that never reached the broker is simply not expected, and one written twice by a retry is.

Processes: `python -m hangwatch worker` x 2 (static membership: worker.instance_id, session
timeout 6 s, each its own data dir) and `python -m hangwatch sink`, with this run's own topic
prefix, app id, sink group and ClickHouse database (deleted afterwards unless --keep).

Faults, one at a time, at seeded random gaps (the first round has every kind once, in a seeded
order): kill -9 + restart of a worker, kill -9 + restart of the sink, broker stop/start
(deploy/local/kafka.sh), ClickHouse stop/start (deploy/local/clickhouse.sh), a worker paused
with SIGSTOP past the session timeout then SIGCONT. Recovery time of a fault: from its end (the
restart / start / SIGCONT) until the workers' group and the sink's group are within ~2 s of
traffic of the end offsets and call_events has grown.

Checks: every minute, the stored final 60 s / 300 s cells that ended well before the tap last
caught up equal the oracle's; at the end, after the traffic stops and the pipeline drains:
every valid event once in call_events, every oracle cell stored (FINAL, the newest version)
with exactly the oracle's counts, flag transitions equal the flag oracle, one dead letter per
malformed message. Lost = missing or under-counted, doubled = twice or over-counted.

Addresses: --kafka / --clickhouse, default from HANGWATCH_SOAK_KAFKA / HANGWATCH_SOAK_CLICKHOUSE_URL,
else 127.0.0.1:$KAFKA_PORT and :$CH_TCP_PORT (the service scripts' own variables; default 9092
and 9000). The service scripts run with this process's environment, so KAFKA_PORT, CH_TCP_PORT
and HANGWATCH_LOCAL_STATE select which local services are stopped and started. Services that
are not running are started, and stopped again at the end.

Output: a table on the terminal, bench/results/soak-<stamp>.json and .md. Exit status 1 when the
verdict is FAIL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.data import COUNT_FIELDS
from bench.env import Offsets, Proc, free_port, peak_rss_mb, python_module, scrape
from hangwatch.platform.kafka_admin import admin_client, ensure_topics
from hangwatch.platform.settings import KafkaSettings, Settings
from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.schemas.topics import BORROWER_FLAGS, CALL_OUTCOMES, HANGUP_RATES
from hangwatch.simulator import FaultConfig, SimConfig, SimRecord, generate, paced, produce
from hangwatch.streams.core.rules_config import load_rules
from testkit.oracles.flags import oracle_flag_records
from testkit.oracles.rates import oracle_counts, window_counts

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local" / "soak-runs"
RESULTS = ROOT / "bench" / "results"
SIZES = (60, 300, 3600)
Cell = tuple[int, int, str, str]  # window_size_s, window_start_s, dimension, value
FAULT_KINDS = ("kill_worker", "kill_sink", "broker", "clickhouse", "pause_worker")
SINK_TOPICS = (CALL_OUTCOMES, "call-outcomes.dlq", HANGUP_RATES, BORROWER_FLAGS, "hangup-alerts")


def default_kafka() -> str:
    return os.environ.get("HANGWATCH_SOAK_KAFKA") or f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"


def default_clickhouse() -> str:
    return (os.environ.get("HANGWATCH_SOAK_CLICKHOUSE_URL")
            or f"clickhouse://default@127.0.0.1:{os.environ.get('CH_TCP_PORT', '9000')}")


@dataclasses.dataclass
class SoakConfig:
    minutes: float = 30.0
    rate: float = 300.0  # live calls per second
    seed: int = 1
    kafka: str = dataclasses.field(default_factory=default_kafka)
    clickhouse: str = dataclasses.field(default_factory=default_clickhouse)
    # Longer than a broker outage plus the workers' reconnection: while the broker is away a
    # worker's partitions look idle and caught up, so their watermarks follow the wall clock
    # (now - grace); calls stamped during the outage must still be within the grace period
    # when they arrive (bench/README.md, soak).
    grace_s: int = 120
    idle_close_s: float = 5.0
    session_timeout_s: float = 6.0
    gap_s: tuple[float, float] = (20.0, 60.0)  # quiet time between faults (after the recovery)
    outage_s: tuple[float, float] = (10.0, 20.0)  # broker / ClickHouse down for this long
    pause_s: tuple[float, float] = (10.0, 15.0)  # SIGSTOP for this long (> session timeout)
    kinds: tuple[str, ...] = FAULT_KINDS  # the faults to inject
    recovery_timeout_s: float = 240.0
    check_every_s: float = 60.0
    drain_timeout_s: float = 420.0
    wait_final: bool = True  # drain until every 60 s cell is final (else: until the counts are equal)
    out: Path = RESULTS
    keep: bool = False


# ---- services ----------------------------------------------------------------------------------

def service(name: str, action: str, log: Path) -> float:
    """deploy/local/<name>.sh <action> with this process's environment; returns its seconds."""
    t0 = time.monotonic()
    with log.open("ab") as f:
        subprocess.run([str(ROOT / "deploy" / "local" / f"{name}.sh"), action], check=True, stdout=f,
                       stderr=subprocess.STDOUT, timeout=180)
    return time.monotonic() - t0


def service_running(name: str) -> bool:
    return subprocess.run([str(ROOT / "deploy" / "local" / f"{name}.sh"), "status"], capture_output=True,
                          timeout=30).returncode == 0


def service_pid(name: str) -> int | None:
    state = Path(os.environ.get("HANGWATCH_LOCAL_STATE", ROOT / ".local"))
    with contextlib.suppress(OSError, ValueError):
        return int((state / name / f"{name}.pid").read_text().strip())
    return None


# ---- traffic and the oracle tap ----------------------------------------------------------------

def digest(value: bytes) -> bytes:
    return hashlib.blake2b(value, digest_size=16).digest()


class Traffic(threading.Thread):
    """The simulator's live records, paced and produced to call-outcomes until stopped. Every
    record handed to the producer is registered (hash of its bytes -> event or None) first."""

    def __init__(self, cfg: SoakConfig, kafka: KafkaSettings, topic: str) -> None:
        super().__init__(daemon=True, name="traffic")
        self.cfg, self.kafka, self.topic = cfg, kafka, topic
        self.stop = threading.Event()
        self.known: dict[bytes, CallOutcome | None] = {}
        self.handed = 0
        self.delivered = 0
        self.errors: list[tuple[float, str]] = []
        faults = FaultConfig(duplicates=0.01, out_of_order=0.01, malformed=0.002, ooo_window_s=20.0,
                             grace_s=float(cfg.grace_s))
        self.records = generate(SimConfig(seed=cfg.seed, rate=cfg.rate, borrowers=200_000, faults=faults))

    def _source(self) -> Iterator[SimRecord]:
        for r in self.records:
            if self.stop.is_set():
                return
            self.known[digest(r.value)] = r.event
            self.handed += 1
            yield r

    async def _run(self) -> None:
        while not self.stop.is_set():
            done = self.delivered

            def progress(n: int, base: int = done) -> None:
                self.delivered = base + n

            async def src() -> AsyncIterator[SimRecord]:
                async for r in paced(self._source(), self.cfg.rate):
                    yield r

            try:
                await produce(src(), self.kafka, self.topic, linger_ms=20, on_progress=progress,
                              metadata_timeout_s=60.0)
            except Exception as e:  # the broker is away: go on with the next records
                self.errors.append((time.time(), str(e).splitlines()[0][:200]))
                await asyncio.sleep(1.0)

    def run(self) -> None:
        asyncio.run(self._run())


class Tap(threading.Thread):
    """Reads call-outcomes from the start and builds the oracle of what is really there."""

    def __init__(self, kafka: KafkaSettings, topic: str, known: dict[bytes, CallOutcome | None]) -> None:
        super().__init__(daemon=True, name="tap")
        self.kafka, self.topic, self.known = kafka, topic, known
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.events: list[CallOutcome] = []  # distinct valid events, first occurrence order
        self.ids: set[str] = set()
        self.where: dict[str, tuple[int, int]] = {}  # event id -> (partition, offset) of its first copy
        self.cells: dict[tuple[int, int, str, str], dict[str, int]] = {}
        self.messages = 0
        self.malformed = 0
        self.unknown = 0
        self.synced_at = 0.0  # wall time at which the tap last had read up to the end offsets

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        c = KafkaConsumer(**self.kafka.kafka_python_kwargs(), enable_auto_commit=False, auto_offset_reset="earliest")
        parts = c.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        while not self.stop.is_set():
            try:
                t = time.time()
                got = c.poll(timeout_ms=500, max_records=5000)
                for recs in got.values():
                    for r in recs:
                        self._add(r.value, r.partition, r.offset)
                if not got:
                    ends = c.end_offsets(tps)
                    if all(c.position(tp) >= ends[tp] for tp in tps):
                        self.synced_at = t
            except Exception:  # the broker is away; kafka-python reconnects
                time.sleep(1.0)
        c.close()

    def _add(self, value: bytes, partition: int, offset: int) -> None:
        h = digest(value)
        if h not in self.known:
            self.unknown += 1
            return
        ev = self.known[h]
        with self.lock:
            self.messages += 1
            if ev is None:
                self.malformed += 1
            elif ev.event_id not in self.ids:
                self.ids.add(ev.event_id)
                self.where[ev.event_id] = (partition, offset)
                self.events.append(ev)
                for cell, counts in window_counts([ev], SIZES).items():
                    have = self.cells.setdefault(cell, dict.fromkeys(COUNT_FIELDS, 0))
                    for k, v in counts.items():
                        have[k] += v


# ---- processes ---------------------------------------------------------------------------------

class Pipeline:
    """2 workers + 1 sink as real processes; restarts keep the name, data dir and instance id."""

    def __init__(self, cfg: SoakConfig, tag: str, logs: Path) -> None:
        self.cfg, self.tag, self.logs = cfg, tag, logs
        self.prefix = f"soak{tag}."
        self.app_id = f"hw-soak-{tag}"
        self.sink_group = f"hw-soak-sink-{tag}"
        self.db = f"soak_{tag}"
        self.data = LOCAL / "faust" / self.app_id
        self.procs: dict[str, Proc] = {}
        self.history: dict[str, list[Proc]] = {}
        self.ports = {"worker1": free_port(), "worker2": free_port()}
        self.metrics: dict[str, dict[str, float]] = {}  # newest scrape of each worker process

    def env(self, name: str) -> dict[str, str]:
        e = {k: v for k, v in os.environ.items() if not k.startswith("HANGWATCH_")}
        e.update({
            "PYTHONPATH": str(ROOT),
            "HANGWATCH_KAFKA__BOOTSTRAP_SERVERS": self.cfg.kafka,
            "HANGWATCH_KAFKA__TOPIC_PREFIX": self.prefix,
            "HANGWATCH_CLICKHOUSE__URL": f"{self.cfg.clickhouse.rstrip('/')}/{self.db}",
            "HANGWATCH_WORKER__APP_ID": self.app_id,
            "HANGWATCH_WORKER__GRACE_S": str(self.cfg.grace_s),
            "HANGWATCH_WORKER__IDLE_CLOSE_S": str(self.cfg.idle_close_s),
            "HANGWATCH_WORKER__BROKER_SESSION_TIMEOUT_S": str(self.cfg.session_timeout_s),
            "HANGWATCH_WORKER__BROKER_HEARTBEAT_INTERVAL_S": "1",
            "HANGWATCH_SINK__GROUP_ID": self.sink_group,
            "HANGWATCH_LOG_LEVEL": "WARNING",
        })
        if name.startswith("worker"):
            e["HANGWATCH_WORKER__DATA_DIR"] = str(self.data / name)
            e["HANGWATCH_WORKER__INSTANCE_ID"] = f"{self.app_id}-{name}"
        return e

    def start(self, name: str) -> Proc:
        n = len(self.history.setdefault(name, []))
        argv = python_module("hangwatch", "sink")
        if name in self.ports:
            argv = python_module("hangwatch", "worker", "--metrics-port", str(self.ports[name]))
        p = Proc(name if n == 0 else f"{name}.{n}", argv, self.env(name), self.logs)
        self.procs[name] = p
        self.history[name].append(p)
        return p

    def kill9(self, name: str) -> None:
        p = self.procs[name]
        p.sample()
        p.proc.kill()
        p.proc.wait(10)
        p.stop()

    def scrape(self) -> None:
        for name, port in self.ports.items():
            p = self.procs.get(name)
            got = scrape(port) if p is not None and p.alive() else {}
            if got and p is not None:
                self.metrics[p.name] = got

    def events_by_result(self) -> dict[str, int]:
        """hangwatch_events_total by result, summed over every worker process's last scrape
        (a process killed -9 loses what it counted after its last scrape)."""
        out: dict[str, int] = {}
        for m in self.metrics.values():
            for k, v in m.items():
                if k.startswith("hangwatch_events_total{"):
                    res = k.split('result="', 1)[1].split('"', 1)[0] if 'result="' in k else k
                    out[res] = out.get(res, 0) + int(v)
        return out

    def log_lines(self) -> dict[str, int]:
        out = {}
        for name, ps in self.history.items():
            out[name] = sum(_count_lines(p.log_path) for p in ps)
        return out

    def peak_rss(self) -> dict[str, float]:
        for p in self.procs.values():
            if p.alive():
                p.sample()
        return {name: round(max(p.peak_rss_mb for p in ps), 1) for name, ps in self.history.items()}

    def stop_all(self) -> None:
        for p in self.procs.values():
            with contextlib.suppress(Exception):
                if p.alive():
                    os.kill(p.pid, signal.SIGCONT)
                p.stop()


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


# ---- the store ---------------------------------------------------------------------------------

class Store:
    def __init__(self, url: str, db: str) -> None:
        from clickhouse_driver import Client

        self.url, self.db = url, db
        self.client = Client.from_url(url + "?connect_timeout=3&send_receive_timeout=60")

    def q(self, sql: str) -> list[Any]:
        return list(self.client.execute(sql))

    def count_events(self) -> int:
        try:
            return int(self.q(f"SELECT count() FROM {self.db}.call_events")[0][0])
        except Exception:
            self.client.disconnect()
            return -1

    def cells(self, final_only: bool, sizes: tuple[int, ...] = SIZES) -> dict[Cell, tuple[Any, ...]]:
        cond = f"window_size_s IN ({', '.join(map(str, sizes))})" + (" AND final = 1" if final_only else "")
        rows = self.q(f"SELECT window_size_s, toUInt32(window_start), toString(dimension), toString(value), final, "
                      f"{', '.join(COUNT_FIELDS)} FROM {self.db}.hangup_rates FINAL WHERE {cond}")
        return {(int(r[0]), int(r[1]), r[2], r[3]): tuple(r[4:]) for r in rows}


def compare_cells(oracle: dict[tuple[int, int, str, str], dict[str, int]],
                  stored: dict[tuple[int, int, str, str], tuple[Any, ...]],
                  keys: list[tuple[int, int, str, str]]) -> dict[str, Any]:
    """Per cell: attempts under-counted (lost) or over-counted (doubled); any field off = wrong."""
    lost = doubled = missing = wrong = 0
    examples: list[dict[str, Any]] = []
    for k in keys:
        want = tuple(oracle[k][f] for f in COUNT_FIELDS) if k in oracle else (0,) * len(COUNT_FIELDS)
        got = stored.get(k)
        have = tuple(got[1:]) if got is not None else (0,) * len(COUNT_FIELDS)
        if got is None:
            missing += 1
        if have != want:
            wrong += 1
            lost += max(0, want[0] - have[0])
            doubled += max(0, have[0] - want[0])
            if len(examples) < 3:
                examples.append({"cell": "|".join(map(str, k)), "stored": list(have), "oracle": list(want)})
    return {"cells": len(keys), "missing": missing, "wrong": wrong, "lost": lost, "doubled": doubled,
            "examples": examples}


# ---- the run -----------------------------------------------------------------------------------

class Soak:
    def __init__(self, cfg: SoakConfig) -> None:
        self.cfg = cfg
        self.tag = uuid.uuid4().hex[:8]
        self.stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
        self.logs = LOCAL / "logs" / self.tag
        self.logs.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(f"soak/{cfg.seed}")
        self.pipe = Pipeline(cfg, self.tag, self.logs)
        self.kafka = KafkaSettings(bootstrap_servers=cfg.kafka, topic_prefix=self.pipe.prefix)
        self.store = Store(cfg.clickhouse, self.pipe.db)
        self.faults: list[dict[str, Any]] = []
        self.checks: list[dict[str, Any]] = []
        self.unexpected_exits: list[dict[str, Any]] = []
        self.lines_per_minute: list[dict[str, int]] = []
        self.service_rss: dict[str, float] = {}
        self.started_services: list[str] = []
        self.t0 = time.time()
        self.diagnosis: list[str] = []
        self._last_lines: dict[str, int] = {}
        self._next_minute = 0.0
        self._next_check = 0.0
        self._next_scrape = 0.0

    def say(self, msg: str) -> None:
        print(f"[soak {time.time() - self.t0:7.1f} s] {msg}", flush=True)

    # housekeeping while waiting
    def tick(self) -> None:
        now = time.time()
        for name, p in list(self.pipe.procs.items()):
            if not p.alive():
                self.unexpected_exits.append({"process": name, "at_s": round(now - self.t0, 1),
                                              "exit": p.proc.returncode, "log_tail": p.log_tail(15)})
                self.say(f"{name} exited by itself ({p.proc.returncode}); restarting it")
                p.stop()
                self.pipe.start(name)
        for svc in ("kafka", "clickhouse"):
            pid = service_pid(svc)
            rss = peak_rss_mb(pid) if pid else None
            if rss:
                self.service_rss[svc] = max(self.service_rss.get(svc, 0.0), round(rss, 1))
        if now >= self._next_scrape:
            self._next_scrape = now + 5
            self.pipe.scrape()
        if now >= self._next_minute:
            self._next_minute = now + 60
            lines = self.pipe.log_lines()
            self.lines_per_minute.append({k: v - self._last_lines.get(k, 0) for k, v in lines.items()})
            self._last_lines = lines
        if now >= self._next_check:
            self._next_check = now + self.cfg.check_every_s
            self.interim_check()

    def wait(self, seconds: float) -> None:
        end = time.time() + seconds
        while time.time() < end:
            self.tick()
            time.sleep(min(1.0, max(0.0, end - time.time())))

    def interim_check(self) -> None:
        """Stored final 60 s / 300 s cells that ended long before the tap last caught up."""
        cutoff = self.tap.synced_at - self.cfg.grace_s - 90
        if cutoff <= self.t0:
            return
        try:
            stored = self.store.cells(final_only=True, sizes=(60, 300))
        except Exception as e:
            self.checks.append({"at_s": round(time.time() - self.t0, 1), "skipped": str(e).splitlines()[0][:120]})
            self.store.client.disconnect()
            return
        with self.tap.lock:
            keys = [k for k in stored if k[1] + k[0] <= cutoff]
            keys += [k for k in self.tap.cells if k[0] in (60, 300) and k[1] + k[0] <= cutoff - 60 and k not in stored
                     and k[1] + k[0] > self.t0 + 60]
            res = compare_cells(self.tap.cells, stored, keys)
        res["at_s"] = round(time.time() - self.t0, 1)
        self.checks.append(res)
        self.say(f"check: {res['cells']} final cells, {res['wrong']} wrong, lost {res['lost']}, "
                 f"doubled {res['doubled']}")

    def behind(self, offsets: Offsets, target: dict[Any, int]) -> tuple[int, int]:
        """Messages of `target` (end offsets) not yet committed by the workers' group (on
        call-outcomes) and by the sink's group (on its five topics); -1 where the committed
        offsets could not be read."""
        source = self.pipe.prefix + CALL_OUTCOMES
        wc = offsets.committed(self.pipe.app_id)
        sc = offsets.committed(self.pipe.sink_group)
        if wc is None or sc is None:
            return -1, -1
        wlag = sum(max(0, e - wc.get(tp, 0)) for tp, e in target.items() if tp.topic == source)
        slag = sum(max(0, e - sc.get(tp, 0)) for tp, e in target.items())
        return wlag, slag

    def wait_recovered(self, since: float, offsets: Offsets) -> float | None:
        """Seconds from the fault's end until both groups have committed everything that was in
        the topics at that moment and call_events has grown."""
        topics = [self.pipe.prefix + t for t in SINK_TOPICS]
        deadline = time.time() + self.cfg.recovery_timeout_s
        target: dict[Any, int] = {}
        base = n = -1
        wlag = slag = -1
        while time.time() < deadline:
            self.tick()
            try:
                if not target:
                    target = offsets.ends(topics)
                wlag, slag = self.behind(offsets, target) if target else (-1, -1)
            except Exception as e:
                self.say(f"  offsets not readable: {str(e).splitlines()[0][:120]}")
                wlag = slag = -1
            n = self.store.count_events()
            if base < 0:
                base = n
            elif wlag == 0 and slag == 0 and n > base:
                return round(time.time() - since, 1)
            time.sleep(0.5)
        # what was still missing, so a report tells the pipeline's stall from the driver's
        self.say(f"  not recovered: workers' group {wlag} and sink's group {slag} messages behind the end "
                 f"offsets at the fault's end (-1: unreadable); call_events {base} -> {n}")
        return None

    def inject(self, kind: str) -> dict[str, Any]:
        at = time.time()
        f: dict[str, Any] = {"kind": kind, "at_s": round(at - self.t0, 1)}
        svc_log = self.logs / "services.log"
        if kind == "kill_worker" or kind == "kill_sink":
            name = self.rng.choice(["worker1", "worker2"]) if kind == "kill_worker" else "sink"
            self.pipe.scrape()
            self.pipe.kill9(name)
            self.pipe.start(name)
            f["target"] = name
        elif kind == "pause_worker":
            name = self.rng.choice(["worker1", "worker2"])
            pause = self.rng.uniform(*self.cfg.pause_s)
            pid = self.pipe.procs[name].pid
            os.kill(pid, signal.SIGSTOP)
            try:
                self.wait(pause)
            finally:
                os.kill(pid, signal.SIGCONT)
            f["target"], f["down_s"] = name, round(pause, 1)
        else:
            svc = "kafka" if kind == "broker" else "clickhouse"
            down = self.rng.uniform(*self.cfg.outage_s)
            stop_s = service(svc, "stop", svc_log)
            try:
                self.wait(down)
            finally:
                start_s = service(svc, "start", svc_log)
            f["target"], f["down_s"] = svc, round(stop_s + down + start_s, 1)
        end = time.time()
        f["ended_s"] = round(end - self.t0, 1)
        return f

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        for svc in ("kafka", "clickhouse"):
            if not service_running(svc):
                service(svc, "start", self.logs / "services.log")
                self.started_services.append(svc)
        ensure_topics(self.kafka)
        topic = self.pipe.prefix + CALL_OUTCOMES
        self.traffic = Traffic(cfg, self.kafka, topic)
        self.tap = Tap(self.kafka, topic, self.traffic.known)
        offsets = Offsets(self.kafka)
        report: dict[str, Any] = {}
        try:
            self.t0 = time.time()
            for name in ("worker1", "worker2", "sink"):
                self.pipe.start(name)
            self.traffic.start()
            self.tap.start()
            self.say(f"run {self.tag}: {cfg.rate:.0f} calls/s for {cfg.minutes} min; kafka {cfg.kafka}, "
                     f"clickhouse {cfg.clickhouse}, logs {self.logs}")
            warm = time.time() + 180
            while self.store.count_events() <= 0 and time.time() < warm:
                self.tick()
                time.sleep(1)
            traffic_end = self.t0 + cfg.minutes * 60
            plan = list(cfg.kinds)
            self.rng.shuffle(plan)
            while True:
                self.wait(self.rng.uniform(*cfg.gap_s))
                if time.time() + 45 > traffic_end and not plan:
                    break  # every kind has had its turn (the traffic runs longer if need be)
                kind = plan.pop(0) if plan else self.rng.choice(cfg.kinds)
                self.say(f"fault: {kind}")
                f = self.inject(kind)
                f["recovery_s"] = self.wait_recovered(self.t0 + f["ended_s"], offsets)
                self.faults.append(f)
                self.say(f"  {f.get('target')} down {f.get('down_s', 0)} s, recovered in {f['recovery_s']} s")
            self.wait(max(0.0, traffic_end - time.time()))
            self.traffic.stop.set()
            self.traffic.join(30)
            stopped = time.time()
            self.say(f"traffic stopped: {self.traffic.handed} records handed to the producer; draining")
            final = self.drain(stopped)
            report = self.report(final, stopped)
        finally:
            self.traffic.stop.set()
            self.pipe.stop_all()
            self.tap.stop.set()
            self.tap.join(10)
            offsets.close()
            if not cfg.keep:
                self.cleanup()
            for svc in self.started_services:
                with contextlib.suppress(Exception):
                    service(svc, "stop", self.logs / "services.log")
        return report

    def final_state(self) -> dict[str, Any]:
        """Stored results against the oracle of everything the tap read."""
        db = self.pipe.db
        with self.tap.lock:
            events = list(self.tap.events)
            malformed = self.tap.malformed
        ids = {e.event_id for e in events}
        rows = self.store.q(f"SELECT event_id, count() FROM {db}.call_events FINAL GROUP BY event_id")
        stored_ids = {r[0] for r in rows}
        ev_doubled = sum(int(r[1]) - 1 for r in rows)
        ev_lost = len(ids - stored_ids)
        ev_extra = len(stored_ids - ids)
        oracle = {(int(s), int(t), d, v): c for (s, t, d, v), c in
                  ((tuple(k.split("|")), c) for k, c in oracle_counts(events, SIZES).items())}
        stored = self.store.cells(final_only=False)
        cells = compare_cells(oracle, stored, sorted(set(oracle) | set(stored)))
        cells["final"] = sum(1 for k, v in stored.items() if v[0])
        cells["open_60s"] = sum(1 for k, v in stored.items() if k[0] == 60 and not v[0])
        w = Settings().worker
        records = oracle_flag_records(events, load_rules(w.rules_file, w.timezone))
        oflags = {(f.flag_id, f.status) for f in records}
        sflags = {(r[0], r[1]) for r in
                  self.store.q(f"SELECT DISTINCT flag_id, toString(status) FROM {db}.borrower_flags")}
        if oflags != sflags:
            self.diagnosis = self.flag_diagnosis(oflags - sflags, sflags - oflags, records, events)
        dead = int(self.store.q(f"SELECT count() FROM (SELECT DISTINCT source_partition, source_offset "
                                f"FROM {db}.dead_letters)")[0][0])
        return {
            "events": {"oracle": len(ids), "stored": len(stored_ids), "lost": ev_lost, "doubled": ev_doubled,
                       "unexpected": ev_extra},
            "rates": cells,
            "flags": {"oracle": len(oflags), "stored": len(sflags), "lost": len(oflags - sflags),
                      "doubled": len(sflags - oflags)},
            "dead_letters": {"oracle": malformed, "stored": dead, "lost": max(0, malformed - dead),
                             "doubled": max(0, dead - malformed)},
        }

    def flag_diagnosis(self, lost: set[tuple[str, str]], doubled: set[tuple[str, str]],
                       records: list[Any], events: list[CallOutcome], limit: int = 5) -> list[str]:
        """Where each missing or extra flag transition went astray: the flag topic (worker side)
        or the table (sink side), with its borrower's calls (partition, offset, time)."""
        db = self.pipe.db
        by_id = {(f.flag_id, f.status): f for f in records}
        on_topic = self.flags_on_topic({fid for fid, _ in lost | doubled})
        calls: dict[str, list[CallOutcome]] = {}
        for e in events:
            calls.setdefault(e.borrower_id, []).append(e)
        out = []
        for what, items in (("lost", sorted(lost)[:limit]), ("extra", sorted(doubled)[:limit])):
            for fid, status in items:
                f = by_id.get((fid, status))
                stored = self.store.q(f"SELECT toString(status), borrower_id FROM {db}.borrower_flags "
                                      f"WHERE flag_id = '{fid}'")
                out.append(f"{what} flag {fid[:12]} {status}: rule {f.rule_id if f else '?'}, borrower "
                           f"{f.borrower_id if f else '?'}; on the flag topic as {sorted(on_topic.get(fid, []))}; "
                           f"stored as {sorted(set(stored))}")
                if f:
                    evidence = set(f.evidence_ids)
                    for e in sorted(calls.get(f.borrower_id, []), key=lambda e: (e.occurred_at_ms, e.event_id)):
                        p, off = self.tap.where.get(e.event_id, (-1, -1))
                        out.append(f"  {'*' if e.event_id in evidence else ' '} {e.event_id} {e.outcome} "
                                   f"at {datetime.fromtimestamp(e.occurred_at_ms / 1000, UTC):%H:%M:%S.%f} "
                                   f"partition {p} offset {off}")
        return out

    def flags_on_topic(self, flag_ids: set[str]) -> dict[str, list[str]]:
        """flag id -> the statuses of its records on the flag topic (read from the start)."""
        from kafka import KafkaConsumer, TopicPartition

        name = self.kafka.topic(BORROWER_FLAGS)
        c = KafkaConsumer(**self.kafka.kafka_python_kwargs(), enable_auto_commit=False)
        try:
            tps = [TopicPartition(name, p) for p in sorted(c.partitions_for_topic(name) or set())]
            c.assign(tps)
            c.seek_to_beginning(*tps)
            ends = c.end_offsets(tps)
            found: dict[str, list[str]] = {}
            deadline = time.time() + 60
            while time.time() < deadline and any(c.position(tp) < ends[tp] for tp in tps):
                for recs in c.poll(timeout_ms=1000, max_records=5000).values():
                    for r in recs:
                        rec = json.loads(r.value)
                        if rec.get("flag_id") in flag_ids:
                            found.setdefault(rec["flag_id"], []).append(str(rec.get("status")))
            return found
        finally:
            c.close()

    def drain(self, stopped: float) -> dict[str, Any]:
        deadline = stopped + self.cfg.drain_timeout_s
        state: dict[str, Any] = {}
        while time.time() < deadline:
            self.tick()
            if self.tap.synced_at > stopped + 2:
                try:
                    state = self.final_state()
                except Exception as e:
                    self.say(f"drain: store not readable ({str(e).splitlines()[0][:100]})")
                    self.store.client.disconnect()
                    time.sleep(5)
                    continue
                # the 60 s cells become final once the grace period has passed the last of them
                closed = not self.cfg.wait_final or state["rates"]["open_60s"] == 0
                if closed and _lost(state) == 0 and _doubled(state) == 0:
                    break
            time.sleep(5)
        self.say(f"drained in {time.time() - stopped:.0f} s")
        return state

    def report(self, final: dict[str, Any], stopped: float) -> dict[str, Any]:
        cfg = self.cfg
        lines = self.pipe.log_lines()
        lines_now = {k: v - self._last_lines.get(k, 0) for k, v in lines.items()}
        per_minute = [*self.lines_per_minute[1:], lines_now]
        interim_bad = [c for c in self.checks if c.get("wrong")]
        lost, doubled = _lost(final), _doubled(final)
        problems = []
        if not final:
            problems.append("the store could not be read at the end")
        if lost or doubled:
            problems.append(f"lost {lost}, doubled {doubled}")
        if final and final["events"]["unexpected"]:
            problems.append(f"{final['events']['unexpected']} stored events the oracle does not have")
        if interim_bad:
            problems.append(f"{len(interim_bad)} interim checks found wrong final cells")
        if any(f["recovery_s"] is None for f in self.faults):
            problems.append("a fault did not recover within the timeout")
        if self.unexpected_exits:
            problems.append(f"{len(self.unexpected_exits)} processes exited by themselves")
        if self.tap.unknown:
            problems.append(f"{self.tap.unknown} messages in call-outcomes the simulator did not send")
        minutes = max(1e-9, (time.time() - self.t0) / 60)
        return {
            "started": self.stamp, "run": self.tag, "verdict": "PASS" if not problems else "FAIL",
            "problems": problems,
            "config": {"minutes": cfg.minutes, "rate_per_s": cfg.rate, "seed": cfg.seed, "grace_s": cfg.grace_s,
                       "idle_close_s": cfg.idle_close_s, "session_timeout_s": cfg.session_timeout_s,
                       "kafka": cfg.kafka, "clickhouse": cfg.clickhouse.split("@")[-1]},
            "commit": _git("rev-parse", "--short", "HEAD"),
            "traffic": {"handed_to_producer": self.traffic.handed, "in_topic": self.tap.messages,
                        "distinct_valid_events": len(self.tap.ids), "malformed": self.tap.malformed,
                        "produce_errors": len(self.traffic.errors),
                        "first_produce_errors": [e for _, e in self.traffic.errors[:3]]},
            "faults": self.faults,
            "interim_checks": self.checks,
            "final": final, "lost": lost, "doubled": doubled, "diagnosis": self.diagnosis,
            "worker_events": self.pipe.events_by_result(),
            "drain_s": round(time.time() - stopped, 1),
            "peak_rss_mb": {**self.pipe.peak_rss(), **{f"{k} (server)": v for k, v in self.service_rss.items()}},
            "restarts": {k: len(v) - 1 for k, v in self.pipe.history.items()},
            "log_lines": lines,
            "log_lines_per_min": {k: round(v / minutes, 1) for k, v in lines.items()},
            "log_lines_max_minute": {k: max((m.get(k, 0) for m in per_minute), default=0) for k in lines},
            "log_lines_by_minute": per_minute,
            "unexpected_exits": self.unexpected_exits,
            "duration_s": round(time.time() - self.t0, 1),
        }

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            admin = admin_client(self.kafka)
            try:
                mine = [t for t in admin.list_topics()
                        if t.startswith(self.pipe.prefix) or t.startswith(self.pipe.app_id)]
                if mine:
                    admin.delete_topics(mine)
            finally:
                admin.close()
        with contextlib.suppress(Exception):
            self.store.q(f"DROP DATABASE IF EXISTS {self.pipe.db}")
        shutil.rmtree(self.pipe.data, ignore_errors=True)


def _lost(s: dict[str, Any]) -> int:
    return sum(int(s[k]["lost"]) for k in ("events", "rates", "flags", "dead_letters")) if s else -1


def _doubled(s: dict[str, Any]) -> int:
    return sum(int(s[k]["doubled"]) for k in ("events", "rates", "flags", "dead_letters")) if s else -1


def _git(*args: str) -> str:
    with contextlib.suppress(Exception):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    return ""


# ---- output ------------------------------------------------------------------------------------

def render(r: dict[str, Any]) -> str:
    out = [f"soak {r['started']} ({r['duration_s'] / 60:.1f} min, {r['config']['rate_per_s']:.0f} calls/s, "
           f"seed {r['config']['seed']}, commit {r['commit']}): {r['verdict']}"]
    t = r["traffic"]
    out.append(f"traffic: {t['in_topic']} messages in call-outcomes, {t['distinct_valid_events']} distinct valid "
               f"events, {t['malformed']} malformed; {t['produce_errors']} produce errors (retried)")
    out.append("")
    out.append(f"{'fault':<14}{'target':<12}{'at':>9}{'down':>9}{'recovery':>11}")
    for f in r["faults"]:
        rec = "none" if f["recovery_s"] is None else f"{f['recovery_s']:.1f} s"
        out.append(f"{f['kind']:<14}{f.get('target', ''):<12}{f['at_s']:>7.0f} s{f.get('down_s', 0):>7.1f} s{rec:>11}")
    out.append("")
    out.append(f"{'checked':<14}{'oracle':>10}{'stored':>10}{'lost':>8}{'doubled':>9}")
    fin = r["final"]
    if fin:
        for k in ("events", "flags", "dead_letters"):
            out.append(f"{k:<14}{fin[k]['oracle']:>10}{fin[k]['stored']:>10}{fin[k]['lost']:>8}{fin[k]['doubled']:>9}")
        c = fin["rates"]
        out.append(f"{'rate cells':<14}{c['cells']:>10}{c['cells'] - c['missing']:>10}{c['lost']:>8}{c['doubled']:>9}"
                   f"   ({c['final']} final, {c['wrong']} wrong; lost/doubled in attempts)")
    ic = [c for c in r["interim_checks"] if "cells" in c]
    out.append(f"interim checks: {len(ic)}, {sum(c['cells'] for c in ic)} final cells compared, "
               f"{sum(c['wrong'] for c in ic)} wrong")
    out.append(f"lost {r['lost']}, doubled {r['doubled']}")
    out.append("worker events by result (last scrape of each process): "
               + ", ".join(f"{k} {v}" for k, v in sorted(r.get("worker_events", {}).items())))
    out.append("")
    out.append(f"{'process':<20}{'peak RSS':>10}{'restarts':>10}{'log lines':>11}{'per min':>9}{'max min':>9}")
    for name, rss in r["peak_rss_mb"].items():
        lines = r["log_lines"].get(name)
        if lines is None:
            out.append(f"{name:<20}{rss:>7.0f} MB")
            continue
        out.append(f"{name:<20}{rss:>7.0f} MB{r['restarts'].get(name, 0):>10}{lines:>11}"
                   f"{r['log_lines_per_min'][name]:>9}{r['log_lines_max_minute'][name]:>9}")
    if r.get("diagnosis"):
        out.append("")
        out += r["diagnosis"]
    if r["problems"]:
        out.append("")
        out += [f"problem: {p}" for p in r["problems"]]
    return "\n".join(out)


def write(r: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    j = out_dir / f"soak-{r['started']}.json"
    m = out_dir / f"soak-{r['started']}.md"
    j.write_text(json.dumps(r, indent=1, default=str) + "\n")
    m.write_text(f"# Soak {r['started']}: {r['verdict']}\n\n`python -m bench.soak --minutes {r['config']['minutes']} "
                 f"--rate {r['config']['rate_per_s']:.0f} --seed {r['config']['seed']}`\n\n```\n{render(r)}\n```\n")
    return j, m


def quiet_clients() -> None:
    """The driver's own Kafka clients (producer, tap, offsets) would write a line per retry while
    the broker is down; the processes under test keep their own logging."""
    for name in ("aiokafka", "kafka", "clickhouse_driver"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0, help="minutes of traffic (default 30)")
    ap.add_argument("--rate", type=float, default=300.0, help="live calls per second (default 300)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the traffic and of the faults (default 1)")
    ap.add_argument("--kafka", default=default_kafka(), help="bootstrap servers (default %(default)s)")
    ap.add_argument("--clickhouse", default=default_clickhouse(), help="server URL without database")
    ap.add_argument("--gap", type=float, nargs=2, default=(20.0, 60.0), metavar=("MIN", "MAX"),
                    help="seconds between a fault's recovery and the next fault (default 20 60)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="report folder (default bench/results)")
    ap.add_argument("--keep", action="store_true", help="keep the run's topics and database")
    a = ap.parse_args(argv)
    quiet_clients()
    cfg = SoakConfig(minutes=a.minutes, rate=a.rate, seed=a.seed, kafka=a.kafka, clickhouse=a.clickhouse,
                     gap_s=tuple(a.gap), out=a.out, keep=a.keep)
    r = Soak(cfg).run()
    print(render(r))
    j, m = write(r, cfg.out)
    print(f"wrote {j} and {m.name}")
    return 0 if r["verdict"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
