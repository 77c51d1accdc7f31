"""The call outcome model: how likely each outcome, hang-up stage and talk time is, given who
is called, by whom, how, and when. The factors and their directions follow the seed article
(docs/contract.md): distrust of unexpected calls (pre-notification helps), sensitive questions
on income and collateral (worse for first-time borrowers and blunt scripts), bad timing
(lunch, evenings, quiet hours), mechanical robot calls (hung up on at the greeting), and
credit grade. The magnitudes are invented but plausible; what matters is that each effect is
clearly visible in aggregate, so the pipeline's breakdowns have something to show.

Pure: every random draw comes from the RNG passed in."""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import random
from typing import Final

from hangwatch.schemas.call_outcome import HANGUP_STAGES

Stages = tuple[float, float, float, float, float]  # one factor per entry of HANGUP_STAGES


@dataclasses.dataclass(frozen=True, slots=True)
class Campaign:
    name: str
    weight: float  # share of all calls
    robot_share: float  # share of this campaign's calls made by the robot dialler
    stage_mult: Stages


@dataclasses.dataclass(frozen=True, slots=True)
class Script:
    version: str
    robot: bool
    weight: float  # share among the scripts of its channel
    stage_mult: Stages


CAMPAIGNS: Final = (
    # Pre-loan verification asks the most about income and collateral, so it needs humans.
    Campaign("pre_loan_verification", 0.30, 0.15, (1.0, 1.0, 1.3, 1.3, 1.0)),
    Campaign("post_loan_review", 0.35, 0.40, (1.0, 1.0, 1.0, 1.0, 1.0)),
    # A repayment reminder barely touches income or collateral; mostly robot calls.
    Campaign("repayment_reminder", 0.35, 0.75, (1.0, 1.0, 0.2, 0.2, 1.3)),
)
SCRIPTS: Final = (
    Script("v2.3", False, 0.45, (1.0, 1.0, 1.0, 1.0, 1.0)),
    Script("v2.4", False, 0.45, (0.9, 1.0, 0.85, 0.9, 1.0)),
    # The worse one: a pilot script with blunt questions on income proof and collateral.
    Script("v2.5-pilot", False, 0.10, (1.0, 1.2, 2.2, 1.8, 1.0)),
    Script("robot-v5", True, 0.55, (1.0, 1.0, 1.0, 1.0, 1.0)),
    Script("robot-v6", True, 0.45, (0.8, 1.0, 1.0, 1.0, 1.0)),
)
HUMAN_SCRIPTS: Final = tuple(i for i, s in enumerate(SCRIPTS) if not s.robot)
ROBOT_SCRIPTS: Final = tuple(i for i, s in enumerate(SCRIPTS) if s.robot)

# Where, without any aggravating factor, a hang-up happens (sums to 1).
BASE_STAGE_WEIGHTS: Final[Stages] = (0.25, 0.20, 0.25, 0.18, 0.12)
# Borrowers hang up on a voice bot at once; an unannounced caller asking for identity
# details sounds like fraud; first-time borrowers balk at income and collateral questions.
ROBOT_STAGE_MULT: Final[Stages] = (4.0, 1.3, 1.0, 1.0, 1.0)
NOT_NOTIFIED_STAGE_MULT: Final[Stages] = (1.8, 1.4, 1.0, 1.0, 1.0)
FIRST_TIME_STAGE_MULT: Final[Stages] = (1.0, 1.0, 1.9, 1.9, 1.0)

HANGUP_BASE: Final = 0.10  # a repeat borrower, notified, human call, good script, good hour
NOTIFIED_HANGUP_MULT: Final = 0.85  # beyond the greeting effect: the borrower expects the call
REFUSER_HANGUP_MULT: Final = 3.0
MAX_HANGUP: Final = 0.92  # hung_up + refused + wrong_party never exceeds this

# Local hour of day (Asia/Shanghai) -> factor. Quiet hours (22-08) are the worst by far;
# lunch and evening are bad; mid-morning and afternoon are best.
_QUIET, _MORNING, _BEST, _LUNCH, _AFTERNOON, _EVENING = range(6)
_HOUR_KIND: Final = (
    [_QUIET] * 8 + [_MORNING] + [_BEST] * 3 + [_LUNCH] * 2 + [_AFTERNOON] * 4 + [_EVENING] * 4 + [_QUIET] * 2
)
HOUR_HANGUP: Final = tuple((2.0, 1.05, 0.9, 1.35, 0.95, 1.45)[k] for k in _HOUR_KIND)
HOUR_DECLINE: Final = tuple((2.2, 1.0, 0.9, 1.3, 0.95, 1.4)[k] for k in _HOUR_KIND)
HOUR_NO_ANSWER: Final = tuple((1.6, 1.1, 0.9, 1.3, 1.0, 0.9)[k] for k in _HOUR_KIND)
HOUR_BUSY: Final = tuple((0.5, 1.0, 1.0, 1.8, 1.0, 1.2)[k] for k in _HOUR_KIND)

GRADE_HANGUP: Final = {"AAA": 0.65, "AA": 0.8, "A": 0.95, "B": 1.1, "C": 1.4, "unrated": 1.25}
GRADE_REFUSE: Final = {"AAA": 0.5, "AA": 0.7, "A": 0.9, "B": 1.2, "C": 1.8, "unrated": 1.3}
GRADE_DECLINE: Final = {"AAA": 0.8, "AA": 0.9, "A": 1.0, "B": 1.1, "C": 1.3, "unrated": 1.2}

