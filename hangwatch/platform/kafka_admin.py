"""Create and inspect the project's topics from the registry (kafka-python admin client)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from kafka.admin import KafkaAdminClient, NewPartitions, NewTopic
from kafka.errors import KafkaConnectionError, KafkaTimeoutError, TopicAlreadyExistsError

from hangwatch.platform.settings import KafkaSettings
from hangwatch.schemas.topics import TopicSpec, registry

log = logging.getLogger(__name__)


def admin_client(kafka: KafkaSettings, timeout_s: float = 30.0) -> KafkaAdminClient:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaAdminClient(client_id="hangwatch-admin", **kafka.kafka_python_kwargs())
        except (KafkaConnectionError, KafkaTimeoutError):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"no Kafka broker answers at {kafka.bootstrap_servers}; start one with "
                    "`deploy/local/kafka.sh start` or set HANGWATCH_KAFKA__BOOTSTRAP_SERVERS") from None
            time.sleep(0.5)


def ensure_topics(kafka: KafkaSettings, specs: Iterable[TopicSpec] | None = None,
                  partitions_override: int | None = None) -> list[str]:
    """Create missing topics (idempotent); grow partitions that are below the registry's count.
    Returns the names of the topics created."""
    specs = list(specs if specs is not None else registry().values())
    admin = admin_client(kafka)
    try:
        existing = set(admin.list_topics())
        names = {s.name: kafka.topic(s.name) for s in specs}
        created = create_missing(admin, [NewTopic(names[s.name], partitions_override or s.partitions,
                                                  kafka.replication_factor, topic_configs=s.config())
                                         for s in specs], existing)
        if existing:
            described = {d.get("name", d.get("topic")): len(d["partitions"]) for d in admin.describe_topics(
                [n for n in names.values() if n in existing])}
            grow = {names[s.name]: NewPartitions(partitions_override or s.partitions) for s in specs
                    if names[s.name] in described
                    and described[names[s.name]] < (partitions_override or s.partitions)}
            if grow:
                admin.create_partitions(grow)
                log.info("grew partitions of %s", sorted(grow))
        wait_for_metadata(admin, list(names.values()))
        return created
    finally:
        admin.close()


def create_missing(admin: KafkaAdminClient, topics: list[NewTopic], existing: set[str] | None = None) -> list[str]:
    """Create the topics that do not exist yet (`existing`: the cluster's topic names, if
    already listed); returns the names created. Another process creating one meanwhile is fine."""
    if existing is None:
        existing = set(admin.list_topics())
    created = []
    for t in topics:
        if t.name in existing:
            continue
        try:
            admin.create_topics([t])
            created.append(t.name)
        except TopicAlreadyExistsError:
            pass
    return created


def wait_for_metadata(admin: KafkaAdminClient, names: list[str], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = admin.describe_topics(names)
        if all(d["error_code"] == 0 and d["partitions"]
               and all(p.get("leader_id", p.get("leader", -1)) >= 0 for p in d["partitions"]) for d in described):
            return
        time.sleep(0.2)
    raise RuntimeError(f"topics {names} have no partition leaders after {timeout_s} s")


def describe(kafka: KafkaSettings) -> dict[str, int]:
    admin = admin_client(kafka)
    try:
        names = [n for n in admin.list_topics() if not n.startswith("__")]
        return {d.get("name", d.get("topic")): len(d["partitions"]) for d in admin.describe_topics(names)}
    finally:
        admin.close()


def delete_topics(kafka: KafkaSettings, names: list[str]) -> None:
    admin = admin_client(kafka)
    try:
        existing = set(admin.list_topics())
        todo = [n for n in names if n in existing]
        if todo:
            admin.delete_topics(todo)
    finally:
        admin.close()
