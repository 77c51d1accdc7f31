"""Every topic the project creates, on 3 brokers, takes the settings' durability: the registry's
topics (`hangwatch topics create`) and the worker's changelogs, 3 replicas, all in sync,
min.insync.replicas 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from hangwatch.schemas.topics import registry
from hangwatch.streams.changelogs import ALL as CHANGELOGS
from hangwatch.streams.changelogs import ensure_changelogs
from tests.cluster.conftest import Cluster
from tests.integration.harness import ROOT, KafkaEnv

pytestmark = pytest.mark.cluster


def test_topics_and_changelogs_have_three_replicas_and_min_isr_two(cluster: Cluster) -> None:
    env = KafkaEnv()  # its topics created as `hangwatch topics create` does (ensure_topics)
    try:
        # the CLI itself, as an operator runs it: idempotent on the topics just created
        r = subprocess.run([sys.executable, "-m", "hangwatch", "topics", "create"], env=env.env(), cwd=ROOT,
                           capture_output=True, text=True, timeout=120, check=False)
        assert r.returncode == 0, r.stderr
        ensure_changelogs(env.settings.kafka, env.app_id)
        names = [env.topic(s.name) for s in registry().values()] + [c.name(env.app_id) for c in CHANGELOGS]
        for name in names:
            parts = cluster.partitions(name)
            assert parts, name
            assert {tuple(p["replicas"]) for p in parts.values()} == {(1, 2, 3)}, (name, parts)
            assert {tuple(p["isr"]) for p in parts.values()} == {(1, 2, 3)}, (name, parts)
        admin = cluster.admin()
        try:
            described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        finally:
            admin.close()
        # kafka-python 3: {"topic": {name: {config: {"value": ...}}}}
        min_isr = {n: c["min.insync.replicas"]["value"] for n, c in described["topic"].items()}
        assert min_isr == dict.fromkeys(names, "2")
    finally:
        env.cleanup()
