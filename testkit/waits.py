"""Waiting for something the system under test does in its own time (a worker process, the sink
thread, a broker): poll a condition until it holds or the time is up, then say why it failed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Watched(Protocol):
    """A process the wait depends on (tests/integration/harness.py's WorkerProcess, bench's Proc)."""

    def assert_alive(self) -> None:
        """Raise if the process has exited."""

    def log_tail(self, n: int = ...) -> str: ...


def wait_for(cond: Callable[[], T], timeout: float = 60.0, what: str = "", workers: Iterable[Watched] = (), *,
             describe: Callable[[], object] | None = None, every_s: float = 0.25) -> T:
    """Call `cond` every `every_s` seconds until it returns a truthy value, and return that value.

    Diagnostics: each round first checks that every one of `workers` is alive (a dead worker
    raises at once, instead of a timeout much later). On timeout an AssertionError names `what`
    (or the condition), the state `describe()` reports, and the last log lines of the workers.
    """
    workers = list(workers)
    deadline = time.monotonic() + timeout
    while True:
        for w in workers:
            w.assert_alive()
        got = cond()
        if got:
            return got
        if time.monotonic() >= deadline:
            break
        time.sleep(every_s)
    lines = [f"timed out after {timeout} s waiting for {what or cond}"]
    if describe is not None:
        try:
            lines[0] += f" ({describe()})"
        except Exception as e:  # the diagnosis must not hide the timeout
            lines[0] += f" (describe failed: {e!r})"
    lines += [w.log_tail() for w in workers]
    raise AssertionError("\n".join(lines))
