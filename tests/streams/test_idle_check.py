"""How often the worker checks for idle partitions (hangwatch.streams.runtime.idle_check_interval)."""

from __future__ import annotations

import pytest

from hangwatch.streams.runtime import idle_check_interval


@pytest.mark.parametrize(("idle_close_s", "expected"), [(10.0, 1.0), (4.0, 1.0), (2.0, 0.5), (1.0, 0.25),
                                                        (0.2, 0.1)])
def test_a_quarter_of_idle_close_within_bounds(idle_close_s: float, expected: float) -> None:
    assert idle_check_interval(idle_close_s) == expected
