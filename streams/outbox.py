"""Batched, retried sends: every record of a batch is sent, then delivery is awaited.

The stages call `flush()` before they persist state and before their batch is acknowledged,
so an offset is never committed for an event whose outputs are not on the broker. A send that
fails (broker down, leader moving) is retried with backoff until it succeeds: a Kafka outage
pauses the pipeline instead of losing records. Every record sent here is idempotent
downstream (snapshots, deterministic ids, versions), so a retry that duplicates is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, max_backoff_s: float = 30.0) -> None:
        self._records: list[tuple[faust.TopicT, bytes, bytes | None, int | None]] = []
        self.max_backoff_s = max_backoff_s

    def add(self, topic: faust.TopicT, key: bytes, value: bytes | None, partition: int | None = None) -> None:
        self._records.append((topic, key, value, partition))

    def __len__(self) -> int:
        return len(self._records)

    async def flush(self) -> int:
        """Send everything added so far and wait until the broker acknowledged all of it."""
        todo = self._records
        self._records = []
        sent = len(todo)
        backoff = 0.2
        while todo:
            futures: list[Any] = []
            for t, k, v, p in todo:
                try:
                    futures.append(await t.send(key=k, value=v, partition=p, key_serializer="raw",
                                                value_serializer="raw"))
                except Exception as e:  # enqueue failed (e.g. no metadata): retried below
                    futures.append(_failed(e))
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = [rec for rec, r in zip(todo, results, strict=True) if isinstance(r, BaseException)]
            if failed:
                first = next(r for r in results if isinstance(r, BaseException))
                log.warning("%d of %d sends failed (%s: %s); retrying in %.1f s", len(failed), len(todo),
                            type(first).__name__, first, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
            todo = failed
        return sent


def _failed(e: BaseException) -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fut.set_exception(e)
    return fut
