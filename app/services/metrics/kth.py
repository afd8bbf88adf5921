"""Selection across sorted runs: the k-th smallest of their values without merging them
(a summary's percentiles over its cells' sorted spans)."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

SMALL = 2048  # values left in play when selection sorts them


def neighbours(runs: Sequence[Sequence[float]], k: int) -> tuple[float, float]:
    """The k-th and (k+1)-th smallest (from 0; the k-th twice if it is the largest) of the
    values of some non-empty sorted runs, without merging them.

    Each round takes the weighted median of the runs' middle values still in play as a
    pivot, counts the values below and up to it by bisection, and drops every value on the
    pivot's wrong side (a quarter or more of those in play); ties stay exact, as the
    dropped values are strictly below or above the k-th.
    """
    if len(runs) == 1:
        (run,) = runs
        return run[k], run[min(k + 1, len(run) - 1)]
    lo = [0] * len(runs)
    hi = [len(run) for run in runs]
    left = sum(hi)
    while left > SMALL:
        middles = sorted(
            (run[(low + h) // 2], h - low)
            for run, low, h in zip(runs, lo, hi, strict=True)
            if low < h
        )
        weight, i = middles[0][1], 0
        while 2 * weight < left:
            i += 1
            weight += middles[i][1]
        pivot = middles[i][0]
        below = [bisect_left(run, pivot, low, h) for run, low, h in zip(runs, lo, hi, strict=True)]
        if sum(below) > k:
            hi = below
        else:
            upto = [
                bisect_right(run, pivot, low, h) for run, low, h in zip(runs, lo, hi, strict=True)
            ]
            if sum(upto) > k:  # the k-th is the pivot
                lo, hi = below, upto
                break
            lo = upto
        left = sum(h - low for low, h in zip(lo, hi, strict=True))
    rest = sorted(v for run, low, h in zip(runs, lo, hi, strict=True) for v in run[low:h])
    at = k - sum(lo)
    if at + 1 < len(rest):
        return rest[at], rest[at + 1]
    # The next is the least of those dropped above (none: the k-th is the largest).
    above = [run[h] for run, h in zip(runs, hi, strict=True) if h < len(run)]
    return rest[at], min(above, default=rest[at])
