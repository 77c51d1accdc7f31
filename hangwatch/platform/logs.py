"""Logging for every process: one format, on stderr (data goes to stdout), with the client
libraries' connection chatter held at WARNING and repeated lines rate-limited. The one place a
process configures logging.

Why the rate limit: during a broker outage aiokafka and kafka-python log every failed
connection and metadata attempt (thousands of lines a minute per process), which buries what
an operator needs and fills disks exactly when something is wrong. `RepeatFilter` lets the first
line of a kind through, then holds back repeats of it for `every_s` and says how many it held
when it lets the next one through ("... [412 more like this in the last 30 s]"), so an outage of
any length reads as a few lines a minute per kind, each with a running count.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from rich.console import Console
from rich.logging import RichHandler

# Kafka and ClickHouse clients, Faust and HTTP log every connection (and its failures).
NOISY_LOGGERS = ("aiokafka", "kafka", "faust", "mode", "clickhouse_driver", "urllib3")
REPEAT_EVERY_S = 30.0
# Numbers, addresses and ids vary between repeats of the same message.
_VARIABLE = re.compile(r"\d+(?:\.\d+)*|0x[0-9a-f]+|'[^']*'|\"[^\"]*\"|<[^>]*>|\([^()]*\)")


def kind_of(record: logging.LogRecord) -> tuple[str, int, str]:
    """What makes two records "the same line": logger, level and the message without its
    variable parts (node ids, offsets, addresses, durations)."""
    text = record.getMessage().split("\n", 1)[0][:200]
    return record.name, record.levelno, _VARIABLE.sub("#", text)


class RepeatFilter(logging.Filter):
    """Passes the first record of each kind, then at most one per `every_s`, with the number
    held back since appended to its message. Applies to the client libraries' records and to
    warnings and errors; the project's own INFO lines (progress, restores) always pass."""

    def __init__(self, every_s: float = REPEAT_EVERY_S, clock: Callable[[], float] = time.monotonic,
                 max_kinds: int = 10_000) -> None:
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self.max_kinds = max_kinds
        self._last: dict[tuple[str, int, str], tuple[float, int]] = {}  # kind -> (passed at, held since)

    def filter(self, record: logging.LogRecord) -> bool:
        library = record.name.startswith(NOISY_LOGGERS)
        if record.levelno < logging.WARNING and not library:
            return True
        kind = kind_of(record)
        now = self.clock()
        seen = self._last.get(kind)
        if seen is not None and now - seen[0] < self.every_s:
            self._last[kind] = (seen[0], seen[1] + 1)
            return False
        if len(self._last) >= self.max_kinds:
            self._last.clear()  # bounded memory; at worst a kind is let through once more
        self._last[kind] = (now, 0)
        text = record.getMessage()
        if library and record.exc_info and record.exc_info[1] is not None:
            # a client library's retry loop: the exception in one line, not its stack every time
            text = f"{text} ({record.exc_info[1]!r})"
            record.exc_info = record.exc_text = None
        if seen is not None and seen[1]:
            text = f"{text} [{seen[1]} more like this in the last {now - seen[0]:.0f} s]"
        record.msg, record.args = text, ()  # () not None: Faust's formatter wraps args in a tuple
        return True


def setup_logging(level: str, console: Console | None = None, quiet_libraries: bool = False) -> None:
    """Configure the root logger at `level` (DEBUG, INFO, WARNING, ERROR), writing to stderr.

    quiet_libraries (one-shot commands): the client libraries log nothing below CRITICAL unless
    the level is DEBUG; the command's own one-line error says what failed."""
    handler = RichHandler(console=console or Console(stderr=True), show_path=False, rich_tracebacks=True)
    handler.addFilter(RepeatFilter())
    logging.basicConfig(level=level, format="%(name)s: %(message)s", datefmt="[%X]", handlers=[handler], force=True)
    floor = logging.CRITICAL if quiet_libraries and level != "DEBUG" else logging.WARNING
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(floor, logging.getLevelName(level)))


def limit_repeats(logger: logging.Logger) -> None:
    """Add the repeat filter to every handler of `logger`: for handlers configured by others
    (Faust's worker sets up its own root handlers)."""
    for handler in logger.handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(RepeatFilter())
