"""What a simulation run is: population size, timing, scenario and fault shares (no logic)."""

from __future__ import annotations

import dataclasses
from typing import Final, Literal

Scenario = Literal["none", "branch_spike", "quiet_hours"]
SCENARIOS: Final = ("none", "branch_spike", "quiet_hours")

# The names in simulator.model (CAMPAIGNS, SCRIPTS), repeated here so the config stays logic-free;
# tests/simulator/test_model.py checks they agree.
CAMPAIGN_NAMES: Final = ("pre_loan_verification", "post_loan_review", "repayment_reminder")
SCRIPT_VERSIONS: Final = ("v2.3", "v2.4", "v2.5-pilot", "robot-v5", "robot-v6")

BRANCHES: Final = (
    "shanghai-pudong",
    "shanghai-xuhui",
    "beijing-chaoyang",
    "beijing-haidian",
    "shenzhen-futian",
    "guangzhou-tianhe",
    "hangzhou-xihu",
    "chengdu-jinjiang",
)


@dataclasses.dataclass(frozen=True, slots=True)
class SpikeConfig:
    """Scenario `branch_spike`: from `at_ms` for `minutes`, calls of `branch` hang up `factor`
    times as often (the probability is capped, so the rate cannot exceed 0.9)."""

    branch: str = BRANCHES[0]
    at_ms: int | None = None  # None: one hour after the start of the run
    minutes: float = 15.0
    factor: float = 3.0


SpikeDimension = Literal["branch", "campaign", "script_version"]


@dataclasses.dataclass(frozen=True, slots=True)
class SegmentSpike:
    """A hang-up spike on one branch, campaign or script version, in any scenario: from `at_ms`
    for `minutes`, that segment's calls hang up `factor` times as often (capped like
    SpikeConfig). Several may overlap; their factors multiply."""

    dimension: SpikeDimension
    value: str
    at_ms: int
    minutes: float
    factor: float

    @property
    def end_ms(self) -> int:
        return self.at_ms + int(self.minutes * 60_000)


@dataclasses.dataclass(frozen=True, slots=True)
class FaultConfig:
    """Shares are per generated call (0.01 = 1 %). Duplicates and malformed messages are extra
    records on top of the calls; out-of-order and late ones are calls delivered after newer ones."""

    duplicates: float = 0.0
    out_of_order: float = 0.0
    late: float = 0.0
    malformed: float = 0.0
    # Out-of-order calls are delivered up to this much event time after they happened; it
    # must stay inside the consumer's grace period so they still count in their window.
    ooo_window_s: float = 30.0
    # Late calls are delivered this long after they happened, well beyond the grace period.
    late_min_s: float = 20 * 60.0
    late_max_s: float = 60 * 60.0
    # The consumer's grace period (settings.worker.grace_s); only used to label records.
    grace_s: float = 600.0
    # A re-sent duplicate follows its original within this much event time (a producer retry).
    duplicate_delay_s: float = 5.0

    @property
    def enabled(self) -> bool:
        return bool(self.duplicates or self.out_of_order or self.late or self.malformed)


