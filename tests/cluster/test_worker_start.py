"""A worker (re)started within seconds of a broker's death, before the controller fences that
broker (broker.session.timeout.ms, 9 s), while its metadata still lists it, joins its group.

It used to exit (70): the topic check (kafka_admin.ensure_topics) and the changelogs'
creation sent to the dead broker once and gave up, and Faust declared its leader topic through
the first broker of the metadata only. Now both retry with a fresh admin client until the admin
timeout, and Faust declares nothing (hangwatch creates every topic)."""

from __future__ import annotations

import pytest

from testkit.waits import wait_for
from tests.cluster.conftest import Cluster
from tests.integration.harness import KafkaEnv, WorkerProcess

pytestmark = pytest.mark.cluster


def test_a_worker_starts_right_after_a_broker_died(cluster: Cluster) -> None:
    env = KafkaEnv()
    try:
        cluster.kill("kafka1")
        w = WorkerProcess(env, "worker1", wrap=cluster.netns("worker1"))
        try:
            wait_for(lambda: cluster.group_members(env.app_id) == 1, 90, "the worker in its group", [w])
        finally:
            w.stop()
    finally:
        cluster.restart("kafka1")
        env.cleanup()
