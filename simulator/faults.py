"""Delivery faults on top of the in-order call stream: re-sent duplicates, calls delivered
out of order within the grace period or late beyond it, and malformed messages.

Delayed records wait in a heap ordered by delivery time (event time + delay) and are released
once the stream's event time reaches it, so memory stays bounded by the longest delay. Every
record is labelled by what actually happened on delivery, not by intent: its lateness is
measured against the newest event time delivered before it (what a consumer's watermark
would be), so a "late" call held at the end of a short run may honestly come out as merely
out of order."""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator

from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.simulator import malformed
from hangwatch.simulator.config import FaultConfig
from hangwatch.simulator.records import DUPLICATE, LATE, MALFORMED, OUT_OF_ORDER, SimRecord


def inject(events: Iterable[tuple[CallOutcome, bytes, bytes]], faults: FaultConfig,
           rng: random.Random) -> Iterator[SimRecord]:
    grace_ms = int(faults.grace_s * 1000)
    p_late, p_disorder = faults.late, faults.late + faults.out_of_order
    # (delivery ms, tie-breaker, event, value, key)
    held: list[tuple[int, int, CallOutcome, bytes, bytes]] = []
    order = 0
    watermark = -1  # newest event time delivered so far
    # Calls sent twice: whichever copy arrives second is the duplicate (a delayed original can
    # come after its re-send). `twins` have neither copy delivered yet, `halves` one of them.
    twins: set[str] = set()
    halves: set[str] = set()

    def deliver(ev: CallOutcome, value: bytes, key: bytes) -> SimRecord:
        nonlocal watermark
        t = ev.occurred_at_ms
        lateness = max(0, watermark - t)
        watermark = max(watermark, t)
        dup = False
        if ev.event_id in twins:
            twins.remove(ev.event_id)
            halves.add(ev.event_id)
        elif ev.event_id in halves:
            halves.remove(ev.event_id)
            dup = True
        fault = DUPLICATE if dup else LATE if lateness > grace_ms else OUT_OF_ORDER if lateness else None
        return SimRecord(key=key, value=value, event=ev, fault=fault, lateness_ms=lateness)

    for ev, value, key in events:
        t = ev.occurred_at_ms
        while held and held[0][0] <= t:
            _, _, hev, hval, hkey = heapq.heappop(held)
            yield deliver(hev, hval, hkey)
        u = rng.random()
        if faults.duplicates and rng.random() < faults.duplicates:
            # A producer retry: the same key and bytes again, a few seconds later.
            twins.add(ev.event_id)
            heapq.heappush(held, (t + int(rng.uniform(0.0, faults.duplicate_delay_s) * 1000), order, ev, value, key))
            order += 1
        if u < p_disorder:
            lo, hi = (faults.late_min_s, faults.late_max_s) if u < p_late else (1.0, faults.ooo_window_s)
            heapq.heappush(held, (t + int(rng.uniform(lo, hi) * 1000), order, ev, value, key))
            order += 1
        else:
            yield deliver(ev, value, key)
        if faults.malformed and rng.random() < faults.malformed:
            m = malformed.build(ev, rng)
            yield SimRecord(key=m.key, value=m.value, event=None, fault=MALFORMED, error_kind=m.error_kind,
                            error_field=m.error_field)
    while held:
        _, _, hev, hval, hkey = heapq.heappop(held)
        yield deliver(hev, hval, hkey)
