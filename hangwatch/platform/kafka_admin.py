"""Create and inspect the project's topics from the registry (kafka-python admin client)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from kafka.admin import KafkaAdminClient, NewPartitions, NewTopic
from kafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, TopicAlreadyExistsError

from hangwatch.platform.settings import KafkaSettings
from hangwatch.schemas.topics import TopicSpec, registry

log = logging.getLogger(__name__)


# One-shot commands (topics, migrate, ...) give up on an unreachable broker after this long;
# the worker keeps retrying for ADMIN_TIMEOUT_S at start.
ONE_SHOT_TIMEOUT_S = 4.0
ADMIN_TIMEOUT_S = 30.0


class KafkaUnreachable(RuntimeError):
    """No broker answers at the configured addresses (after retrying for the timeout)."""

    def __init__(self, servers: str) -> None:
        super().__init__(f"no Kafka broker answers at {servers}; start one with `deploy/local/kafka.sh start` "
                         "or set HANGWATCH_KAFKA__BOOTSTRAP_SERVERS")
        self.servers = servers


class KafkaRefused(RuntimeError):
    """A broker listens at the addresses, but the client cannot talk to it: a TLS or SASL setting
    that does not match the listener (protocol, mechanism, user, password, CA)."""

    def __init__(self, servers: str, protocol: str) -> None:
        super().__init__(f"a broker listens at {servers} but the {protocol} connection to it failed; check "
                         "HANGWATCH_KAFKA__SECURITY_PROTOCOL, the SASL mechanism, user and password, and the CA file")
        self.servers = servers
        self.protocol = protocol


class KafkaMisconfigured(RuntimeError):
    """An address that can never work: an unresolvable host, a malformed address."""


def _addresses(kafka: KafkaSettings) -> list[tuple[str, int]]:
    out = []
    for item in kafka.bootstrap_servers.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise KafkaMisconfigured(f"kafka.bootstrap_servers: {item.strip()!r} is not host:port "
                                     "(set HANGWATCH_KAFKA__BOOTSTRAP_SERVERS, e.g. 127.0.0.1:9092)")
        out.append((host.strip("[]"), int(port)))
    return out


def probe(kafka: KafkaSettings, timeout_s: float = 2.0) -> bool:
    """True when a TCP connection to one of the bootstrap addresses opens within timeout_s.
    KafkaMisconfigured when a host does not resolve (waiting would not help)."""
    for host, port in _addresses(kafka):
        try:
            socket.getaddrinfo(host, port)
        except socket.gaierror:
            raise KafkaMisconfigured(f"Kafka host {host!r} does not resolve; check "
                                     "HANGWATCH_KAFKA__BOOTSTRAP_SERVERS") from None
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return True
        except OSError:
            continue
    return False


def admin_client(kafka: KafkaSettings, timeout_s: float = ADMIN_TIMEOUT_S) -> KafkaAdminClient:
    """An admin client, once a broker answers; KafkaUnreachable after timeout_s."""
    deadline = time.monotonic() + timeout_s
    listening = False  # a TCP connection opened: what fails is the handshake (TLS, SASL)
    while True:
        if probe(kafka, timeout_s=min(2.0, timeout_s)):
            listening = True
            try:
                return KafkaAdminClient(client_id="hangwatch-admin",
                                        bootstrap_timeout_ms=int(min(timeout_s, 30) * 1000),
                                        **kafka.kafka_python_kwargs())
            except (KafkaConnectionError, KafkaTimeoutError):
                pass
        if time.monotonic() > deadline:
            if listening:
                raise KafkaRefused(kafka.bootstrap_servers, kafka.security_protocol)
            raise KafkaUnreachable(kafka.bootstrap_servers)
        time.sleep(0.5)


T = TypeVar("T")
# A broker that died is still in the metadata until the controller fences it (KRaft:
# broker.session.timeout.ms, 9 s); kafka-python's admin sends to it once and gives up with
# these. Worth another try with a fresh client, until the caller's deadline.
_RETRIABLE = (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError)


def with_admin(kafka: KafkaSettings, action: Callable[[KafkaAdminClient], T], what: str,
               timeout_s: float = ADMIN_TIMEOUT_S) -> T:
    """Run `action` with an admin client; on a broker that stopped answering midway, retry with
    a new client until timeout_s. KafkaUnreachable / KafkaRefused when no broker answers at all."""
    deadline = time.monotonic() + timeout_s
    while True:
        admin = admin_client(kafka, max(1.0, deadline - time.monotonic()))
        try:
            return action(admin)
        except _RETRIABLE as e:
            if time.monotonic() > deadline:
                raise KafkaUnreachable(kafka.bootstrap_servers) from e
            log.warning("%s: a broker did not answer (%s); retrying with the others", what, type(e).__name__)
        finally:
            admin.close()
        time.sleep(1.0)


def ensure_topics(kafka: KafkaSettings, specs: Iterable[TopicSpec] | None = None,
                  partitions_override: int | None = None, timeout_s: float = ADMIN_TIMEOUT_S) -> list[str]:
    """Create missing topics (idempotent); grow partitions that are below the registry's count.
    Returns the names of the topics created."""
    specs = list(specs if specs is not None else registry().values())
    return with_admin(kafka, lambda admin: _ensure_topics(admin, kafka, specs, partitions_override), "topics",
                      timeout_s)


def _ensure_topics(admin: KafkaAdminClient, kafka: KafkaSettings, specs: list[TopicSpec],
                   partitions_override: int | None) -> list[str]:
    """Create the missing topics, grow the short ones, wait for their leaders."""
    existing = set(admin.list_topics())
    names = {s.name: kafka.topic(s.name) for s in specs}
    created = create_missing(admin, [NewTopic(names[s.name], partitions_override or s.partitions,
                                              kafka.replication_factor,
                                              topic_configs={**s.config(), **kafka.topic_configs()})
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


def describe(kafka: KafkaSettings, timeout_s: float = ONE_SHOT_TIMEOUT_S) -> dict[str, int]:
    admin = admin_client(kafka, timeout_s)
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
