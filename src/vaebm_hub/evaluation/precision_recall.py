"""Improved precision and recall (Kynkäänniemi et al., 2019) with k-nearest-neighbour manifolds.

Each set's manifold is the union of balls around its points with radius the distance to the point's k-th nearest
neighbour in the same set. Precision = share of generated points inside the real manifold (quality); recall = share
of real points inside the generated manifold (coverage).
"""

from __future__ import annotations

import numpy as np

from .frechet import check_feature_pair

_CHUNK = 1024


def _squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """‖x_i − y_j‖² = ‖x_i‖² + ‖y_j‖² − 2 x_iᵀy_j, clipped at 0 against round-off; (len(x), len(y))."""
    return np.maximum((x**2).sum(1)[:, None] + (y**2).sum(1)[None, :] - 2.0 * x @ y.T, 0.0)


def _chunks(x: np.ndarray) -> list[np.ndarray]:
    """Row blocks of at most ``_CHUNK`` rows, bounding the pairwise-distance matrices' memory."""
    return np.split(x, range(_CHUNK, len(x), _CHUNK))


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Squared distance of each row to its k-th nearest other row (index k of the sorted row, index 0 being itself)."""
    return np.concatenate([np.partition(_squared_distances(chunk, x), k, axis=1)[:, k] for chunk in _chunks(x)])


def _coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """Share of ``points`` within radius of at least one centre."""
    inside = [(_squared_distances(chunk, centres) <= radii[None, :]).any(axis=1) for chunk in _chunks(points)]
    return float(np.concatenate(inside).mean())


def precision_recall(real_feats: np.ndarray, fake_feats: np.ndarray, k: int = 3) -> dict[str, float]:
    """``{"precision", "recall"}`` for real (N_r, d) and generated (N_g, d) features with k-NN radii."""
    if k < 1:
        raise ValueError(f"k must be a positive number of neighbours, got {k}")
    real, fake = check_feature_pair(real_feats, fake_feats, min_rows=k + 1)
    return {
        "precision": _coverage(fake, real, _knn_radii(real, k)),
        "recall": _coverage(real, fake, _knn_radii(fake, k)),
    }
