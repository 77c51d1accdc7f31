"""Isolated run environments and process handling for the benchmarks.

Every run gets its own topic prefix, worker app id, sink group and ClickHouse database (or
chdb folder), so runs never see each other's data and can be cleaned up afterwards. Worker,
sink and peers run as subprocesses (`python -m hangwatch worker|sink`, as deployed); their peak
RSS is read from /proc/<pid>/status (VmHWM) while they run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import types
import typing
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from hangwatch.platform.kafka_admin import admin_client, ensure_topics
from hangwatch.platform.settings import KafkaSettings, Settings

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local" / "bench"
CH_URL = os.environ.get("HANGWATCH_BENCH_CLICKHOUSE_URL", "clickhouse://default@127.0.0.1:9000")
BOOTSTRAP = os.environ.get("HANGWATCH_BENCH_KAFKA", "127.0.0.1:9092")
ENV_PREFIX = "HANGWATCH_"


@contextlib.contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """os.environ is exactly `env` inside the block (Settings() then loads what a subprocess would)."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _submodel(annotation: Any) -> type[BaseModel] | None:
    for t in (annotation, *typing.get_args(annotation)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _is_mapping(annotation: Any) -> bool:
    return typing.get_origin(annotation) is dict or any(
        typing.get_origin(t) is dict for t in typing.get_args(annotation) if not isinstance(t, types.NoneType))


def setting_names(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    """Every setting as an environment name without HANGWATCH_: LOG_LEVEL, WORKER__BATCH_MAX, ..."""
    out = []
    for name, field in model.model_fields.items():
        sub = _submodel(field.annotation)
        full = f"{prefix}{name.upper()}"
        out += setting_names(sub, full + "__") if sub is not None else [full]
    return out


def _is_setting(name: str) -> bool:
    """NAME (without HANGWATCH_) names one setting: a field of Settings, nested fields joined by
    __; a mapping setting (sink.topics) may be followed by one key."""
    model: type[BaseModel] = Settings
    parts = name.lower().split("__")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        sub = _submodel(field.annotation)
        last = i == len(parts) - 1
        if sub is None:
            return last or (i == len(parts) - 2 and _is_mapping(field.annotation) and bool(parts[-1]))
        if last:
            return False  # a whole section, not one setting
        model = sub
    return False


def settings_env(assignments: Iterable[str]) -> dict[str, str]:
    """`--set NAME=VALUE` items -> {HANGWATCH_NAME: VALUE} for the runs' environment. NAME names a
    field of hangwatch.platform.settings.Settings as its environment variable does, without the
    HANGWATCH_ prefix (accepted too), case-insensitive: LOG_LEVEL, WORKER__GC_YOUNG_THRESHOLD.
    ValueError (one line) for a name that is not a setting or a value the setting refuses: a
    misspelt name would otherwise be ignored without a word."""
    env: dict[str, str] = {}
    for item in assignments:
        raw, sep, value = item.partition("=")
        name = raw.strip().upper().removeprefix(ENV_PREFIX)
        if not sep or not name:
            raise ValueError(f"--set {item!r}: expected NAME=VALUE")
        if not _is_setting(name):
            known = setting_names()
            sections = [n for n, f in Settings.model_fields.items() if _submodel(f.annotation) is not None]
            guesses = [k for k in known if k.endswith("__" + name)] or get_close_matches(name, known, n=3)
            hint = f" (did you mean {' or '.join(guesses)}?)" if guesses else ""
            if name.lower() in sections:
                hint = f" but a section of them ({name}__<FIELD>)"
            raise ValueError(f"--set {raw}: not a setting{hint}; names are Settings fields as in HANGWATCH_<NAME>, "
                             f"nested ones joined by __ (SECTION__FIELD, sections {', '.join(sections).upper()}), "
                             f"e.g. WORKER__GC_YOUNG_THRESHOLD or LOG_LEVEL")
        env[ENV_PREFIX + name] = value
    try:
        with environ(env):
            Settings()
    except ValidationError as e:
        err = e.errors()[0]
        where = "__".join(str(x) for x in err["loc"]).upper()
        raise ValueError(f"--set {where}: {err['msg']} (got {err.get('input')!r})") from None
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunEnv:
    """One run's topics (own prefix), worker app id, sink group and store."""

    def __init__(self, label: str, *, backend: str = "native", grace_s: int = 60, idle_close_s: float = 1.0,
                 worker_env: dict[str, str] | None = None) -> None:
        tag = uuid.uuid4().hex[:8]
        self.label = label
        self.tag = tag
        self.prefix = f"bench{tag}."
        self.app_id = f"hw-bench-{tag}"
        self.sink_group = f"hw-bench-sink-{tag}"
        self.db = f"bench_{tag}"
        self.backend = backend
        self.chdb_path = LOCAL / "chdb" / tag
        self.grace_s = grace_s
        self.idle_close_s = idle_close_s
        self.worker_env = worker_env or {}
        self.kafka = KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=self.prefix)
        self.logs = LOCAL / "logs" / tag
        self.logs.mkdir(parents=True, exist_ok=True)
        ensure_topics(self.kafka)

    def topic(self, name: str) -> str:
        return self.prefix + name

    @property
    def ch_url(self) -> str:
        return f"{CH_URL.rstrip('/')}/{self.db}"

    def env(self) -> dict[str, str]:
        e = {k: v for k, v in os.environ.items() if not k.startswith("HANGWATCH_")}
        e.update({
            "PYTHONPATH": str(ROOT),
            "HANGWATCH_KAFKA__BOOTSTRAP_SERVERS": BOOTSTRAP,
            "HANGWATCH_KAFKA__TOPIC_PREFIX": self.prefix,
            "HANGWATCH_WORKER__APP_ID": self.app_id,
            "HANGWATCH_WORKER__GRACE_S": str(self.grace_s),
            "HANGWATCH_WORKER__IDLE_CLOSE_S": str(self.idle_close_s),
            "HANGWATCH_WORKER__DATA_DIR": str(LOCAL / "faust" / self.app_id),
            "HANGWATCH_WORKER__BROKER_SESSION_TIMEOUT_S": "10",
            "HANGWATCH_WORKER__BROKER_HEARTBEAT_INTERVAL_S": "1",
            "HANGWATCH_SINK__GROUP_ID": self.sink_group,
            "HANGWATCH_SINK__LOG_INTERVAL_S": "0",
            "HANGWATCH_LOG_LEVEL": "WARNING",
        })
        if self.backend == "native":
            e["HANGWATCH_CLICKHOUSE__URL"] = self.ch_url
        else:
            e["HANGWATCH_CLICKHOUSE__EMBEDDED_PATH"] = str(self.chdb_path)
            e["HANGWATCH_CLICKHOUSE__DATABASE"] = self.db
        e.update(self.worker_env)
        return e

    def worker_env_for(self, name: str) -> dict[str, str]:
        """env() with the worker's own data dir (two workers must not share RocksDB files)."""
        return {**self.env(), "HANGWATCH_WORKER__DATA_DIR": str(LOCAL / "faust" / self.app_id / name)}

    def settings(self) -> Settings:
        """The same settings the subprocesses load from env()."""
        with environ(self.env()):
            return Settings()

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            delete_run_topics(self.kafka, (self.prefix, self.app_id), [self.app_id, self.sink_group])
        if self.backend == "native":
            with contextlib.suppress(Exception):
                from clickhouse_driver import Client
                Client.from_url(CH_URL).execute(f"DROP DATABASE IF EXISTS {self.db}")
        shutil.rmtree(self.chdb_path, ignore_errors=True)
        shutil.rmtree(LOCAL / "faust" / self.app_id, ignore_errors=True)


def delete_run_topics(kafka: KafkaSettings, prefixes: tuple[str, ...], groups: list[str]) -> None:
    """Delete a run's topics (names starting with one of `prefixes`: its topic prefix, its
    worker app id for the changelogs) and its consumer groups."""
    admin = admin_client(kafka)
    try:
        mine = [t for t in admin.list_topics() if t.startswith(prefixes)]
        if mine:
            admin.delete_topics(mine)
        with contextlib.suppress(Exception):
            admin.delete_groups(groups)
    finally:
        admin.close()


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident set (VmHWM) of a live process, MB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else None


def rss_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else None


def cpu_times(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


SERVICE_PIDFILES = {"kafka": LOCAL.parent / "kafka" / "kafka.pid",
                    "clickhouse": LOCAL.parent / "clickhouse" / "clickhouse.pid"}


class MachineCpu:
    """CPU use of the whole machine and of the local Kafka and ClickHouse servers between two
    snapshots: shows whether the variant had cores to spare (/proc/stat, deploy/local pid files)."""

    def __init__(self) -> None:
        self._start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, dict[str, float]]:
        jiffies = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = jiffies[3] + jiffies[4]  # idle + iowait
        services: dict[str, float] = {}
        for name, pidfile in SERVICE_PIDFILES.items():
            with contextlib.suppress(OSError, ValueError):
                t = cpu_seconds(int(pidfile.read_text().strip()))
                if t is not None:
                    services[name] = t
        tick = os.sysconf("SC_CLK_TCK")
        return sum(jiffies) / tick, idle / tick, services

    def since_start(self) -> dict[str, Any]:
        total, idle, services = self._snapshot()
        total0, idle0, services0 = self._start
        span = total - total0
        return {"cores": os.cpu_count(), "busy_pct": round(100 * (1 - (idle - idle0) / span), 1) if span else None,
                "service_cpu_s": {k: round(v - services0[k], 2) for k, v in services.items() if k in services0}}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process."""
    t = cpu_times(pid)
    return None if t is None else t[0] + t[1]


class Proc:
    """A subprocess whose peak RSS and CPU time are sampled until it exits."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        self.peak_rss_mb = 0.0
        self.cpu_s = 0.0
        self.sys_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set() and self.proc.poll() is None:
            self.sample()
            self._stop.wait(0.5)

    def sample(self) -> None:
        hwm = peak_rss_mb(self.proc.pid)
        if hwm is not None:
            self.peak_rss_mb = max(self.peak_rss_mb, hwm)
        cpu = cpu_times(self.proc.pid)
        if cpu is not None:
            self.cpu_s = cpu[0] + cpu[1]
            self.sys_s = cpu[1]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def assert_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.alive():
            self.sample()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._stop.set()
        self._thread.join(2)
        self._log.close()

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def scrape(port: int) -> dict[str, float]:
    """Prometheus text exposition -> {'name{labels}': value} (counters and histograms)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    return parse_metrics(text)


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {'name{labels}': value}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[name] = float(value)
    return out


def metric_sum(metrics: dict[str, float], prefix: str, exclude: tuple[str, ...] = ()) -> float:
    return sum(v for k, v in metrics.items() if k.startswith(prefix) and not any(x in k for x in exclude))


class Offsets:
    """End offsets of topics and the committed offsets of a consumer group (kafka-python)."""

    def __init__(self, kafka: KafkaSettings) -> None:
        from kafka import KafkaConsumer

        self.kafka = kafka
        self.admin = admin_client(kafka)
        self.consumer = KafkaConsumer(**kafka.kafka_python_kwargs(), enable_auto_commit=False)

    def ends(self, topics: list[str]) -> dict[Any, int]:
        from kafka import TopicPartition

        tps = [TopicPartition(t, p) for t in topics for p in (self.consumer.partitions_for_topic(t) or ())]
        return dict(self.consumer.end_offsets(tps)) if tps else {}

    def committed(self, group: str) -> dict[Any, int] | None:
        """The group's committed offsets; None if they cannot be read now (the broker is away,
        or its coordinator moved). A failed admin client is replaced: after a broker restart
        kafka-python's can keep asking a coordinator connection that is gone."""
        try:
            got = self.admin.list_group_offsets({group: None}).get(group, {})
            return {tp: m.offset for tp, m in got.items()}
        except Exception:
            with contextlib.suppress(Exception):
                self.admin.close()
            with contextlib.suppress(Exception):
                self.admin = admin_client(self.kafka)
            return None

    def caught_up(self, group: str, topics: list[str]) -> bool:
        ends = self.ends(topics)
        committed = self.committed(group)
        if committed is None:
            return False
        return all(end == 0 or committed.get(tp, -1) >= end for tp, end in ends.items())

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()
