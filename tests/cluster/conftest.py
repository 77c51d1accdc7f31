"""Tests on the local cluster (deploy/local/cluster.sh): 3 Kafka brokers, ZooKeeper, ClickHouse
2 shards x 2 replicas and empty worker/sink hosts, each in its own network namespace.

They run only when asked: `make cluster-test` (starts the cluster, runs this folder with
HANGWATCH_CLUSTER_TESTS=1, stops it). Elsewhere they are skipped, so a cluster someone else
left running is never a target of the normal suite. Inside, every test's processes (workers,
the sink, admin clients) see the cluster through HANGWATCH_KAFKA__* variables."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kafka.admin import KafkaAdminClient
from kafka.errors import (
    CoordinatorNotAvailableError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    NotCoordinatorError,
)

from hangwatch.platform.settings import ROOT

CLUSTER_SH = ROOT / "deploy" / "local" / "cluster.sh"
# A killed broker stays in the metadata until the controller fences it (broker.session.timeout.ms, 9 s).
ADMIN_RETRY_S = 30.0
T = TypeVar("T")


def facts_path() -> Path:
    """cluster.json, written by `cluster.sh start` into its state folder."""
    state = Path(os.environ.get("HANGWATCH_LOCAL_STATE") or ROOT / ".local")
    return state / "cluster" / "cluster.json"


class Cluster:
    """The running local cluster: its hosts, and the faults cluster.sh injects."""

    def __init__(self, facts: dict[str, Any]) -> None:
        self.facts = facts
        self.hosts = {h["name"]: h for h in facts["hosts"]}
        self.bootstrap: str = facts["kafka_bootstrap"]
        self.clickhouse_url: str = facts["clickhouse_url"]
        self.ch_cluster: str = facts["clickhouse_cluster"]

    def sh(self, *args: str) -> str:
        r = subprocess.run([str(CLUSTER_SH), *args], capture_output=True, text=True, timeout=180, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"cluster.sh {' '.join(args)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
        return r.stdout

    def netns(self, host: str) -> list[str]:
        """The command prefix that runs a process on `host`."""
        return ["ip", "netns", "exec", self.hosts[host]["namespace"]]

    def ch_url(self, host: str) -> str:
        return f"clickhouse://default@{self.hosts[host]['ip']}:{self.hosts[host]['port']}"

    def kill(self, host: str) -> None:
        """kill -9 the host's service."""
        self.sh("kill", host)

    def restart(self, host: str) -> None:
        """Start the host's service again (returns once it listens and every broker is registered)."""
        self.sh("restart", host)

    def admin(self) -> KafkaAdminClient:
        return KafkaAdminClient(bootstrap_servers=self.bootstrap.split(","), client_id="cluster-tests")

    def _admin_call(self, call: Callable[[KafkaAdminClient], T]) -> T:
        """`call` with a fresh admin client; again while a broker that just died still answers
        for a partition or a group (kafka-python's admin gives up on it at once), or while a
        group's coordinator moves off it."""
        deadline = time.monotonic() + ADMIN_RETRY_S
        while True:
            admin = self.admin()
            try:
                return call(admin)
            except (KafkaConnectionError, NodeNotReadyError, KafkaTimeoutError, CoordinatorNotAvailableError,
                    NotCoordinatorError):
                if time.monotonic() > deadline:
                    raise
            finally:
                admin.close()
            time.sleep(0.5)

    def partitions(self, topic: str) -> dict[int, dict[str, Any]]:
        """partition -> {"leader": broker id, "replicas": [...], "isr": [...]}. A topic created a
        moment ago may not be in every broker's metadata yet: asked again until it is (or
        ADMIN_RETRY_S passed; then empty)."""
        deadline = time.monotonic() + ADMIN_RETRY_S
        while True:
            (d,) = self._admin_call(lambda admin: admin.describe_topics([topic]))
            if d["partitions"] or time.monotonic() > deadline:
                return {p["partition_index"]: {"leader": p["leader_id"], "replicas": sorted(p["replica_nodes"]),
                                               "isr": sorted(p["isr_nodes"])} for p in d["partitions"]}
            time.sleep(0.5)

    def group_members(self, group: str) -> int:
        """Members of a consumer group once it is stable (0 while it rebalances)."""
        g = self._admin_call(lambda admin: admin.describe_groups([group])).get(group, {})
        return len(g.get("members", [])) if g.get("group_state") == "Stable" else 0

    def broker_host(self, broker_id: int) -> str:
        """The host of a broker (node.id N runs on kafkaN)."""
        return f"kafka{broker_id}"


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    if os.environ.get("HANGWATCH_CLUSTER_TESTS") != "1":
        pytest.skip("cluster tests run with `make cluster-test` (HANGWATCH_CLUSTER_TESTS=1 on a started "
                    "deploy/local/cluster.sh)")
    path = facts_path()
    if not path.is_file():
        pytest.fail(f"no local cluster ({path} is missing): start it with deploy/local/cluster.sh start")
    return Cluster(json.loads(path.read_text(encoding="utf-8")))


@pytest.fixture(autouse=True)
def on_cluster(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """Every process a test starts (and its Settings) talks to the cluster, with the cluster's
    durability settings: replication factor 3, min.insync.replicas 2."""
    monkeypatch.setenv("HANGWATCH_KAFKA__BOOTSTRAP_SERVERS", cluster.bootstrap)
    monkeypatch.setenv("HANGWATCH_KAFKA__REPLICATION_FACTOR", "3")
    monkeypatch.setenv("HANGWATCH_KAFKA__MIN_INSYNC_REPLICAS", "2")
    yield cluster
