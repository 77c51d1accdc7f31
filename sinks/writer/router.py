"""Route each consumed message to its table's buffer: convert it, validate the row, and put
what cannot be stored into the dead-letter buffer with the reason."""

from __future__ import annotations

import logging
from collections import Counter

from aiokafka import TopicPartition

from hangwatch.sinks.convert import CONVERTERS, InvalidEvent, Message
from hangwatch.sinks.tables import DEAD_LETTERS
from hangwatch.sinks.validate import RowError, RowValidator
from hangwatch.sinks.writer import metrics
from hangwatch.sinks.writer.batch import Batch
from hangwatch.sinks.writer.deadletter import sink_dead_letter

log = logging.getLogger(__name__)


class Router:
    def __init__(self, topic_tables: dict[str, str], validators: dict[str, RowValidator], worker: str) -> None:
        self.topic_tables = topic_tables  # topic -> table
        self.validators = validators
        self.worker = worker
        self.invalid_events: Counter[str] = Counter()
        self.unreadable: Counter[str] = Counter()

    def add(self, batch: Batch, tp: TopicPartition, msg: Message, now_s: int) -> None:
        table = self.topic_tables[tp.topic]
        try:
            row = CONVERTERS[table](msg, now_s)
            self.validators[table](row)
        except InvalidEvent as e:
            # The worker sends this message to the DLQ topic; storing it here too would double it.
            self.invalid_events[e.kind] += 1
            metrics.INVALID_EVENTS.labels(e.kind).inc()
        except RowError as e:
            self.unreadable[table] += 1
            metrics.REJECTED.labels(table, "unreadable_record").inc()
            log.warning("cannot store %s[%d]@%d in %s: %s", msg.topic, msg.partition, msg.offset, table, e)
            batch.add(DEAD_LETTERS.name,
                      sink_dead_letter(msg, "sink_invalid_record", e.column, str(e), self.worker, now_s), msg)
        else:
            batch.add(table, row, msg)
        batch.consumed(tp, msg.offset + 1)
