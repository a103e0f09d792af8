"""A learning curve's trend: recall as a straight line in log(training conversations) (issue 13 §5).

Recall against training-set size is close to linear in log(n) over the range a data-fraction study
covers (each doubling of the data adds about the same), so `LogTrend` fits y = a + b·ln(n) by least
squares over every (n, seed) point and extrapolates it, with the usual t interval for the line's
value at n. The interval holds only if the log-linear form does: an extrapolation far past the
measured range is a statement about that assumption, and a table built from it says so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from crsbench.errors import ConfigError


@dataclass(frozen=True)
class LogTrend:
    """y = intercept + slope · ln(n), fitted to `points` (n, y) pairs."""

    intercept: float
    slope: float
    points: int
    mean_log_n: float
    sxx: float                   # Σ (ln n - mean ln n)²
    residual_std: float          # √(Σ residual² / (points - 2)); nan with 2 points

    @classmethod
    def fit(cls, xs: Sequence[int], ys: Sequence[float]) -> "LogTrend":
        """Least squares over every point (seeds are separate points, so a mean is weighted by them)."""
        if len(xs) != len(ys):
            raise ValueError(f"{len(xs)} sizes but {len(ys)} values")
        logs = [math.log(x) for x in xs]
        if len(set(logs)) < 2:
            raise ConfigError(f"a trend needs runs at two training-set sizes at least; these are all n = {xs[0]}"
                              if xs else "a trend needs runs at two training-set sizes at least; there are none",
                              hint="train the fractions of sweeps/data_fraction_redial.yaml")
        mean_x, mean_y = sum(logs) / len(logs), sum(ys) / len(ys)
        sxx = sum((x - mean_x) ** 2 for x in logs)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(logs, ys)) / sxx
        intercept = mean_y - slope * mean_x
        residuals = [y - intercept - slope * x for x, y in zip(logs, ys)]
        dof = len(logs) - 2
        residual_std = math.sqrt(sum(r * r for r in residuals) / dof) if dof > 0 else math.nan
        return cls(intercept, slope, len(logs), mean_x, sxx, residual_std)

    def at(self, n: float) -> float:
        """The line's value at n training conversations."""
        return self.intercept + self.slope * math.log(n)

    @property
    def per_doubling(self) -> float:
        """What each doubling of the training data adds."""
        return self.slope * math.log(2)

    def interval(self, n: float, level: float = 0.95) -> tuple[float, float]:
        """The t confidence interval of the line's value at n (not of one new run's score); (nan, nan)
        with too few points to estimate the scatter."""
        if self.points < 3:
            return math.nan, math.nan
        from scipy import stats
        half = stats.t.ppf(0.5 + level / 2, self.points - 2) * self.residual_std * math.sqrt(
            1 / self.points + (math.log(n) - self.mean_log_n) ** 2 / self.sxx)
        value = self.at(n)
        return value - half, value + half
