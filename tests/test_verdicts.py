"""The one verdict rule: a 95% paired t interval, a minimum effect, ≥ 3 seeds for "shown"."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from normbench.report import verdicts as v


def test_interval_matches_a_one_sample_t_test():
    diffs = [1.2, 0.4, 2.9, 1.7]
    d = v.estimate(diffs)
    # the interval excludes 0 exactly when scipy's two-sided p-value is below 0.05
    p = stats.ttest_1samp(diffs, 0.0).pvalue
    assert (d.low > 0) == (p < 0.05)
    # and its half-width is t(0.975, n-1) * sd / sqrt(n), written out here
    sd = math.sqrt(sum((x - np.mean(diffs)) ** 2 for x in diffs) / 3)
    assert d.half_width == pytest.approx(3.182446305284263 * sd / 2.0, rel=1e-9)


def test_two_seeds_use_one_degree_of_freedom():
    # The old rule (|mean| > 2 se) called this shown; t(0.975, 1) = 12.7 does not.
    d = v.paired({0: 10.0, 1: 10.0}, {0: 13.0, 1: 12.0})
    assert d.n == 2 and d.mean == pytest.approx(2.5)
    assert d.half_width == pytest.approx(12.706204736 * (math.sqrt(0.5) / math.sqrt(2)), rel=1e-6)
    assert v.judge_difference(d, +1).startswith(v.NOT_SHOWN)


def test_two_seeds_at_best_suggestive_three_shown():
    two = v.paired({0: 10.0, 1: 10.0}, {0: 15.0, 1: 15.1})
    assert v.judge_difference(two, +1) == "suggestive (n = 2)"
    three = v.paired({0: 10.0, 1: 10.0, 2: 10.0}, {0: 15.0, 1: 15.1, 2: 14.9})
    assert v.judge_difference(three, +1) == v.SHOWN
    assert v.judge_difference(three, -1) == v.OPPOSITE


def test_minimum_effect_blocks_a_tiny_but_consistent_difference():
    d = v.paired({s: 10.0 for s in range(5)}, {s: 10.2 + 0.001 * s for s in range(5)})
    assert d.low > 0
    assert v.judge_difference(d, +1, effect=0.5).startswith(v.NOT_SHOWN)


def test_binomial_noise_floor():
    assert v.binomial_se(30.0, 1000) == pytest.approx(100 * math.sqrt(0.3 * 0.7 / 1000))
    assert v.binomial_se(30.0, 1000) == pytest.approx(1.449, abs=1e-3)
    assert v.min_effect(30.0, 1000) == pytest.approx(2 * 1.449, abs=1e-2)
    assert v.min_effect(1.0, 10000) == v.MIN_EFFECT


def test_equivalence_is_judged_on_the_interval_not_the_point():
    # mean 0.05, inside ±0.5, but the interval is wide: not shown
    wide = v.estimate([1.0, -0.9, 0.05])
    assert abs(wide.mean) < 0.5
    assert v.judge_equivalence(wide, 0.5).startswith(v.NOT_SHOWN)
    narrow = v.estimate([0.01, -0.02, 0.03, 0.0])
    assert v.judge_equivalence(narrow, 0.5).startswith(v.SHOWN)


def test_noise_never_passes():
    """Pure noise (no effect) is called shown in at most about 5% of draws."""
    rng = np.random.default_rng(0)
    shown = 0
    for _ in range(2000):
        a = dict(enumerate(rng.normal(30, 1.5, 3)))
        b = dict(enumerate(rng.normal(30, 1.5, 3)))
        shown += v.judge_difference(v.paired(a, b), +1, effect=0.0) == v.SHOWN
    assert shown / 2000 < 0.04  # one-sided: about 2.5% expected


def test_one_value_is_not_enough():
    assert v.judge_difference(v.estimate([3.0]), +1).startswith(v.NOT_ENOUGH)
    assert v.estimate([]).text() == "not measured"


def test_claims_round_trip(tmp_path):
    claim = v.Claim(
        "s", "k", "BN | helps", "paper §1", "1.0", "+2.00 ± 0.50 (n = 3)", "r", "shown", "x"
    )
    v.write_claims([claim], tmp_path)
    assert v.read_claims(tmp_path / v.CLAIMS_FILE) == [claim]
    assert "BN \\| helps" in v.claims_table([claim])
    assert claim.outcome == v.SHOWN
