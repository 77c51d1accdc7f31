"""Helpers for tests against the real broker: isolated topic sets, worker processes,
producing and reading topics (waiting on them: testkit.waits.wait_for)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from hangwatch.platform.kafka_admin import admin_client, ensure_topics
from hangwatch.platform.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


class KafkaEnv:
    """A private copy of every registry topic (unique prefix) and a unique app id."""

    def __init__(self, alerts: dict[str, Any] | None = None, **worker_overrides: Any) -> None:
        tag = uuid.uuid4().hex[:8]
        self.prefix = f"t{tag}."
        self.app_id = f"hw-test-{tag}"
        self.worker = {"app_id": self.app_id, "grace_s": 600, "idle_close_s": 2.0,
                       "broker_session_timeout_s": 6.0, "broker_heartbeat_interval_s": 0.5, **worker_overrides}
        self.alerts = alerts or {}
        self.settings = Settings(kafka={"topic_prefix": self.prefix}, worker=self.worker, alerts=self.alerts)
        ensure_topics(self.settings.kafka)

    def env(self) -> dict[str, str]:
        e = dict(os.environ)
        e["HANGWATCH_KAFKA__TOPIC_PREFIX"] = self.prefix
        for k, v in self.worker.items():
            e[f"HANGWATCH_WORKER__{k.upper()}"] = str(v)
        for k, v in self.alerts.items():
            e[f"HANGWATCH_ALERTS__{k.upper()}"] = str(v)
        e["HANGWATCH_WORKER__DATA_DIR"] = str(ROOT / ".local" / "faust-test" / self.app_id)
        return e

    def topic(self, name: str) -> str:
        return self.prefix + name

    def cleanup(self) -> None:
        admin = admin_client(self.settings.kafka)
        try:
            mine = [t for t in admin.list_topics() if t.startswith(self.prefix) or t.startswith(self.app_id)]
            if mine:
                admin.delete_topics(mine)
        finally:
            admin.close()
            shutil.rmtree(ROOT / ".local" / "faust-test" / self.app_id, ignore_errors=True)


class WorkerDied(RuntimeError):
    """A worker process exited while a test waited on it (not a timeout)."""


class WorkerProcess:
    def __init__(self, env: KafkaEnv, name: str = "w1", host: str | None = None, wrap: Sequence[str] = ()) -> None:
        """`host`: whose data dir to use (default: its own); a worker restarted on the same
        host finds the local state its predecessor left. `wrap`: a command prefix the worker
        runs under, e.g. `ip netns exec NS` (a host of the local cluster, tests/cluster)."""
        self.log_path = ROOT / ".local" / "test-logs" / f"{env.app_id}-{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop)
        # info: assignments, restores and seeks in the log (a few lines per rebalance), the
        # evidence when a test fails
        # Each worker its own data dir (RocksDB borrower store); a restarted worker of the same
        # name finds its local state again, as on a real host.
        data_dir = ROOT / ".local" / "faust-test" / env.app_id / (host or name)
        self.proc = subprocess.Popen([*wrap, sys.executable, "-m", "hangwatch", "worker", "--faust-log-level", "info",
                                      "--data-dir", str(data_dir)],
                                     env=env.env(), cwd=ROOT,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no final commit."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()

    def assert_alive(self) -> None:
        if self.proc.poll() is not None:
            raise WorkerDied(f"worker exited with {self.proc.returncode}; log:\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


def produce(env: KafkaEnv, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    p = KafkaProducer(bootstrap_servers=env.settings.kafka.bootstrap_servers, linger_ms=5, acks="all")
    n = 0
    for key, value in records:
        p.send(env.topic(topic), key=key, value=value)
        n += 1
    p.flush()
    p.close()
    return n


def read_topic(env: KafkaEnv, topic: str, timeout_s: float = 2.0, absolute: bool = False) -> list[Any]:
    """Every record currently in the topic (all partitions), as consumer records. `topic` is a
    registry name, or with absolute=True a full name (e.g. a Faust changelog)."""
    name = topic if absolute else env.topic(topic)
    c = KafkaConsumer(bootstrap_servers=env.settings.kafka.bootstrap_servers, enable_auto_commit=False,
                      auto_offset_reset="earliest", consumer_timeout_ms=int(timeout_s * 1000))
    parts = c.partitions_for_topic(name) or set()
    if not parts:  # not created yet (e.g. a changelog before its worker started)
        c.close()
        return []
    tps = [TopicPartition(name, p) for p in parts]
    c.assign(tps)
    end = c.end_offsets(tps)
    c.seek_to_beginning(*tps)
    out = []
    if any(end.values()):
        for rec in c:
            out.append(rec)
            if all(c.position(tp) >= end[tp] for tp in tps):
                break
    c.close()
    return out


def read_json(env: KafkaEnv, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in read_topic(env, topic)]


def latest_rates(env: KafkaEnv) -> dict[str, dict[str, Any]]:
    """Highest version per key of hangup-rates."""
    best: dict[str, dict[str, Any]] = {}
    for r in read_json(env, "hangup-rates"):
        cur = best.get(r["key"])
        if cur is None or r["version"] > cur["version"]:
            best[r["key"]] = r
    return best
