"""The topic registry: one YAML file per topic in schemas/topics/, loaded into TopicSpec.

Every topic the project reads or writes is declared there once (name, key, partitions,
cleanup policy, retention, value schema, producers, consumers); `hangwatch topics create`
creates them from it, and code refers to topics only through this registry."""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path

import yaml

TOPICS_DIR = Path(__file__).parent / "topics"

CALL_OUTCOMES = "call-outcomes"
DLQ = "call-outcomes.dlq"
HANGUP_RATES = "hangup-rates"
BORROWER_FLAGS = "borrower-flags"
HANGUP_ALERTS = "hangup-alerts"
RATE_PARTIALS = "hangwatch-rate-partials"


@dataclasses.dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    description: str
    key: str
    value_schema: str
    partitions: int
    cleanup_policy: str
    retention_ms: int
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    examples: str | None = None

    def config(self) -> dict[str, str]:
        """Broker-side topic configs."""
        return {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}


@cache
def registry() -> dict[str, TopicSpec]:
    specs: dict[str, TopicSpec] = {}
    for path in sorted(TOPICS_DIR.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec = TopicSpec(
            name=raw["name"],
            description=raw["description"],
            key=str(raw["key"]),
            value_schema=raw["value_schema"],
            partitions=int(raw["partitions"]),
            cleanup_policy=raw["cleanup_policy"],
            retention_ms=int(raw["retention_ms"]),
            producers=tuple(raw.get("producers", ())),
            consumers=tuple(raw.get("consumers", ())),
            examples=raw.get("examples"),
        )
        if path.stem != spec.name:
            raise ValueError(f"{path}: file name must equal the topic name {spec.name!r}")
        specs[spec.name] = spec
    return specs


def topic(name: str) -> TopicSpec:
    try:
        return registry()[name]
    except KeyError:
        raise KeyError(f"topic {name!r} is not declared in {TOPICS_DIR}") from None
