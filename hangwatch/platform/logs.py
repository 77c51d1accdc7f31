"""Logging for every process: one format, on stderr (data goes to stdout), with the client
libraries' connection chatter held at WARNING. The one place a process configures logging."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler

# Kafka clients and Faust log every connection at INFO.
NOISY_LOGGERS = ("aiokafka", "kafka", "faust", "mode")


def setup_logging(level: str, console: Console | None = None) -> None:
    """Configure the root logger at `level` (DEBUG, INFO, WARNING, ERROR), writing to stderr."""
    logging.basicConfig(
        level=level,
        format="%(name)s: %(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=console or Console(stderr=True), show_path=False, rich_tracebacks=True)],
        force=True,
    )
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
