"""Which of the worker's units of work (a stage batch, a timer run) has been running for long,
and where it waits: a hung await would otherwise stop a worker without a word."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)


class Watch:
    def __init__(self) -> None:
        self._running: dict[str, tuple[float, asyncio.Task[object] | None]] = {}

    @contextlib.contextmanager
    def running(self, name: str) -> Iterator[None]:
        self._running[name] = (time.monotonic(), asyncio.current_task())
        try:
            yield
        finally:
            self._running.pop(name, None)

    def report(self, older_than_s: float) -> list[str]:
        """Log (warning) each unit running longer than `older_than_s`, with the stack of the
        task running it; returns their names."""
        now = time.monotonic()
        slow = []
        for name, (since, task) in list(self._running.items()):
            if now - since < older_than_s:
                continue
            slow.append(name)
            stack = io.StringIO()
            if task is not None:
                task.print_stack(limit=30, file=stack)
            log.warning("%s has been running for %.0f s; it waits here:\n%s", name, now - since, stack.getvalue())
        return slow
