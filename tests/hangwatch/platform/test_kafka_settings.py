"""kafka.replication_factor and kafka.min_insync_replicas: checked together, and carried into
every topic the project creates (the broker side is tested in tests/integration)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hangwatch.platform.settings import KafkaSettings


def test_min_insync_replicas_reaches_the_topic_configs() -> None:
    k = KafkaSettings(replication_factor=3, min_insync_replicas=2)
    assert k.topic_configs() == {"min.insync.replicas": "2"}
    assert KafkaSettings().topic_configs() == {"min.insync.replicas": "1"}


def test_more_insync_replicas_than_replicas_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"min_insync_replicas \(3\) cannot exceed kafka\.replication_factor"):
        KafkaSettings(min_insync_replicas=3)
