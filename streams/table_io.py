"""Batched writes to a stage's state changelog (streams.changelogs).

Why not a Faust table with `table[key] = value`: Faust sends one changelog record per
assignment and only from inside per-event stream iteration. The stages write each changed key
once per batch, to the changelog partition of the source partition that owns it (so the
partition's next owner finds it there: streams.changelog_restore). The rates and merge stages
hold their state themselves and write it here; the borrower states also have a local store
(streams.borrower_store).
"""

from __future__ import annotations

from faust.types import TopicT

from hangwatch.streams.outbox import Outbox


def exact_size(value: bytes) -> bytes:
    """orjson.dumps returns bytes whose heap block stays ~4 KB whatever their length; a copy is
    its real size. Worth it for values held for long (a million borrower states: 4,097 -> 72
    bytes each) or in bulk (a batch's 5,000 state records: ~20 MB -> ~1 MB until the flush)."""
    return memoryview(value).tobytes()


class ChangelogWriter:
    """Changelog records of one stage, sent in batches with `flush`."""

    def __init__(self, changelog: TopicT) -> None:
        self.changelog = changelog
        self._out = Outbox()

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Queue the changelog record (None deletes the key)."""
        self._out.add(self.changelog, key, None if value is None else exact_size(value), partition)

    async def flush(self) -> int:
        return await self._out.flush()
