"""deploy/compose/cluster.yml, the cluster profile laid over docker-compose.yml, validated without a
Docker engine (docker-compose 1.29 merges and checks both files): 3 KRaft brokers, ClickHouse 2
shards x 2 replicas with Keeper, and the pipeline pointed at all of it."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from hangwatch.platform.settings import ROOT
from tests.deploy.test_compose import COMPOSE, ENV, _compose_bin

CLUSTER = ROOT / "deploy" / "compose" / "cluster.yml"
CLUSTER_XML = ROOT / "deploy" / "compose" / "clickhouse" / "cluster.xml"


def merged() -> dict[str, Any]:
    empty = Path(tempfile.gettempdir()) / "hangwatch-test-empty.env"
    empty.write_text("")
    clean = {k: v for k, v in os.environ.items() if k not in ENV}
    r = subprocess.run([_compose_bin(), "-f", str(COMPOSE), "-f", str(CLUSTER), "--env-file", str(empty), "config"],
                       cwd=ROOT, env={**clean, **ENV}, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)["services"]


def test_cluster_profile() -> None:
    s = merged()
    brokers = {n: svc["environment"] for n, svc in s.items() if n.startswith("kafka")}
    assert sorted(str(e["KAFKA_NODE_ID"]) for e in brokers.values()) == ["1", "2", "3"]
    voters = {e["KAFKA_CONTROLLER_QUORUM_VOTERS"] for e in brokers.values()}
    assert voters == {"1@kafka:9093,2@kafka2:9093,3@kafka3:9093"}
    assert len({e["CLUSTER_ID"] for e in brokers.values()}) == 1
    for e in brokers.values():
        assert (str(e["KAFKA_DEFAULT_REPLICATION_FACTOR"]), str(e["KAFKA_MIN_INSYNC_REPLICAS"])) == ("3", "2")
        assert str(e["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "3"

    servers = {n: svc for n, svc in s.items() if n.startswith("clickhouse")}
    macros = {(svc["environment"]["CH_SHARD"], svc["environment"]["CH_REPLICA"]) for svc in servers.values()}
    assert macros == {("1", "clickhouse"), ("1", "clickhouse-s1r2"), ("2", "clickhouse-s2r1"), ("2", "clickhouse-s2r2")}
    for name, svc in servers.items():
        assert any(v.endswith("config.d/cluster.xml:ro") for v in svc["volumes"]), name
    # the cluster definition names exactly these servers, shard by shard
    xml = CLUSTER_XML.read_text(encoding="utf-8")
    shards = [re.findall(r"<host>([^<]+)</host>", sh) for sh in re.findall(r"<shard>(.*?)</shard>", xml, re.S)]
    assert shards == [["clickhouse", "clickhouse-s1r2"], ["clickhouse-s2r1", "clickhouse-s2r2"]]
    assert "<host>keeper</host>" in xml and "keeper" in s

    for name in ("migrate", "worker", "sink", "simulator"):
        env = s[name]["environment"]
        assert env["HANGWATCH_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092,kafka2:9092,kafka3:9092", name
        assert (env["HANGWATCH_KAFKA__REPLICATION_FACTOR"], env["HANGWATCH_KAFKA__MIN_INSYNC_REPLICAS"]) == ("3", "2")
