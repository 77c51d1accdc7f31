"""hangwatch.analytics.stats against plain reference computations (scipy / statsmodels, used in
tests only) and hand-computed textbook figures."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats import proportion as smp
from statsmodels.stats.contingency_tables import StratifiedTable

from hangwatch.analytics.stats import (
    ClusterSums,
    SlotCounts,
    Stratum,
    best_times,
    chi2_sf,
    cmh,
    compare_proportions,
    design_effect,
    estimated_design_effect,
    icc_anova,
    icc_from_sums,
    mix_shift,
    newcombe_interval,
    sample_size_per_group,
    two_proportion_z_test,
    wilson_interval,
)

CASES = [(81, 263, 95, 240), (5, 56, 15, 64), (0, 40, 3, 38), (300, 1000, 270, 1000), (12, 12, 9, 15)]


@pytest.mark.parametrize(("ka", "na", "kb", "nb"), CASES)
def test_compare_against_statsmodels(ka: int, na: int, kb: int, nb: int) -> None:
    r = compare_proportions(ka, na, kb, nb)
    assert r.rate_a == ka / na and r.rate_b == kb / nb and r.difference == pytest.approx(kb / nb - ka / na)
    z, p = smp.proportions_ztest([kb, ka], [nb, na])  # pooled variance, no continuity correction
    assert r.z == pytest.approx(z, rel=1e-9) and r.p_value == pytest.approx(p, rel=1e-9)
    lo, hi = smp.confint_proportions_2indep(kb, nb, ka, na, method="newcomb", compare="diff")
    assert (r.ci_low, r.ci_high) == pytest.approx((lo, hi), abs=1e-9)
    for k, n in ((ka, na), (kb, nb)):
        assert wilson_interval(k, n) == pytest.approx(smp.proportion_confint(k, n, method="wilson"), abs=1e-12)


def test_newcombe_textbook_example() -> None:
    # Newcombe (1998), Stat Med 17:873, table II example (a): 56/70 - 48/80, method 10: 0.0524 to 0.3339.
    assert newcombe_interval(48, 80, 56, 70) == pytest.approx((0.0524, 0.3339), abs=5e-5)


def test_z_test_hand_computed() -> None:
    # 30/100 vs 45/100: pooled 0.375, se = sqrt(0.375 * 0.625 * 0.02) = 0.068465, z = 2.1909.
    z, p = two_proportion_z_test(30, 100, 45, 100)
    assert z == pytest.approx(0.15 / math.sqrt(0.375 * 0.625 * 0.02)) and z == pytest.approx(2.1909, abs=1e-4)
    assert p == pytest.approx(2 * sps.norm.sf(z))
    assert two_proportion_z_test(0, 10, 0, 10) == (0.0, 1.0)


def test_design_effect_widens_and_weakens() -> None:
    plain = compare_proportions(300, 1000, 360, 1000)
    clustered = compare_proportions(300, 1000, 360, 1000, design_effect=2.0)
    same = compare_proportions(150, 500, 180, 500)  # the effective counts
    assert clustered.rate_a == plain.rate_a and clustered.difference == plain.difference
    assert clustered.p_value == pytest.approx(same.p_value) and clustered.p_value > plain.p_value
    assert (clustered.ci_low, clustered.ci_high) == pytest.approx((same.ci_low, same.ci_high))
    assert plain.significant and not compare_proportions(30, 100, 36, 100).significant
    assert design_effect(3.0, 0.25) == 1.5 and design_effect(1.0, 0.9) == 1.0
    with pytest.raises(ValueError):
        compare_proportions(5, 10, 5, 10, design_effect=0.5)


def test_empty_group() -> None:
    r = compare_proportions(0, 0, 5, 10)
    assert r.rate_a is None and r.difference is None and r.ci_low is None and r.p_value == 1.0


def test_icc_against_one_way_anova() -> None:
    rng = random.Random(3)
    clusters = []
    for _ in range(60):
        p = rng.choice([0.05, 0.2, 0.6])
        m = rng.randint(1, 6)
        clusters.append((sum(rng.random() < p for _ in range(m)), m))
    groups = [np.array([1.0] * k + [0.0] * (m - k)) for k, m in clusters]
    f = sps.f_oneway(*groups).statistic
    n, g = sum(m for _, m in clusters), len(clusters)
    m0 = (n - sum(m * m for _, m in clusters) / n) / (g - 1)
    assert icc_anova(clusters) == pytest.approx((f - 1) / (f + m0 - 1), rel=1e-9)
    assert icc_anova([(0, 3), (3, 3), (0, 3), (3, 3)]) == pytest.approx(1.0)


def test_sample_size_textbook() -> None:
    # Fleiss (no continuity correction), 0.20 -> 0.30, alpha 0.05 two-sided, power 0.8:
    # (1.95996 * sqrt(2 * 0.25 * 0.75) + 0.84162 * sqrt(0.16 + 0.21))^2 / 0.01 = 293.1 -> 294.
    assert sample_size_per_group(0.2, absolute_change=0.1) == 294
    assert sample_size_per_group(0.2, relative_change=0.5) == 294
    assert sample_size_per_group(0.2, absolute_change=0.1, design_effect=1.5) == math.ceil(293.0208 * 1.5)
    with pytest.raises(ValueError):
        sample_size_per_group(0.2)
    with pytest.raises(ValueError):
        sample_size_per_group(0.9, absolute_change=0.2)


@pytest.mark.parametrize(("p1", "change", "alpha", "power"), [(0.2, 0.1, 0.05, 0.8), (0.35, -0.05, 0.05, 0.9),
                                                               (0.1, 0.02, 0.01, 0.8)])
def test_sample_size_has_the_power(p1: float, change: float, alpha: float, power: float) -> None:
    """At n the test's power (normal approximation, computed plainly) reaches the target, at n - 1 not."""
    n = sample_size_per_group(p1, absolute_change=change, alpha=alpha, power=power)
    p2 = p1 + change

    def pw(m: int) -> float:
        pbar = (p1 + p2) / 2
        se0 = math.sqrt(2 * pbar * (1 - pbar) / m)
        se1 = math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / m)
        return float(sps.norm.sf((sps.norm.isf(alpha / 2) * se0 - abs(change)) / se1))

    assert pw(n) >= power > pw(n - 1)


