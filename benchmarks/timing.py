"""Timing helpers shared by the benchmarks: calls taking turns, and p50/p95 summaries of their times."""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def p50_p95(seconds: list[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(seconds, [50, 95])
    return float(p50), float(p95)


def summary(seconds: list[float]) -> dict:
    """p50/p95 in milliseconds and the number of calls (benchmark.py's figures)."""
    p50, p95 = p50_p95(seconds)
    return {"p50_ms": round(1000 * p50, 2), "p95_ms": round(1000 * p95, 2), "n": len(seconds)}


def latency_summary(seconds: list[float]) -> dict:
    """p50/p95/max in seconds, None for each when nothing was answered (load_test.py's figures)."""
    if not seconds:
        return {"p50_s": None, "p95_s": None, "max_s": None}
    p50, p95 = p50_p95(seconds)
    return {"p50_s": round(p50, 3), "p95_s": round(p95, 3), "max_s": round(max(seconds), 3)}


def interleaved(paths: dict[str, Callable], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each path, the paths taking turns in every round: a busy machine slows them all alike."""
    times = {name: [] for name in paths}
    for r in range(warmup + rounds):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return times
