"""The call stream: who is called, when, how and with which outcome, as CallOutcome events
and their wire bytes, then the fault injection on top (`generate`).

Deterministic: every draw comes from RNGs seeded by (seed, purpose), and with a backfill start
nothing reads the clock, so the same seed and options give byte-identical output."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterator

import orjson

from hangwatch.schemas.call_outcome import SCHEMA_VERSION, CallOutcome
from hangwatch.simulator.clock import DAILY_RHYTHM, ArrivalClock, TsFormatter, local_hour, quiet_intensity
from hangwatch.simulator.config import SimConfig
from hangwatch.simulator.dialler import Dialler
from hangwatch.simulator.faults import inject
from hangwatch.simulator.model import CAMPAIGNS, SCRIPTS, CallModel
from hangwatch.simulator.population import Population
from hangwatch.simulator.records import SimRecord

Clock = Callable[[], float]  # epoch seconds, like time.time


def generate(cfg: SimConfig, clock: Clock | None = None) -> Iterator[SimRecord]:
    """All records of a run in delivery order: the calls plus the configured faults.
    `clock` is read only in live mode (cfg.start_ms is None); it defaults to time.time."""
    events = generate_events(cfg, clock)
    if not cfg.faults.enabled:
        # Fast path: nothing is held back or added, each call is one in-order record.
        return (SimRecord(key=key, value=value, event=ev) for ev, value, key in events)
    return inject(events, cfg.faults, random.Random(f"hangwatch-sim/{cfg.seed}/faults"))


def generate_events(cfg: SimConfig, clock: Clock | None = None) -> Iterator[tuple[CallOutcome, bytes, bytes]]:
    """Calls in event-time order as (event, value bytes, key bytes)."""
    now = clock or time.time
    start_ms = cfg.start_ms if cfg.start_ms is not None else int(now() * 1000)
    pop = Population(cfg)
    model = CallModel()
    rng = random.Random(f"hangwatch-sim/{cfg.seed}/calls")
    # Ids depend on the start too, so two live runs with the same seed do not share event ids
    # (consumers would drop the second run as duplicates).
    ids = random.Random(f"hangwatch-sim/{cfg.seed}/{start_ms}/ids")
    run_tag = f"{ids.getrandbits(32):08x}"
    arrivals = None
    if not cfg.live:
        quiet = quiet_intensity(cfg.quiet_share) if cfg.scenario == "quiet_hours" else 0.0
        arrivals = ArrivalClock(start_ms, cfg.rate, quiet, random.Random(f"hangwatch-sim/{cfg.seed}/arrivals"),
                                DAILY_RHYTHM if cfg.daily_rhythm else None)
    end_ms = start_ms + int(cfg.duration_s * 1000) if cfg.duration_s is not None else None
    spike_branch = cfg.branches.index(cfg.spike.branch) if cfg.scenario == "branch_spike" else -1
    spike_from, spike_to = cfg.spike_window_ms(start_ms)
    spike_factor = cfg.spike.factor
    segments = SegmentSpikes(cfg) if cfg.spikes else None

    fmt = TsFormatter()
    dialler = Dialler(pop, random.Random(f"hangwatch-sim/{cfg.seed}/dialler"))
    branches = cfg.branches
    draw = model.draw

    for seq in itertools.count() if cfg.count is None else range(cfg.count):
        t = arrivals.next_ms() if arrivals is not None else int(now() * 1000)
        if end_ms is not None and t >= end_ms:
            return
        case = dialler.next_case(t)
        case.attempt += 1
        b = case.borrower
        robot = case.robot
        spike = spike_factor if b.branch_idx == spike_branch and spike_from <= t < spike_to else 1.0
        if segments is not None:
            spike *= segments.factor(t, b.branch_idx, case.campaign, case.script)
        outcome, stage, duration = draw(rng, local_hour(t), robot, case.notified, b.first_time, b.credit_grade,
                                        b.refuser, case.script, case.campaign, case.skill, spike)
        campaign = CAMPAIGNS[case.campaign]
        notified, agent_id, attempt = case.notified, case.agent_id, case.attempt
        script_version = SCRIPTS[case.script].version
        dialler.after_call(case, outcome, t)  # may hand the case over to a person: read it first
        event_id = ids.randbytes(16).hex()  # 128 random bits: unique without any bookkeeping
        call_id = f"call-{run_tag}-{seq:09d}"
        branch = branches[b.branch_idx]
        channel = "robot" if robot else "human"
        # Same fields in the same order as CallOutcome.to_dict, so the bytes equal event.to_json().
        value = orjson.dumps({
            "event_id": event_id,
            "schema_version": SCHEMA_VERSION,
            "call_id": call_id,
            "borrower_id": b.borrower_id,
            "loan_id": b.loan_id,
            "occurred_at": fmt(t),
            "campaign": campaign.name,
            "channel": channel,
            "agent_id": agent_id,
            "branch": branch,
            "outcome": outcome,
            "hangup_stage": stage,
            "duration_s": duration,
            "attempt_no": attempt,
            "pre_notified": notified,
            "credit_grade": b.credit_grade,
            "first_time_borrower": b.first_time,
            "script_version": script_version,
        })
        # Positional, in CallOutcome's field order (keywords cost a microsecond per event).
        event = CallOutcome(event_id, call_id, b.borrower_id, b.loan_id, t, campaign.name, channel, agent_id, branch,
                            outcome, stage, duration, attempt, notified, b.credit_grade, b.first_time,
                            script_version)
        yield event, value, b.key


class SegmentSpikes:
    """The factor of SimConfig.spikes for a call at time t (non-decreasing) of a branch,
    campaign and script (indexes): the product of the spikes active at t on those segments."""

    def __init__(self, cfg: SimConfig) -> None:
        index = {"branch": {v: i for i, v in enumerate(cfg.branches)},
                 "campaign": {c.name: i for i, c in enumerate(CAMPAIGNS)},
                 "script_version": {s.version: i for i, s in enumerate(SCRIPTS)}}
        dims = ("branch", "campaign", "script_version")
        self._pending = sorted((sp.at_ms, sp.end_ms, dims.index(sp.dimension), index[sp.dimension][sp.value], sp.factor)
                               for sp in cfg.spikes)
        self._next = 0
        self._active: list[tuple[int, int, int, int, float]] = []

    def factor(self, t: int, branch: int, campaign: int, script: int) -> float:
        pending = self._pending
        while self._next < len(pending) and pending[self._next][0] <= t:
            self._active.append(pending[self._next])
            self._next += 1
        if not self._active:
            return 1.0
        self._active = [a for a in self._active if a[1] > t]
        f = 1.0
        for _, _, dim, value, factor in self._active:
            if (branch, campaign, script)[dim] == value:
                f *= factor
        return f
