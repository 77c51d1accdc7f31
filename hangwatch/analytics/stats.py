"""Comparing hang-up, decline and contact rates between groups and periods, and finding the
best time to call. Pure, typed functions over counts (no I/O, no third-party imports); the
query layer counts, these functions judge.

Rates are proportions k / n: hang-up rate = hung_up / connected, decline rate = declined /
attempts, contact rate = connected / attempts (docs/contract.md, Metrics). Group "a" is the
reference (before, old script, not pre-notified, robot...), group "b" the one being judged;
every difference is b - a and every odds ratio is odds(b) / odds(a).

Calls of one borrower are not independent. A borrower who hangs up on the first call tends to
hang up on the retry, so n calls of m borrowers carry less information than n independent
calls, and a test that treats them as independent is too confident. Two ways to handle it,
both supported here:

- **Borrower-level counting** (preferred where the query can do it): count each borrower once
  per group and period (n = borrowers called, k = borrowers who hung up at least once). The
  units are then independent to a good approximation (a borrower belongs to one branch, one
  case, one script at a time), and every function below applies as is.
- **Design effect** (when only call counts are at hand): Kish's approximation
  deff = 1 + (m̄ - 1) × ICC, with m̄ the mean calls per borrower and ICC the intra-borrower
  correlation of the outcome (`design_effect`, `icc_anova` estimates it from per-borrower
  counts). Every function taking `design_effect` divides both counts by it (the effective
  sample size), which widens intervals, raises p-values and multiplies sample sizes by deff.
  It is an approximation: it assumes one common correlation and similar cluster sizes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from statistics import NormalDist
from typing import Final

_N: Final = NormalDist()
WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be within (0, 1); got {confidence}")
    return _N.inv_cdf(0.5 + confidence / 2.0)


def _check(k: float, n: float) -> None:
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= successes <= n; got {k} of {n}")


def _effective(k: int, n: int, design_effect: float) -> tuple[float, float]:
    _check(k, n)
    if design_effect < 1.0:
        raise ValueError(f"design effect must be >= 1; got {design_effect}")
    return k / design_effect, n / design_effect


def wilson_interval(k: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of k / n; (0, 1) when n == 0. Accepts effective (fractional) counts."""
    _check(k, n)
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    return (0.0 if k == 0 else max(0.0, center - half)), (1.0 if k == n else min(1.0, center + half))


def two_proportion_z_test(k_a: float, n_a: float, k_b: float, n_b: float) -> tuple[float, float]:
    """(z, two-sided p-value) of the pooled two-proportion z test of p_b = p_a (no continuity
    correction; z > 0 when b is higher). (0.0, 1.0) when the pooled rate is 0 or 1."""
    _check(k_a, n_a)
    _check(k_b, n_b)
    if n_a == 0 or n_b == 0:
        return 0.0, 1.0
    pooled = (k_a + k_b) / (n_a + n_b)
    var = pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b)
    if var <= 0.0:
        return 0.0, 1.0
    z = (k_b / n_b - k_a / n_a) / math.sqrt(var)
    return z, 2.0 * _N.cdf(-abs(z))


