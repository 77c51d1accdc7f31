"""The people on both ends of the line: borrowers (pseudonymous, with a loan, a branch, a
credit grade) and agents per branch.

Borrowers are not stored: borrower i is derived from (seed, i) by a keyed hash whenever it is
called, so a population of tens of millions costs no memory. That matters for realism: a
borrower should be called about once a month, not dozens of times a day, or every borrower
would trip the repeated-refusal and call-frequency rules. Ids come from a bijection of i, so
they never collide."""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import itertools
import math
import random
from typing import Final, NamedTuple

from hangwatch.simulator.config import SimConfig

# Shares of the credit grades among borrowers (schemas.call_outcome.CREDIT_GRADES).
GRADE_WEIGHTS: Final = {"AAA": 0.10, "AA": 0.20, "A": 0.30, "B": 0.20, "C": 0.08, "unrated": 0.12}
FIRST_TIME_SHARE: Final = 0.4
ID_BITS: Final = 40  # borrower ids are "b-" and 10 hex digits
_MASK: Final = (1 << ID_BITS) - 1
_GRADES: Final = tuple(GRADE_WEIGHTS)
_GRADE_CUM: Final = tuple(itertools.accumulate(GRADE_WEIGHTS.values()))


class Borrower(NamedTuple):  # a tuple: built on every new case, and twice as fast as a dataclass
    idx: int  # position in the population
    borrower_id: str  # "b-<10 hex>": pseudonymous, never a phone number or national ID
    loan_id: str
    branch_idx: int
    credit_grade: str
    first_time: bool
    refuser: bool  # mostly hangs up, refuses or declines
    key: bytes  # borrower_id as the Kafka message key, encoded once


@dataclasses.dataclass(frozen=True, slots=True)
class Agent:
    agent_id: str
    branch_idx: int
    # Multiplies the hang-up probability of this agent's calls: tone and experience differ.
    skill: float


class Population:
    def __init__(self, cfg: SimConfig) -> None:
        self.size = cfg.population_size
        self._n_branches = len(cfg.branches)
        self._refuser_share = cfg.refuser_share
        seed_bytes = hashlib.blake2b(f"hangwatch-sim/{cfg.seed}/population".encode(), digest_size=32).digest()
        self._hash_key = int.from_bytes(seed_bytes[:8], "little")
        # Keyed 40-bit permutation of the index: add, multiply by an odd number and xor-shift
        # are each invertible modulo 2^40, so distinct borrowers get distinct ids.
        self._add = int.from_bytes(seed_bytes[16:21], "little") & _MASK
        self._mul = (int.from_bytes(seed_bytes[21:26], "little") | 1) & _MASK
        rng = random.Random(f"hangwatch-sim/{cfg.seed}/staff")
        agents = []
        for b in range(self._n_branches):
            agents.append(tuple(
                Agent(f"agent-{b * cfg.agents_per_branch + a + 1:03d}", b,
                      round(min(1.4, max(0.7, math.exp(rng.gauss(0.0, 0.15)))), 3))
                for a in range(cfg.agents_per_branch)))
        self.agents_by_branch: tuple[tuple[Agent, ...], ...] = tuple(agents)
        # Share of each branch's cases whose borrower is notified by SMS/e-mail before the first
        # call: branches differ in how well they follow that practice.
        self.notify_rate_by_branch: tuple[float, ...] = tuple(
            round(rng.uniform(0.3, 0.7), 3) for _ in range(self._n_branches))

    def borrower_id(self, i: int) -> str:
        x = (i + self._add) & _MASK
        x = (x * self._mul) & _MASK
        x ^= x >> 19
        x = (x * 0x9E3779B97F) & _MASK  # an odd constant: still a bijection
        x ^= x >> 21
        return f"b-{x:010x}"

    def borrower(self, i: int) -> Borrower:
        h = _splitmix64(i ^ self._hash_key)
        branch = h % self._n_branches
        grade = _GRADES[min(bisect.bisect_right(_GRADE_CUM, ((h >> 8) & 0xFFFF) / 65536 * _GRADE_CUM[-1]), 5)]
        first_time = ((h >> 24) & 0xFFFF) < FIRST_TIME_SHARE * 65536
        refuser = ((h >> 40) & 0xFFFFFF) < self._refuser_share * 0x1000000
        if refuser and grade in ("AAA", "AA"):
            grade = "B"  # people who dodge every call rarely keep a top grade
        bid = self.borrower_id(i)
        return Borrower(i, bid, f"loan-{i + 100_000:08d}", branch, grade, first_time, refuser, bid.encode())


def _splitmix64(x: int) -> int:
    """A fast, well-mixed 64-bit hash (the SplitMix64 finaliser): independent-looking bits
    for consecutive indexes."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)

