"""Fixtures of the tests against the real broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.harness import KafkaEnv


@pytest.fixture
def kenv() -> Iterator[KafkaEnv]:
    """A private topic set and app id, deleted after the test."""
    env = KafkaEnv()
    yield env
    env.cleanup()
