"""streams.stuck.Watch: a unit of work that runs too long is reported with where it waits."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hangwatch.streams.stuck import Watch


def test_a_long_running_unit_is_reported_with_its_stack(caplog: pytest.LogCaptureFixture) -> None:
    watch = Watch()

    async def waits_forever_here(never: asyncio.Event) -> None:
        with watch.running("merge-stage batch"):
            await never.wait()

    async def run() -> list[str]:
        never = asyncio.Event()
        task = asyncio.ensure_future(waits_forever_here(never))
        await asyncio.sleep(0.01)
        assert watch.report(older_than_s=3600) == []  # not long enough yet
        slow = watch.report(older_than_s=0)
        never.set()
        await task
        assert watch.report(older_than_s=0) == []  # finished units are gone
        return slow

    with caplog.at_level(logging.WARNING, logger="hangwatch.streams.stuck"):
        assert asyncio.run(run()) == ["merge-stage batch"]
    assert "waits_forever_here" in caplog.text
