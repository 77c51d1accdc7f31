"""The worker's state changelogs: compacted topics the stages write their state to and restore
it from (streams.changelog_restore, streams.borrower_store). Internal to the worker, named per
worker.app_id (as Faust named its table changelogs, so an existing deployment keeps its state),
one partition per source partition: the state of call-outcomes partition p is in partition p.

The worker creates them at start (`ensure_changelogs`); they are not part of the topic
registry (schemas/topics/), which holds the contract topics other systems read or write.
"""

from __future__ import annotations

import dataclasses
import logging

from kafka.admin import KafkaAdminClient, NewTopic

from hangwatch.platform.kafka_admin import create_missing, wait_for_metadata, with_admin
from hangwatch.platform.settings import KafkaSettings
from hangwatch.schemas.topics import CALL_OUTCOMES, topic

log = logging.getLogger(__name__)
DAY_MS = 86_400_000


@dataclasses.dataclass(frozen=True)
class Changelog:
    table: str
    description: str
    # None: compacted only (every live key kept); else compacted and deleted after this long
    retention_ms: int | None

    def name(self, app_id: str) -> str:
        return f"{app_id}-{self.table}-changelog"

    def config(self) -> dict[str, str]:
        if self.retention_ms is None:
            return {"cleanup.policy": "compact"}
        return {"cleanup.policy": "compact,delete", "retention.ms": str(self.retention_ms)}


# Compacted + 1 day: records of closed windows and old seen ids age out even if a tombstone was
# lost; live records are rewritten far more often than that.
RATES = Changelog("rates-state", "window cells, seen event ids and watermark per source partition", DAY_MS)
# The one state that grows with the business (one record per borrower); kept until deleted.
BORROWERS = Changelog("borrower-state", "recent calls and flag episodes per borrower", None)
MERGE = Changelog("merge-state", "merged window cells and spike state per partials partition", 2 * DAY_MS)
ALL = (RATES, BORROWERS, MERGE)


def partitions() -> int:
    """Every changelog has one partition per source partition."""
    return topic(CALL_OUTCOMES).partitions


def ensure_changelogs(kafka: KafkaSettings, app_id: str) -> list[str]:
    """Create the changelogs that do not exist yet (idempotent); returns the names created.
    Retried with the other brokers while one that died is still in the metadata."""
    return with_admin(kafka, lambda admin: _ensure(admin, kafka, app_id), "changelogs")


def _ensure(admin: KafkaAdminClient, kafka: KafkaSettings, app_id: str) -> list[str]:
    created = create_missing(admin, [NewTopic(c.name(app_id), partitions(), kafka.replication_factor,
                                              topic_configs={**c.config(), **kafka.topic_configs()})
                                     for c in ALL])
    if created:
        log.info("created changelog topics %s", created)
    wait_for_metadata(admin, [c.name(app_id) for c in ALL])
    return created
