"""Kernel distance (KID-style unbiased MMD²) between two feature sets.

Features are standardised per coordinate with the mean and standard deviation of the *reference* set ``feats_a``
before the cubic polynomial kernel k(x, y) = (xᵀy / d + 1)³ is applied. The kernel's 1/d scale assumes coordinates
of order one (as Inception pool features roughly are); raw ReLU features of a small classifier can be far larger,
which made the unnormalised distance's scale arbitrary. Standardising (rather than L2-normalising, which would make
xᵀy/d ≈ 1/d and the kernel nearly linear) keeps the kernel in its intended regime, makes the metric invariant to the
per-unit scale of the features, and — because the statistics come from the reference set only — uses the same
yardstick for every model compared against the same real data.

Hand-written (not torchmetrics' ``KernelInceptionDistance``) for the reason given in :mod:`.frechet`: that module's
import chain needs torchvision.
"""

from __future__ import annotations

import numpy as np

from .frechet import check_feature_pair


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """MMD²_u = Σ_{i≠j} k(x_i,x_j)/(m(m−1)) + Σ_{i≠j} k(y_i,y_j)/(m(m−1)) − 2 Σ_{i,j} k(x_i,y_j)/m²."""
    m = len(x)
    k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


def kernel_distance(
    feats_a: np.ndarray, feats_b: np.ndarray, subset_size: int = 500, num_subsets: int = 50, seed: int = 0
) -> dict[str, float]:
    """Mean and standard deviation of MMD²_u over ``num_subsets`` random subsets of ``subset_size`` rows of each set.

    ``feats_a`` (N_a, d) is the reference (real) set; ``feats_b`` (N_b, d) the compared set. Returns
    ``{"kernel_distance": mean, "kernel_distance_std": std}``; the mean is ≈ 0 (and may be slightly negative) when both
    sets come from one distribution.
    """
    a, b = check_feature_pair(feats_a, feats_b, min_rows=2)
    if not 2 <= subset_size <= min(len(a), len(b)):
        raise ValueError(
            f"subset_size={subset_size} must be in [2, {min(len(a), len(b))}] (the smaller set's size); lower it"
        )
    mean, std = a.mean(axis=0), a.std(axis=0)
    std[std < 1e-12] = 1.0  # coordinates constant over the reference (dead ReLU units) are only centred
    a, b = (a - mean) / std, (b - mean) / std
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        subset_a = a[rng.choice(len(a), subset_size, replace=False)]
        subset_b = b[rng.choice(len(b), subset_size, replace=False)]
        values.append(_unbiased_mmd2(subset_a, subset_b))
    return {"kernel_distance": float(np.mean(values)), "kernel_distance_std": float(np.std(values))}
