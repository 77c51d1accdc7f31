"""Rows for dead_letters made by the sink itself, for a message it cannot store."""

from __future__ import annotations

import base64
import re
from typing import Any

from hangwatch.sinks.convert import Message

# Where the two backends name the offending column in their error messages.
_COLUMN_PATTERNS = (re.compile(r"Column (\w+):"), re.compile(r"value of key (\w+)"), re.compile(r"column (\w+)"))
MAX_ERROR_CHARS = 2000


def column_from_error(message: str) -> str | None:
    for pat in _COLUMN_PATTERNS:
        m = pat.search(message)
        if m:
            return m.group(1)
    return None


def _b64(b: bytes | None) -> str | None:
    return None if b is None else base64.b64encode(b).decode("ascii")


def sink_dead_letter(msg: Message, kind: str, field: str | None, error: str, worker: str,
                     now_s: int) -> tuple[Any, ...]:
    """In the column order of sinks.tables.DEAD_LETTERS."""
    ts = msg.timestamp if msg.timestamp is not None and msg.timestamp >= 0 else None  # Kafka says -1 for none
    return (msg.topic, msg.partition, msg.offset, ts, _b64(msg.key), _b64(msg.value), kind, field,
            error[:MAX_ERROR_CHARS], now_s, worker, now_s, [], [], [])


def bare_dead_letter(msg: Message, kind: str, error: str, worker: str, now_s: int) -> tuple[Any, ...]:
    """Without the payload: the last resort when even the full dead letter is refused."""
    return (msg.topic, msg.partition, msg.offset, None, None, None, kind, None, error[:MAX_ERROR_CHARS], now_s,
            worker, now_s, [], [], [])