def newcombe_interval(k_a: float, n_a: float, k_b: float, n_b: float,
                      confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (1998, method 10) for p_b - p_a, from the two Wilson
    intervals; good coverage even for small counts and rates near 0 or 1."""
    pa, pb = (k_a / n_a if n_a else 0.0), (k_b / n_b if n_b else 0.0)
    la, ua = wilson_interval(k_a, n_a, confidence)
    lb, ub = wilson_interval(k_b, n_b, confidence)
    d = pb - pa
    return (d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2), d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2))


@dataclasses.dataclass(frozen=True, slots=True)
class ProportionComparison:
    """Group a (reference) against group b for one rate."""

    successes_a: int
    n_a: int
    successes_b: int
    n_b: int
    rate_a: float | None  # None when n is 0
    rate_b: float | None
    difference: float | None  # rate_b - rate_a
    ci_low: float | None  # Newcombe interval of the difference
    ci_high: float | None
    z: float
    p_value: float  # two-sided, pooled two-proportion z test
    confidence: float
    design_effect: float

    @property
    def significant(self) -> bool:
        return self.p_value < 1.0 - self.confidence


def compare_proportions(k_a: int, n_a: int, k_b: int, n_b: int, *, confidence: float = 0.95,
                        design_effect: float = 1.0) -> ProportionComparison:
    """Counts, rates, difference b - a with its Newcombe interval and the two-sided p-value of
    the two-proportion z test. With design_effect > 1 the interval and the test use the
    effective counts k / deff, n / deff (module docstring); the rates are unchanged."""
    ea_k, ea_n = _effective(k_a, n_a, design_effect)
    eb_k, eb_n = _effective(k_b, n_b, design_effect)
    ra = k_a / n_a if n_a else None
    rb = k_b / n_b if n_b else None
    diff = lo = hi = None
    if ra is not None and rb is not None:
        diff = rb - ra
        lo, hi = newcombe_interval(ea_k, ea_n, eb_k, eb_n, confidence)
    z, p = two_proportion_z_test(ea_k, ea_n, eb_k, eb_n)
    return ProportionComparison(k_a, n_a, k_b, n_b, ra, rb, diff, lo, hi, z, p, confidence, design_effect)


def sample_size_per_group(base_rate: float, *, absolute_change: float | None = None,
                          relative_change: float | None = None, alpha: float = 0.05, power: float = 0.8,
                          design_effect: float = 1.0) -> int:
    """Units per group (equal groups) for a two-sided two-proportion z test at `alpha` to
    detect base_rate -> base_rate + change with probability `power` (Fleiss, without continuity
    correction): n = (z_{1-α/2} √(2 p̄ q̄) + z_{power} √(p1 q1 + p2 q2))² / (p2 - p1)², times the
    design effect, rounded up. Give exactly one of absolute_change (e.g. -0.03: 3 points fewer
    hang-ups) and relative_change (e.g. -0.2: a fifth fewer)."""
    if (absolute_change is None) == (relative_change is None):
        raise ValueError("give exactly one of absolute_change and relative_change")
    if not 0.0 < base_rate < 1.0:
        raise ValueError(f"base rate must be within (0, 1); got {base_rate}")
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError("alpha and power must be within (0, 1)")
    if design_effect < 1.0:
        raise ValueError(f"design effect must be >= 1; got {design_effect}")
    p1 = base_rate
    p2 = p1 + absolute_change if absolute_change is not None else p1 * (1.0 + (relative_change or 0.0))
    if not 0.0 < p2 < 1.0 or p2 == p1:
        raise ValueError(f"the changed rate must be within (0, 1) and differ from the base; got {p2}")
    pbar = (p1 + p2) / 2.0
    za, zb = _N.inv_cdf(1.0 - alpha / 2.0), _N.inv_cdf(power)
    root = za * math.sqrt(2.0 * pbar * (1.0 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    n = root**2 / (p2 - p1) ** 2
    return math.ceil(n * design_effect - 1e-9)


def design_effect(mean_calls_per_borrower: float, icc: float) -> float:
    """Kish's design effect 1 + (m̄ - 1) × ICC for calls clustered in borrowers (>= 1)."""
    if mean_calls_per_borrower < 1.0:
        raise ValueError("mean calls per borrower must be >= 1")
    return max(1.0, 1.0 + (mean_calls_per_borrower - 1.0) * icc)


def icc_anova(clusters: Sequence[tuple[int, int]]) -> float:
    """ANOVA estimate of the intra-cluster correlation of a binary outcome from per-cluster
    (successes, size), e.g. per borrower (hang-ups, connected calls): (MSB - MSW) / (MSB +
    (m0 - 1) MSW), m0 = (N - Σ m_i² / N) / (k - 1). May be negative (then no clustering)."""
    cl = [(k, m) for k, m in clusters if m > 0]
    for k, m in cl:
        _check(k, m)
    return icc_from_sums(ClusterSums(len(cl), sum(m for _, m in cl), sum(k for k, _ in cl),
                                     sum(k * k / m for k, m in cl), sum(m * m for _, m in cl)))


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterSums:
    """What icc_anova needs of the clusters (those with at least one unit), as a query can sum
    them: g clusters, n = Σ m_i units, y = Σ k_i successes, between = Σ k_i² / m_i, m2 = Σ m_i²."""

    g: int
    n: int
    y: int
    between: float
    m2: int

    @property
    def mean_size(self) -> float:
        """The size-weighted mean cluster size Σ m_i² / Σ m_i: the m̄ of Kish's design effect
        for clusters of unequal size (a unit's expected cluster size; >= the plain mean)."""
        return self.m2 / self.n if self.n else 1.0


def icc_from_sums(s: ClusterSums) -> float:
    """icc_anova from the clusters' sums (ClusterSums)."""
    if s.g < 2 or s.n <= s.g:
        raise ValueError("need at least two clusters and more units than clusters")
    msb = (s.between - s.y * s.y / s.n) / (s.g - 1)
    msw = (s.y - s.between) / (s.n - s.g)
    m0 = (s.n - s.m2 / s.n) / (s.g - 1)
    denom = msb + (m0 - 1.0) * msw
    return (msb - msw) / denom if denom > 0 else 0.0


def estimated_design_effect(s: ClusterSums) -> float:
    """Kish's design effect for one rate from its clusters' sums: 1 + (m̄ - 1) × ICC with m̄ the
    size-weighted mean cluster size and the ANOVA ICC (negative ICC: 1). 1.0 when there are too
    few clusters or units to estimate the correlation (every borrower called once: independent)."""
    if s.g < 2 or s.n <= s.g:
        return 1.0
    return design_effect(max(1.0, s.mean_size), icc_from_sums(s))


# --- stratified comparison (Cochran-Mantel-Haenszel) ---------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Stratum:
    """One stratum (e.g. credit grade × campaign): successes and units of groups a and b."""

    name: str
    k_a: int
    n_a: int
    k_b: int
    n_b: int


@dataclasses.dataclass(frozen=True, slots=True)
class StratifiedComparison:
    strata_used: int  # strata with both groups present (the others carry no information)
    odds_ratio: float | None  # Mantel-Haenszel pooled odds(b) / odds(a)
    or_ci_low: float | None  # Robins-Breslow-Greenland interval
    or_ci_high: float | None
    risk_difference: float | None  # Mantel-Haenszel pooled p_b - p_a, weights n_a n_b / N
    rd_ci_low: float | None
    rd_ci_high: float | None
    chi2: float  # CMH statistic, 1 degree of freedom, no continuity correction
    p_value: float
    confidence: float


def cmh(strata: Iterable[Stratum], *, confidence: float = 0.95, design_effect: float = 1.0) -> StratifiedComparison:
    """Cochran-Mantel-Haenszel: the a/b difference within strata, pooled, so that a change in
    the mix of strata between the groups (more AAA borrowers after a rollout) is not mistaken
    for an effect. Pooled odds ratio with the Robins-Breslow-Greenland interval, pooled risk
    difference (weights n_a n_b / N, variance Σ w² var_i / (Σ w)²), and the CMH chi-square test
    of no association. design_effect divides every count (module docstring)."""
    z = _z(confidence)
    r_sum = s_sum = pr = ps_qr = qs = 0.0
    num = expect = var = 0.0
    w_sum = wd = wv = 0.0
    used = 0
    for st in strata:
        kb, nb = _effective(st.k_b, st.n_b, design_effect)
        ka, na = _effective(st.k_a, st.n_a, design_effect)
        n = na + nb
        if na == 0 or nb == 0:
            continue
        used += 1
        # 2x2 table: rows b (exposed) and a; columns success, failure.
        a, b, c, d = kb, nb - kb, ka, na - ka
        r, s = a * d / n, b * c / n
        p, q = (a + d) / n, (b + c) / n
        r_sum += r
        s_sum += s
        pr += p * r
        ps_qr += p * s + q * r
        qs += q * s
        m1 = a + c  # successes
        num += a
        expect += nb * m1 / n
        if n > 1:
            var += na * nb * m1 * (n - m1) / (n * n * (n - 1))
        w = na * nb / n
        pb_, pa_ = kb / nb, ka / na
        w_sum += w
        wd += w * (pb_ - pa_)
        wv += w * w * (pb_ * (1 - pb_) / nb + pa_ * (1 - pa_) / na)
    odds = lo = hi = rd = rlo = rhi = None
    if r_sum > 0 and s_sum > 0:
        odds = r_sum / s_sum
        se = math.sqrt(pr / (2 * r_sum**2) + ps_qr / (2 * r_sum * s_sum) + qs / (2 * s_sum**2))
        lo, hi = math.exp(math.log(odds) - z * se), math.exp(math.log(odds) + z * se)
    if w_sum > 0:
        rd = wd / w_sum
        se_rd = math.sqrt(wv) / w_sum
        rlo, rhi = rd - z * se_rd, rd + z * se_rd
    chi2 = (num - expect) ** 2 / var if var > 0 else 0.0
    return StratifiedComparison(used, odds, lo, hi, rd, rlo, rhi, chi2, chi2_sf(chi2, 1), confidence)


# --- mix shift -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class MixShift:
    shares_before: dict[str, float]
    shares_after: dict[str, float]
    chi2: float  # Pearson chi-square of the 2 x k table periods × strata
    dof: int
    p_value: float
    largest_change: tuple[str, float]  # the stratum whose share moved most, and by how much (after - before)
    shifted: bool  # p_value < alpha AND the largest share change >= min_share_change


def mix_shift(before: Mapping[str, int], after: Mapping[str, int], *, alpha: float = 0.01,
              min_share_change: float = 0.02) -> MixShift:
    """Did the strata proportions (e.g. credit grade × campaign) differ between two periods?
    Pearson chi-square test of homogeneity of the 2 × k table; strata empty in both periods are
    left out. The warning needs a practical size too (min_share_change, in share points), or
    every large data set would warn on a shift of no consequence."""
    keys = sorted(k for k in set(before) | set(after) if before.get(k, 0) + after.get(k, 0) > 0)
    nb, na = sum(before.get(k, 0) for k in keys), sum(after.get(k, 0) for k in keys)
    if any(v < 0 for v in (*before.values(), *after.values())):
        raise ValueError("counts must be >= 0")
    sb = {k: before.get(k, 0) / nb if nb else 0.0 for k in keys}
    sa = {k: after.get(k, 0) / na if na else 0.0 for k in keys}
    chi2 = 0.0
    if nb and na and len(keys) > 1:
        total = nb + na
        for k in keys:
            col = before.get(k, 0) + after.get(k, 0)
            for obs, row in ((before.get(k, 0), nb), (after.get(k, 0), na)):
                e = row * col / total
                chi2 += (obs - e) ** 2 / e
    dof = max(0, len(keys) - 1)
    p = chi2_sf(chi2, dof) if dof and nb and na else 1.0
    largest = max(((k, sa[k] - sb[k]) for k in keys), key=lambda kv: abs(kv[1]), default=("", 0.0))
    return MixShift(sb, sa, chi2, dof, p, largest, p < alpha and abs(largest[1]) >= min_share_change)


def chi2_sf(x: float, dof: int) -> float:
    """P(X >= x) for a chi-square variable with dof degrees of freedom (the regularized upper
    incomplete gamma Q(dof/2, x/2): series below a + 1, Lentz's continued fraction above)."""
    if dof <= 0:
        raise ValueError("dof must be >= 1")
    if x <= 0:
        return 1.0
    a, t = dof / 2.0, x / 2.0
    log_pre = a * math.log(t) - t - math.lgamma(a)
    if t < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1.0
            term *= t / ap
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1.0 - total * math.exp(log_pre))
    tiny = 1e-300
    b = t + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return min(1.0, math.exp(log_pre) * h)


