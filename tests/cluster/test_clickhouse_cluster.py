"""What the ClickHouse cluster gives the migrations: distributed DDL (ON CLUSTER), the macros
{shard} and {replica} in ReplicatedMergeTree, replication between the two replicas of a shard
(also to a replica killed and restarted: it catches up), and a Distributed table over both
shards."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator

import pytest

from hangwatch.sinks.backends.native import NativeBackend
from hangwatch.sinks.backends.url import parse_url
from testkit.waits import wait_for
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.cluster
SERVERS = ("ch-s1r1", "ch-s1r2", "ch-s2r1", "ch-s2r2")


@pytest.fixture
def servers(cluster: Cluster) -> Iterator[dict[str, NativeBackend]]:
    backends = {h: NativeBackend(parse_url(cluster.ch_url(h))) for h in SERVERS}
    yield backends
    for b in backends.values():
        b.close()


def count(b: NativeBackend, sql: str) -> int:
    return int(b.query(sql).scalar())


def count_is(b: NativeBackend, sql: str, n: int) -> bool:
    return count(b, sql) == n


def test_replicated_and_distributed_tables(cluster: Cluster, servers: dict[str, NativeBackend]) -> None:
    db = f"cl_{uuid.uuid4().hex[:8]}"
    on = f"ON CLUSTER {cluster.ch_cluster}"
    s1r1 = servers["ch-s1r1"]
    s1r1.execute(f"CREATE DATABASE {db} {on}")
    try:
        s1r1.execute(f"CREATE TABLE {db}.rep {on} (id UInt32, s String) ENGINE = ReplicatedMergeTree("
                     f"'/clickhouse/tables/{{shard}}/{db}/rep', '{{replica}}') ORDER BY id")
        s1r1.execute(f"CREATE TABLE {db}.dist {on} AS {db}.rep "
                     f"ENGINE = Distributed({cluster.ch_cluster}, {db}, rep, id)")
        macros = {h: dict(b.query("SELECT macro, substitution FROM system.macros").rows) for h, b in servers.items()}
        assert macros == {h: {"cluster": cluster.ch_cluster, "shard": h[4], "replica": h} for h in SERVERS}

        # a row written on one replica is read on the other
        s1r1.insert(f"{db}.rep", ["id", "s"], [[1001, "on s1r1"]])
        servers["ch-s2r2"].insert(f"{db}.rep", ["id", "s"], [[2001, "on s2r2"]])
        wait_for(lambda: count(servers["ch-s1r2"], f"SELECT count() FROM {db}.rep WHERE id = 1001") == 1, 60,
                 "s1r1's row on s1r2")
        wait_for(lambda: count(servers["ch-s2r1"], f"SELECT count() FROM {db}.rep WHERE id = 2001") == 1, 60,
                 "s2r2's row on s2r1")

        # through the Distributed table: rows spread over the shards by id, every server reads all
        servers["ch-s2r1"].insert(f"{db}.dist", ["id", "s"], [[i, "dist"] for i in range(100)])
        for h in SERVERS:
            wait_for(functools.partial(count_is, servers[h], f"SELECT count() FROM {db}.dist", 102), 60,
                     f"102 rows through {h}")
        for h, b in servers.items():  # id % 2 == 0 on shard 1, odd on shard 2; each replica holds its shard
            assert count(b, f"SELECT count() FROM {db}.rep") == 51, h

        # a replica killed while its shard is written catches up when it is back
        cluster.kill("ch-s1r2")
        try:
            s1r1.insert(f"{db}.rep", ["id", "s"], [[i, "while s1r2 was down"] for i in range(10_000, 10_500)])
        finally:
            cluster.restart("ch-s1r2")
        back = NativeBackend(parse_url(cluster.ch_url("ch-s1r2")))
        try:
            wait_for(lambda: count(back, f"SELECT count() FROM {db}.rep") == 551, 120, "s1r2 caught up")
        finally:
            back.close()
    finally:
        s1r1.execute(f"DROP DATABASE IF EXISTS {db} {on}")
