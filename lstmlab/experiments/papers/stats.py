"""Welch's t-test, without SciPy: the statistic, its degrees of freedom and the two-sided p-value.

The p-value is the tail of Student's t distribution, P(|T| > |t|) = I_x(df/2, 1/2) with
x = df / (df + t^2), where I is the regularised incomplete beta function, evaluated here
by its continued fraction (modified Lentz method).

    >>> r = welch([1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0])
    >>> round(r.t, 4), round(r.df, 1), round(r.p, 4)
    (-2.1909, 6.0, 0.0710)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lstmlab.errors import InvalidArgument


@dataclass(frozen=True)
class Welch:
    """Welch's t-test of two samples: statistic `t` (mean of a minus mean of b over its
    standard error), Welch-Satterthwaite degrees of freedom `df`, two-sided p-value `p`."""

    t: float
    df: float
    p: float


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b), by the modified Lentz method."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 1000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return result


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) for a, b > 0 and x in [0, 1]."""
    if not (a > 0 and b > 0):
        raise InvalidArgument("incomplete_beta", "a, b", f"must be positive; got {a!r}, {b!r}")
    if not 0.0 <= x <= 1.0:
        raise InvalidArgument("incomplete_beta", "x", f"must be in [0, 1]; got {x!r}")
    if x in (0.0, 1.0):
        return x
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_two_sided(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom."""
    if not df > 0:
        raise InvalidArgument("t_two_sided", "df", f"must be positive; got {df!r}")
    if math.isinf(t):
        return 0.0
    return incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def welch(a: Sequence[float], b: Sequence[float]) -> Welch:
    """Welch's unequal-variances t-test of samples `a` and `b` (two or more values each).

    Two samples without spread give t = 0 and p = 1 when their means are equal and
    t = +-inf, p = 0 otherwise.
    """
    for name, sample in (("a", a), ("b", b)):
        if len(sample) < 2:
            raise InvalidArgument("welch", name, f"must hold at least two values; got {len(sample)}")
    n1, n2 = len(a), len(b)
    m1, m2 = sum(a) / n1, sum(b) / n2
    s1 = sum((x - m1) ** 2 for x in a) / (n1 - 1) / n1
    s2 = sum((x - m2) ** 2 for x in b) / (n2 - 1) / n2
    if s1 + s2 == 0.0:
        if m1 == m2:
            return Welch(0.0, float(n1 + n2 - 2), 1.0)
        return Welch(math.copysign(math.inf, m1 - m2), float(n1 + n2 - 2), 0.0)
    t = (m1 - m2) / math.sqrt(s1 + s2)
    df = (s1 + s2) ** 2 / (s1**2 / (n1 - 1) + s2**2 / (n2 - 1))
    return Welch(t, df, t_two_sided(t, df))
