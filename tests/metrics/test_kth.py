"""Selection across sorted runs (``kth.neighbours``) equals indexing their merged sort, on runs
large enough to take the pivot rounds, with ties within and across runs."""

from __future__ import annotations

import random

from app.services.metrics import kth


def test_neighbours_match_the_merged_sort() -> None:
    rng = random.Random(16)
    for trial in range(40):
        runs = [
            sorted(
                float(rng.randint(0, 50)) if trial % 2 else rng.gauss(3e6, 2e5)
                for _ in range(rng.choice((0, 1, 7, 300, 1500, 5000)))
            )
            for _ in range(rng.randint(1, 30))
        ]
        merged = sorted(v for run in runs for v in run)
        runs = [run for run in runs if run]
        if not merged:
            continue
        n = len(merged)
        for k in {0, n - 1, n // 2, (n - 1) * 9 // 10, rng.randrange(n)}:
            want = (merged[k], merged[min(k + 1, n - 1)])
            assert kth.neighbours(runs, k) == want, (trial, k)