# --- best time to call ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SlotCounts:
    """Calls placed in one local weekday (0 = Monday) × hour (0-23) slot of a segment."""

    weekday: int
    hour: int
    attempts: int
    connected: int
    hung_up: int


@dataclasses.dataclass(frozen=True, slots=True)
class SlotRates:
    weekday: int
    hour: int
    attempts: int
    connected: int
    hung_up: int
    contact_rate: float | None  # connected / attempts
    hangup_rate: float | None  # hung_up / connected
    reach_rate: float | None  # (connected - hung_up) / attempts: a call that reaches and keeps the borrower
    reach_low: float  # Wilson lower bound of reach_rate: the ranking key
    sufficient: bool  # attempts >= min_attempts and connected >= min_connected

    @property
    def label(self) -> str:
        return f"{WEEKDAYS[self.weekday]} {self.hour:02d}:00-{(self.hour + 1) % 24:02d}:00"


@dataclasses.dataclass(frozen=True, slots=True)
class BestTimes:
    slots: list[SlotRates]  # every slot with calls, weekday then hour order
    recommended: list[SlotRates]  # the best sufficient slots, best first
    min_attempts: int
    min_connected: int
    insufficient: int  # slots with calls but too few to judge


def best_times(cells: Iterable[SlotCounts], *, min_attempts: int = 200, min_connected: int = 50, top: int = 3,
               confidence: float = 0.95) -> BestTimes:
    """Contact and hang-up rate per local weekday × hour, and the slots to call in.

    A slot is judged only with at least `min_attempts` attempts and `min_connected` connected
    calls (the minimum-samples rule: with 200 attempts a 95 % interval of a rate near 50 % is
    about ±7 points). Sufficient slots are ranked by the Wilson lower bound of the reach rate
    (connected and not hung up, per attempt), so a slot with few calls and a lucky rate does
    not beat a well-measured one; the first `top` are recommended (ties: earlier weekday and
    hour first). Counts of the same (weekday, hour) are summed. Borrower dependence: see the module
    docstring (count first attempts per borrower, or raise min_attempts by the design effect)."""
    if min_attempts < 1 or min_connected < 0 or top < 0:
        raise ValueError("need min_attempts >= 1, min_connected >= 0, top >= 0")
    summed: dict[tuple[int, int], list[int]] = {}
    for c in cells:
        if not (0 <= c.weekday < 7 and 0 <= c.hour < 24):
            raise ValueError(f"bad slot {c.weekday}/{c.hour}")
        if not (0 <= c.hung_up <= c.connected <= c.attempts):
            raise ValueError(f"need 0 <= hung_up <= connected <= attempts; got {c}")
        acc = summed.setdefault((c.weekday, c.hour), [0, 0, 0])
        acc[0] += c.attempts
        acc[1] += c.connected
        acc[2] += c.hung_up
    slots = []
    for (wd, hour), (att, con, hung) in sorted(summed.items()):
        if att == 0:
            continue
        reach = con - hung
        ok = att >= min_attempts and con >= min_connected
        slots.append(SlotRates(wd, hour, att, con, hung, con / att, hung / con if con else None, reach / att,
                               wilson_interval(reach, att, confidence)[0], ok))
    ranked = sorted((s for s in slots if s.sufficient), key=lambda s: (-s.reach_low, s.weekday, s.hour))
    return BestTimes(slots, ranked[:top], min_attempts, min_connected, sum(1 for s in slots if not s.sufficient))