def _tables(strata: list[Stratum]) -> list[np.ndarray]:
    return [np.array([[s.k_b, s.n_b - s.k_b], [s.k_a, s.n_a - s.k_a]], dtype=float) for s in strata]


STRATA = [Stratum("AAA|pre", 10, 200, 8, 240), Stratum("B|pre", 40, 180, 30, 150), Stratum("C|post", 30, 60, 45, 100),
          Stratum("A|post", 25, 300, 20, 310)]


def test_cmh_against_statsmodels() -> None:
    r = cmh(STRATA)
    t = StratifiedTable(_tables(STRATA))
    assert r.odds_ratio == pytest.approx(t.oddsratio_pooled, rel=1e-9)
    assert (r.or_ci_low, r.or_ci_high) == pytest.approx(t.oddsratio_pooled_confint(0.05), rel=1e-9)
    test = t.test_null_odds(correction=False)
    assert r.chi2 == pytest.approx(test.statistic, rel=1e-9) and r.p_value == pytest.approx(test.pvalue, rel=1e-7)
    assert r.strata_used == 4


def test_cmh_risk_difference_hand_computed() -> None:
    # Plain weighted mean of the stratum differences, weights n_a n_b / (n_a + n_b).
    w = [s.n_a * s.n_b / (s.n_a + s.n_b) for s in STRATA]
    d = [s.k_b / s.n_b - s.k_a / s.n_a for s in STRATA]
    v = [s.k_b / s.n_b * (1 - s.k_b / s.n_b) / s.n_b + s.k_a / s.n_a * (1 - s.k_a / s.n_a) / s.n_a for s in STRATA]
    rd = sum(wi * di for wi, di in zip(w, d, strict=True)) / sum(w)
    se = math.sqrt(sum(wi * wi * vi for wi, vi in zip(w, v, strict=True))) / sum(w)
    r = cmh(STRATA)
    assert r.risk_difference == pytest.approx(rd)
    assert (r.rd_ci_low, r.rd_ci_high) == pytest.approx((rd - 1.959964 * se, rd + 1.959964 * se), rel=1e-6)