# Talk time of hang-ups by stage: (min, max) seconds; later stages mean a longer call.
STAGE_DURATION_S: Final = ((1.0, 12.0), (8.0, 45.0), (30.0, 120.0), (60.0, 200.0), (150.0, 320.0))
_LN_HUMAN_COMPLETED: Final = math.log(210.0)  # median talk time of a finished human call
_LN_ROBOT_COMPLETED: Final = math.log(85.0)


# (outcome, hangup_stage, duration_s); a plain tuple because this is built once per call.
Outcome = tuple[str, str | None, float]
_INVALID: Final[Outcome] = ("invalid_number", None, 0.0)
_DECLINED: Final[Outcome] = ("declined", None, 0.0)
_NO_ANSWER: Final[Outcome] = ("no_answer", None, 0.0)
_BUSY: Final[Outcome] = ("busy", None, 0.0)
_VOICEMAIL: Final[Outcome] = ("voicemail", None, 0.0)


class CallModel:
    """Draws the outcome of one call. Holds only a cache of stage profiles."""

    def __init__(self) -> None:
        # (robot, notified, first_time, script, campaign) -> (sum of stage weights, cumulative weights)
        self._profiles: dict[tuple[bool, bool, bool, int, int], tuple[float, list[float]]] = {}

    def stage_profile(self, robot: bool, notified: bool, first_time: bool, script: int,
                      campaign: int) -> tuple[float, list[float]]:
        """Hang-up weight per stage. Its sum scales the hang-up probability, so a factor that
        makes one stage riskier (a robot's greeting, a first-timer's income check) raises the
        overall rate and shifts the stage mix at the same time."""
        k = (robot, notified, first_time, script, campaign)
        prof = self._profiles.get(k)
        if prof is None:
            w = list(BASE_STAGE_WEIGHTS)
            mults = [SCRIPTS[script].stage_mult, CAMPAIGNS[campaign].stage_mult]
            if robot:
                mults.append(ROBOT_STAGE_MULT)
            if not notified:
                mults.append(NOT_NOTIFIED_STAGE_MULT)
            if first_time:
                mults.append(FIRST_TIME_STAGE_MULT)
            for m in mults:
                w = [a * b for a, b in zip(w, m, strict=True)]
            prof = self._profiles[k] = (sum(w), list(itertools.accumulate(w)))
        return prof

    def hangup_probability(self, hour: int, robot: bool, notified: bool, first_time: bool, grade: str,
                           refuser: bool, script: int, campaign: int, skill: float = 1.0,
                           spike: float = 1.0) -> float:
        """P(hung_up | connected) before the cap that leaves room for refusals."""
        total, _ = self.stage_profile(robot, notified, first_time, script, campaign)
        p = HANGUP_BASE * total * HOUR_HANGUP[hour] * GRADE_HANGUP[grade] * skill * spike
        if notified:
            p *= NOTIFIED_HANGUP_MULT
        if refuser:
            p *= REFUSER_HANGUP_MULT
        return p

    def draw(self, rng: random.Random, hour: int, robot: bool, notified: bool, first_time: bool, grade: str,
             refuser: bool, script: int, campaign: int, skill: float, spike: float) -> Outcome:
        """Positional arguments only in the hot path: keyword calls cost a microsecond here."""
        # 1) Does the borrower pick up? Declining (拒接) is driven by distrust: unannounced
        #    calls, robot diallers' unknown numbers, bad hours, and the repeat refusers.
        p_decline = 0.08 * HOUR_DECLINE[hour] * GRADE_DECLINE[grade]
        if robot:
            p_decline *= 1.6
        if notified:
            p_decline *= 0.55
        if refuser:
            p_decline *= 5.0
        p_decline = min(p_decline, 0.6)
        p_no_answer = 0.15 * HOUR_NO_ANSWER[hour] * (0.8 if notified else 1.0)
        u = rng.random()
        if u < 0.01:
            return _INVALID
        u -= 0.01
        if u < p_decline:
            return _DECLINED
        u -= p_decline
        if u < p_no_answer:
            return _NO_ANSWER
        u -= p_no_answer
        p_busy = 0.04 * HOUR_BUSY[hour]
        if u < p_busy:
            return _BUSY
        if u - p_busy < 0.03:
            return _VOICEMAIL

        # 2) Connected: wrong party, refusal, hang-up at some stage, or a finished call.
        p_wrong = 0.01 if refuser else 0.03
        p_refused = 0.35 if refuser else min(0.3, 0.035 * GRADE_REFUSE[grade] * (0.7 if notified else 1.0))
        u = rng.random()
        if u < p_wrong:
            return "wrong_party", None, round(rng.uniform(4.0, 30.0), 1)
        u -= p_wrong
        if u < p_refused:
            return "refused", None, round(rng.uniform(10.0, 90.0), 1)
        u -= p_refused
        p_hang = self.hangup_probability(hour, robot, notified, first_time, grade, refuser, script, campaign, skill,
                                         spike)
        if u < min(MAX_HANGUP - p_wrong - p_refused, p_hang):
            total, cum = self.stage_profile(robot, notified, first_time, script, campaign)
            i = min(bisect.bisect_right(cum, rng.random() * total), len(cum) - 1)
            lo, hi = STAGE_DURATION_S[i]
            d = rng.uniform(lo, hi) * (0.7 if robot else 1.0)  # a bot's turns are shorter
            return "hung_up", HANGUP_STAGES[i], round(d, 1)
        mu = _LN_ROBOT_COMPLETED if robot else _LN_HUMAN_COMPLETED
        if campaign == 0:
            mu += 0.18  # verification before the loan has the most questions (~1.2x longer)
        return "completed", None, round(rng.lognormvariate(mu, 0.35), 1)
