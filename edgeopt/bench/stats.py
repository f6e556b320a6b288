"""Summaries and the hierarchical bootstrap behind the regression gate.

Latency samples come in *rounds*: one round is one child process (its own session, thread pool
and memory layout), and rounds of different candidates are interleaved in time. Samples inside a
round are correlated, so a confidence interval from pooled samples would be far too narrow. The
bootstrap therefore resamples rounds, then samples inside each chosen round, and the statistic is
the mean over rounds of each round's median, divided by that round's machine-speed reference
when normalizing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUANTILE = 0.2


def summary(values) -> dict:
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {"n": 0}
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "min": float(a.min()),
            "max": float(a.max()), "stddev": float(a.std(ddof=1)) if a.size > 1 else 0.0, "n": int(a.size)}


def median_min_max(values) -> dict:
    a = np.asarray(values, dtype=float)
    return {"median": float(np.median(a)), "min": float(a.min()), "max": float(a.max())}


def subsample(values: list[float], k: int) -> list[float]:
    """At most k values, evenly spaced in measurement order (keeps drift visible)."""
    if len(values) <= k:
        return list(values)
    idx = np.linspace(0, len(values) - 1, k).round().astype(int)
    return [values[i] for i in idx]


@dataclass(frozen=True)
class Round:
    latency_ms: tuple[float, ...]
    reference_ms: float | None  # QUANTILE of the reference kernel in the same process

    def values(self, normalize: bool) -> np.ndarray:
        a = np.asarray(self.latency_ms, dtype=float)
        return a / self.reference_ms if normalize and self.reference_ms else a


def _round_stats(rounds: list[Round], normalize: bool, n_boot: int, rng) -> np.ndarray:
    """(rounds, n_boot): bootstrap replicates of each round's statistic."""
    out = np.empty((len(rounds), n_boot))
    for i, r in enumerate(rounds):
        v = r.values(normalize)
        idx = rng.integers(0, v.size, size=(n_boot, v.size))
        out[i] = np.quantile(v[idx], QUANTILE, axis=1)
    return out


def point(rounds: list[Round], normalize: bool) -> float:
    return float(np.mean([np.quantile(r.values(normalize), QUANTILE) for r in rounds]))


def ratio_ci(current: list[Round], baseline: list[Round], *, normalize: bool = True, confidence: float = 0.95,
             n_boot: int = 2000, seed: int = 0) -> dict:
    """Ratio current / baseline of the typical latency, with a two-sided bootstrap CI."""
    rng = np.random.default_rng(seed)
    cur = _round_stats(current, normalize, n_boot, rng)
    base = _round_stats(baseline, normalize, n_boot, rng)
    pick_c = rng.integers(0, len(current), size=(n_boot, len(current)))
    pick_b = rng.integers(0, len(baseline), size=(n_boot, len(baseline)))
    cols = np.arange(n_boot)[:, None]
    stat_c = cur[pick_c, cols].mean(axis=1)
    stat_b = base[pick_b, cols].mean(axis=1)
    ratios = stat_c / stat_b
    alpha = (1 - confidence) / 2
    return {"ratio": point(current, normalize) / point(baseline, normalize),
            "ci_low": float(np.quantile(ratios, alpha)), "ci_high": float(np.quantile(ratios, 1 - alpha)),
            "confidence": confidence, "normalized": normalize,
            "rounds": [len(current), len(baseline)], "statistic": f"p{QUANTILE * 100:.0f} per round"}
