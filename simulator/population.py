"""The people on both ends of the line: borrowers (pseudonymous, with a loan, a branch, a
credit grade) and agents per branch. Built once per run from its own seeded RNG, so the
population does not change when the call model does."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from typing import Final

from simulator.config import SimConfig

# Shares of the credit grades among borrowers (schemas.call_outcome.CREDIT_GRADES).
GRADE_WEIGHTS: Final = {"AAA": 0.10, "AA": 0.20, "A": 0.30, "B": 0.20, "C": 0.08, "unrated": 0.12}
FIRST_TIME_SHARE: Final = 0.4
# Repeat refusers are dialled again and again (every failed call leads to a retry), so they
# are drawn this many times as often as other borrowers.
REFUSER_CALL_WEIGHT: Final = 3


@dataclasses.dataclass(frozen=True, slots=True)
class Borrower:
    borrower_id: str  # "b-<10 hex>": pseudonymous, never a phone number or national ID
    loan_id: str
    branch_idx: int
    credit_grade: str
    first_time: bool
    refuser: bool
    key: bytes  # borrower_id as the Kafka message key, encoded once


@dataclasses.dataclass(frozen=True, slots=True)
class Agent:
    agent_id: str
    branch_idx: int
    # Multiplies the hang-up probability of this agent's calls: tone and experience differ.
    skill: float


@dataclasses.dataclass(frozen=True, slots=True)
class Population:
    borrowers: tuple[Borrower, ...]
    agents_by_branch: tuple[tuple[Agent, ...], ...]
    # Share of each branch's calls whose borrower was notified by SMS/e-mail beforehand:
    # branches differ in how well they follow that practice.
    notify_rate_by_branch: tuple[float, ...]
    # Borrower indexes to draw a callee from uniformly; refusers appear several times.
    call_pool: tuple[int, ...]


def build_population(cfg: SimConfig) -> Population:
    rng = random.Random(f"hangwatch-sim/{cfg.seed}/population")
    n_branches = len(cfg.branches)
    grades = list(GRADE_WEIGHTS)
    grade_cum = list(itertools.accumulate(GRADE_WEIGHTS.values()))

    borrowers: list[Borrower] = []
    seen: set[str] = set()
    n_refusers = round(cfg.borrowers * cfg.refuser_share)
    for i in range(cfg.borrowers):
        bid = f"b-{rng.getrandbits(40):010x}"
        while bid in seen:  # 40 bits: collisions are rare but must not merge two borrowers
            bid = f"b-{rng.getrandbits(40):010x}"
        seen.add(bid)
        # Refusers are spread over the list by index, not clustered at its head.
        refuser = n_refusers > 0 and (i * n_refusers) // cfg.borrowers != ((i + 1) * n_refusers) // cfg.borrowers
        grade = rng.choices(grades, cum_weights=grade_cum)[0]
        if refuser and grade in ("AAA", "AA"):
            grade = "B"  # people who dodge every call rarely keep a top grade
        borrowers.append(Borrower(
            borrower_id=bid,
            loan_id=f"loan-{100_000 + i}",
            branch_idx=rng.randrange(n_branches),
            credit_grade=grade,
            first_time=rng.random() < FIRST_TIME_SHARE,
            refuser=refuser,
            key=bid.encode(),
        ))

    agents_by_branch = []
    for b in range(n_branches):
        agents = []
        for a in range(cfg.agents_per_branch):
            skill = min(1.4, max(0.7, math.exp(rng.gauss(0.0, 0.15))))
            agents.append(Agent(f"agent-{b * cfg.agents_per_branch + a + 1:03d}", b, round(skill, 3)))
        agents_by_branch.append(tuple(agents))

    notify = tuple(round(rng.uniform(0.3, 0.7), 3) for _ in range(n_branches))
    pool = [i for i, br in enumerate(borrowers) for _ in range(REFUSER_CALL_WEIGHT if br.refuser else 1)]
    return Population(tuple(borrowers), tuple(agents_by_branch), notify, tuple(pool))

