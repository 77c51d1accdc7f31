"""Who is called next: a new case or a due retry.

A case is one borrower in one campaign, worked until the follow-up is completed, the number
turns out invalid, or the attempts run out. Channel, agent, script and pre-notification are
fixed for the case (the same agent calls back, the SMS goes out once). Failed calls are
retried after a delay that depends on how they failed; robot diallers retry unanswered calls
sooner and more often than people do, which is what now and then breaks the six-unanswered-
calls-a-day guideline. Every call is either the earliest due retry or, if none is due, a new
case for a borrower drawn from the population."""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import itertools
import random
from typing import Final

from hangwatch.simulator.model import CAMPAIGNS, HUMAN_SCRIPTS, ROBOT_SCRIPTS, SCRIPTS
from hangwatch.simulator.population import Borrower, Population

# Seconds until the next attempt, by how the last one ended: (min, max) for people, robots.
_HOUR = 3600.0
RETRY_DELAY_S: Final[dict[str, tuple[tuple[float, float], tuple[float, float]]]] = {
    "no_answer": ((1 * _HOUR, 4 * _HOUR), (0.3 * _HOUR, 1 * _HOUR)),
    "busy": ((1 * _HOUR, 4 * _HOUR), (0.3 * _HOUR, 1 * _HOUR)),
    "voicemail": ((2 * _HOUR, 6 * _HOUR), (0.5 * _HOUR, 2 * _HOUR)),
    "declined": ((3 * _HOUR, 24 * _HOUR), (1 * _HOUR, 3 * _HOUR)),
    "hung_up": ((4 * _HOUR, 48 * _HOUR), (2 * _HOUR, 24 * _HOUR)),
    "refused": ((24 * _HOUR, 72 * _HOUR), (24 * _HOUR, 72 * _HOUR)),
    "wrong_party": ((24 * _HOUR, 72 * _HOUR), (24 * _HOUR, 72 * _HOUR)),
}
CLOSING_OUTCOMES: Final = frozenset({"completed", "invalid_number"})
# A borrower who rejects the voice bot is handed over to a person for the next attempt (the
# article's "automatic dialling, handed to a human when needed"): a bot redialling someone
# who just hung up on it only collects more hang-ups.
HANDOVER_OUTCOMES: Final = frozenset({"hung_up", "declined", "refused"})
MAX_ATTEMPTS_HUMAN: Final = 6
MAX_ATTEMPTS_ROBOT: Final = 10
# Open cases kept for retries at most; beyond this a failed case is given up instead, so a
# long run at a high rate keeps bounded memory (~700 bytes a case with its borrower).
MAX_OPEN_CASES: Final = 200_000


@dataclasses.dataclass(slots=True)
class Case:
    borrower: Borrower
    campaign: int  # index into model.CAMPAIGNS
    robot: bool
    script: int  # index into model.SCRIPTS
    agent_id: str | None
    skill: float  # the agent's hang-up multiplier, 1.0 for robots
    notified: bool
    attempt: int = 0
    due_ms: int = 0  # when the next attempt is due (while scheduled)
    closed: bool = False


class Dialler:
    def __init__(self, population: Population, rng: random.Random) -> None:
        self._pop = population
        self._rng = rng
        self._campaign_cum = list(itertools.accumulate(c.weight for c in CAMPAIGNS))
        self._human_cum = list(itertools.accumulate(SCRIPTS[i].weight for i in HUMAN_SCRIPTS))
        self._robot_cum = list(itertools.accumulate(SCRIPTS[i].weight for i in ROBOT_SCRIPTS))
        self._due: list[tuple[int, int, Case]] = []  # (due ms, tie-breaker, case)
        self._order = 0
        # (borrower index, campaign) -> its open case: a borrower with an open case in a
        # campaign gets no second one there (attempt_no counts attempts of the one case).
        self._open: dict[tuple[int, int], Case] = {}

    def next_case(self, t_ms: int) -> Case:
        due = self._due
        while due and due[0][0] <= t_ms:
            d, _, case = heapq.heappop(due)
            if case.due_ms == d and not case.closed:  # else stale: called early, or given up
                return case
        return self._new_or_open_case()

    def _new_or_open_case(self) -> Case:
        rng = self._rng
        for _ in range(8):
            i = int(rng.random() * self._pop.size)
            ci = bisect.bisect_right(self._campaign_cum, rng.random() * self._campaign_cum[-1])
            case = self._open.get((i, ci))
            if case is None:
                break
        else:
            # A population so small that every draw hits an open case: call that case early
            # rather than loop (its scheduled retry becomes stale).
            assert case is not None
            case.due_ms = -1
            return case
        b = self._pop.borrower(i)
        # The article recommends notifying first-time borrowers in particular; branches do so more.
        notify = min(0.95, self._pop.notify_rate_by_branch[b.branch_idx] + (0.2 if b.first_time else 0.0))
        case = Case(b, ci, False, 0, None, 1.0, rng.random() < notify)
        if rng.random() < CAMPAIGNS[ci].robot_share:
            case.robot = True
            case.script = ROBOT_SCRIPTS[bisect.bisect_right(self._robot_cum, rng.random() * self._robot_cum[-1])]
        else:
            self._assign_agent(case)
        self._open[(i, ci)] = case
        return case

    def _assign_agent(self, case: Case) -> None:
        rng = self._rng
        case.robot = False
        case.script = HUMAN_SCRIPTS[bisect.bisect_right(self._human_cum, rng.random() * self._human_cum[-1])]
        agents = self._pop.agents_by_branch[case.borrower.branch_idx]
        agent = agents[int(rng.random() * len(agents))]
        case.agent_id, case.skill = agent.agent_id, agent.skill

    def after_call(self, case: Case, outcome: str, t_ms: int) -> None:
        """Close the case or schedule its next attempt."""
        max_attempts = MAX_ATTEMPTS_ROBOT if case.robot else MAX_ATTEMPTS_HUMAN
        if outcome in CLOSING_OUTCOMES or case.attempt >= max_attempts or len(self._open) > MAX_OPEN_CASES:
            case.closed = True
            self._open.pop((case.borrower.idx, case.campaign), None)
            return
        if case.robot and outcome in HANDOVER_OUTCOMES:
            self._assign_agent(case)  # hand-over: a person makes the next attempt
        lo, hi = RETRY_DELAY_S[outcome][case.robot]
        case.due_ms = t_ms + int(self._rng.uniform(lo, hi) * 1000)
        heapq.heappush(self._due, (case.due_ms, self._order, case))
        self._order += 1