def test_cmh_removes_a_mix_shift() -> None:
    """Simpson's paradox: same rate within each stratum, but b has more of the worse stratum."""
    strata = [Stratum("good", 10, 100, 30, 300), Stratum("bad", 150, 300, 50, 100)]
    crude = compare_proportions(160, 400, 80, 400)
    assert crude.difference == pytest.approx(-0.2) and crude.p_value < 1e-6
    r = cmh(strata)
    assert r.odds_ratio == pytest.approx(1.0) and r.risk_difference == pytest.approx(0.0)
    assert r.p_value == pytest.approx(1.0)
    assert cmh([Stratum("x", 1, 10, 0, 0)]).strata_used == 0


def test_mix_shift_against_scipy() -> None:
    before = {"AAA|pre": 500, "A|pre": 800, "C|post": 200, "B|post": 0}
    after = {"AAA|pre": 700, "A|pre": 780, "C|post": 120, "B|post": 0}
    r = mix_shift(before, after)
    table = [[before[k], after[k]] for k in ("AAA|pre", "A|pre", "C|post")]
    chi2, p, dof, _ = sps.chi2_contingency(table, correction=False)
    assert r.chi2 == pytest.approx(chi2) and r.p_value == pytest.approx(p, rel=1e-8) and r.dof == dof == 2
    assert r.shifted and r.largest_change[0] == "AAA|pre"
    assert r.shares_before["AAA|pre"] == pytest.approx(500 / 1500)
    same = mix_shift({"a": 100, "b": 300}, {"a": 1000, "b": 3000})
    assert same.chi2 == pytest.approx(0.0) and not same.shifted
    # significant but tiny: no warning
    tiny = mix_shift({"a": 500_000, "b": 500_000}, {"a": 505_000, "b": 495_000})
    assert tiny.p_value < 1e-6 and not tiny.shifted


@pytest.mark.parametrize("dof", [1, 2, 3, 7, 30])
@pytest.mark.parametrize("x", [0.0, 0.01, 0.5, 1.0, 3.84, 10.0, 45.0, 200.0])
def test_chi2_sf_against_scipy(x: float, dof: int) -> None:
    assert chi2_sf(x, dof) == pytest.approx(sps.chi2.sf(x, dof), rel=1e-9, abs=1e-300)


def test_best_times() -> None:
    cells = [
        SlotCounts(0, 10, 400, 300, 30),  # reach 270/400 = 0.675
        SlotCounts(0, 12, 400, 280, 84),  # lunch: 196/400 = 0.49
        SlotCounts(0, 15, 300, 210, 21),  # 189/300 = 0.63
        SlotCounts(0, 15, 100, 70, 7),  # same slot, summed: 252/400
        SlotCounts(1, 20, 50, 45, 0),  # 0.9 but too few attempts: not recommended
        SlotCounts(2, 9, 0, 0, 0),  # no calls: not listed
    ]
    r = best_times(cells, min_attempts=200, min_connected=50, top=2)
    assert [(s.weekday, s.hour) for s in r.slots] == [(0, 10), (0, 12), (0, 15), (1, 20)]
    assert [s.label for s in r.recommended] == ["Mon 10:00-11:00", "Mon 15:00-16:00"]
    best = r.recommended[0]
    assert (best.contact_rate, best.hangup_rate, best.reach_rate) == (0.75, 0.1, 0.675)
    assert best.reach_low == pytest.approx(smp.proportion_confint(270, 400, method="wilson")[0])
    assert r.slots[2].attempts == 400 and r.insufficient == 1 and not r.slots[3].sufficient
    with pytest.raises(ValueError):
        best_times([SlotCounts(0, 10, 10, 11, 0)])


def test_design_effect_from_cluster_sums() -> None:
    rng = random.Random(5)
    clusters = []
    for _ in range(300):  # borrowers with their own propensity to hang up: correlated calls
        p, m = rng.random(), rng.randint(1, 6)
        clusters.append((sum(rng.random() < p for _ in range(m)), m))
    sums = ClusterSums(len(clusters), sum(m for _, m in clusters), sum(k for k, _ in clusters),
                       sum(k * k / m for k, m in clusters), sum(m * m for _, m in clusters))
    icc = icc_anova(clusters)
    assert icc_from_sums(sums) == pytest.approx(icc) and icc > 0.2
    m_bar = sum(m * m for _, m in clusters) / sum(m for _, m in clusters)
    assert estimated_design_effect(sums) == pytest.approx(1 + (m_bar - 1) * icc)
    # one call per borrower: nothing to estimate, the calls are the borrowers
    assert estimated_design_effect(ClusterSums(50, 50, 20, 20.0, 50)) == 1.0
