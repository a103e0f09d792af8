"""LogTrend against a fit and an interval worked by hand."""
import math

import pytest

from crsbench.errors import ConfigError
from crsbench.results.trend import LogTrend


def test_fit_and_interval_by_hand():
    # ln n = 0, 1, 2 and y = 1, 2, 4: slope 3/2, intercept 5/6, residuals 1/6, -1/3, 1/6 (SSR 1/6, 1 dof)
    trend = LogTrend.fit([1, math.e, math.e ** 2], [1.0, 2.0, 4.0])
    assert trend.slope == pytest.approx(1.5) and trend.intercept == pytest.approx(5 / 6)
    assert trend.residual_std == pytest.approx(math.sqrt(1 / 6))
    assert trend.at(math.e ** 3) == pytest.approx(5 / 6 + 4.5)
    assert trend.per_doubling == pytest.approx(1.5 * math.log(2))
    low, high = trend.interval(math.e ** 3)          # t(0.975, 1 dof) = 12.7062; se = √(1/6 · (1/3 + 4/2))
    half = 12.7062 * math.sqrt(1 / 6 * (1 / 3 + 2))
    assert (low, high) == (pytest.approx(5 / 6 + 4.5 - half, abs=1e-3), pytest.approx(5 / 6 + 4.5 + half, abs=1e-3))


def test_an_exact_log_line_is_recovered_and_seeds_weigh_as_points():
    sizes = [845, 1690, 2534, 3379]
    trend = LogTrend.fit(sizes, [0.2 + 0.03 * math.log2(n / 845) for n in sizes])
    assert trend.per_doubling == pytest.approx(0.03)
    assert trend.at(9105) == pytest.approx(0.2 + 0.03 * math.log2(9105 / 845))
    low, high = trend.interval(9105)
    assert high - low == pytest.approx(0.0, abs=1e-9)            # no scatter, no width
    two_seeds = LogTrend.fit([1000, 1000, 2000], [0.1, 0.3, 0.4])  # the mean at 1000 is 0.2
    assert two_seeds.per_doubling == pytest.approx(0.2)
    assert math.isnan(LogTrend.fit([1000, 2000], [0.1, 0.2]).interval(4000)[0])   # 2 points: no scatter known


def test_one_size_is_an_error():
    with pytest.raises(ConfigError, match="two training-set sizes"):
        LogTrend.fit([3379, 3379], [0.3, 0.31])