@dataclasses.dataclass(frozen=True, slots=True)
class SimConfig:
    """One simulation run. `start_ms` set = backfill (event time from there, deterministic);
    None = live (occurred_at is the clock's now; pacing is the caller's job).
    `count` bounds the number of calls, `duration_s` the time they span (whichever ends first);
    with neither the generator is endless."""

    seed: int = 0
    rate: float = 50.0  # calls per second of event time (backfill) or wall time (live)
    count: int | None = None
    duration_s: float | None = None
    start_ms: int | None = None
    # Population size; None: rate x 1,000,000, so that each borrower gets about one case a
    # month (14 calling hours a day, ~1.7 calls per case).
    borrowers: int | None = None
    refuser_share: float = 0.02  # borrowers who mostly hang up, refuse or decline
    branches: tuple[str, ...] = BRANCHES
    agents_per_branch: int = 12
    scenario: Scenario = "none"
    spike: SpikeConfig = dataclasses.field(default_factory=SpikeConfig)
    quiet_share: float = 0.1  # scenario quiet_hours: share of calls placed at 22:00-08:00 local
    faults: FaultConfig = dataclasses.field(default_factory=FaultConfig)
    # Call volume by local hour (clock.DAILY_RHYTHM) instead of flat through the day; backfill only.
    daily_rhythm: bool = False
    # Extra hang-up spikes on segments (the alert-quality benchmark's scenarios).
    spikes: tuple[SegmentSpike, ...] = ()

    def __post_init__(self) -> None:
        problems = []
        if not self.rate > 0:
            problems.append(f"rate must be > 0 calls/s, got {self.rate}")
        if self.count is not None and self.count < 0:
            problems.append(f"count must be >= 0, got {self.count}")
        if self.duration_s is not None and self.duration_s < 0:
            problems.append(f"duration must be >= 0 s, got {self.duration_s}")
        if self.borrowers is not None and not 1 <= self.borrowers <= 2**40:
            problems.append(f"borrowers must be within [1, 2^40], got {self.borrowers}")
        if not 0 <= self.refuser_share <= 1:
            problems.append(f"refuser share must be within [0, 1], got {self.refuser_share}")
        if not self.branches or len(set(self.branches)) != len(self.branches):
            problems.append("branches must be a non-empty list of distinct names")
        if self.agents_per_branch < 1:
            problems.append(f"agents per branch must be >= 1, got {self.agents_per_branch}")
        if self.scenario not in SCENARIOS:
            problems.append(f"unknown scenario {self.scenario!r}; expected one of {', '.join(SCENARIOS)}")
        if self.scenario == "branch_spike":
            if self.spike.branch not in self.branches:
                problems.append(f"spike branch {self.spike.branch!r} is not one of {', '.join(self.branches)}")
            if not self.spike.minutes > 0:
                problems.append(f"spike minutes must be > 0, got {self.spike.minutes}")
            if not self.spike.factor > 0:
                problems.append(f"spike factor must be > 0, got {self.spike.factor}")
        for sp in self.spikes:
            known = {"branch": self.branches, "campaign": CAMPAIGN_NAMES, "script_version": SCRIPT_VERSIONS}
            if sp.dimension not in known:
                problems.append(f"spike dimension must be branch, campaign or script_version, got {sp.dimension!r}")
            elif sp.value not in known[sp.dimension]:
                problems.append(f"spike {sp.dimension} {sp.value!r} is not one of {', '.join(known[sp.dimension])}")
            if not sp.minutes > 0 or not sp.factor > 0:
                problems.append(f"spike minutes and factor must be > 0, got {sp.minutes} and {sp.factor}")
        if not 0 <= self.quiet_share < 1:
            problems.append(f"quiet-hours share must be within [0, 1), got {self.quiet_share}")
        f = self.faults
        for name in ("duplicates", "out_of_order", "late", "malformed"):
            share = getattr(f, name)
            if not 0 <= share <= 1:
                problems.append(f"{name.replace('_', '-')} share must be within [0, 1], got {share}")
        if f.out_of_order + f.late > 1:
            problems.append("out-of-order and late shares together must not exceed 1")
        if not 0 < f.ooo_window_s < f.grace_s:
            problems.append(f"out-of-order window ({f.ooo_window_s} s) must be > 0 and below the grace "
                            f"period ({f.grace_s} s)")
        if not f.grace_s < f.late_min_s <= f.late_max_s:
            problems.append(f"late delays ({f.late_min_s}-{f.late_max_s} s) must exceed the grace period "
                            f"({f.grace_s} s)")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def population_size(self) -> int:
        if self.borrowers is not None:
            return self.borrowers
        return min(2**40, max(1_000, int(self.rate * 1_000_000)))

    @property
    def live(self) -> bool:
        return self.start_ms is None

    def spike_window_ms(self, start_ms: int) -> tuple[int, int]:
        """[from, to) of the spike in epoch ms; `start_ms` is the run's first event time."""
        at = self.spike.at_ms if self.spike.at_ms is not None else start_ms + 3_600_000
        return at, at + int(self.spike.minutes * 60_000)
