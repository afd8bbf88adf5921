"""Tables of throughput and latency per operation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from loadtest.client import percentile


def latency_table(
    latencies: Mapping[str, Sequence[float]],
    elapsed: float,
    *,
    readings: Mapping[str, int] | None = None,
    title: str = "operation",
) -> list[str]:
    """One line per operation: calls, calls/s, p50 and p99 in ms (and readings/s if given)."""
    width = max([len(title), *map(len, latencies)]) + 2
    lines = [
        f"  {title:<{width}}{'calls':>8}{'calls/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'readings/s':>12}"
    ]
    for op in sorted(latencies, key=lambda o: (o.startswith("echo"), o)):
        values = latencies[op]
        per_s = (readings or {}).get(op)
        lines.append(
            f"  {op:<{width}}{len(values):>8,}{len(values) / elapsed:>10,.1f}"
            f"{percentile(values, 50) * 1000:>9,.1f}{percentile(values, 99) * 1000:>9,.1f}"
            + (f"{per_s / elapsed:>12,.0f}" if per_s else "")
        )
    return lines
