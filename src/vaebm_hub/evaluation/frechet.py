"""Fréchet distance between Gaussian fits of two feature sets, and its classifier-feature variant.

This is *not* FID: no Inception network is available offline, so the features come from a small classifier trained
on the same dataset ("FD_clf"). Always report it next to the real-vs-real floor at the same sample size.

Written here rather than through torchmetrics' ``FrechetInceptionDistance(feature=...)``: importing that module
imports torch-fidelity, which imports torchvision, and no torchvision wheel matches the CPU torch this package pins
(its real-FID path, ``evaluation.inception``, needs them and says so). ``tests/test_evaluation.py`` checks the value
against the closed form of two Gaussians.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

from .classifier import ArrayLike, FeatureClassifier


def check_feature_pair(feats_a: np.ndarray, feats_b: np.ndarray, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Both sets as float64 (N, d) arrays with the same d and at least ``min_rows`` rows, else ``ValueError``."""
    a, b = np.asarray(feats_a, dtype=np.float64), np.asarray(feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two (N, d) feature arrays with the same d, got shapes {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("features contain NaN or inf; check the images passed to the feature extractor")
    if min(len(a), len(b)) < min_rows:
        raise ValueError(f"need at least {min_rows} rows in each feature set, got {len(a)} and {len(b)}")
    return a, b


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """FD = ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2}) for features (N_a, d) and (N_b, d).

    Σ_a Σ_b has real non-negative eigenvalues but is not symmetric, so ``sqrtm`` returns round-off imaginary parts;
    they are dropped. Dead ReLU units (or N < d) make the covariances singular; the square root is still well defined
    and ``sqrtm`` matches the eigenvalue form Σ_i √λ_i(Σ_a Σ_b), so its singular-matrix warning is silenced.
    """
    a, b = check_feature_pair(feats_a, feats_b, min_rows=2)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    sigma_a, sigma_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma_a @ sigma_b)
    fd = np.sum((mu_a - mu_b) ** 2) + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * np.trace(covmean).real
    return float(fd)


def fd_classifier(real_images: ArrayLike, fake_images: ArrayLike, classifier: FeatureClassifier) -> dict[str, float]:
    """``{"fd_classifier": FD}`` between classifier features of real and generated (N, 1, H, W) images."""
    return {"fd_classifier": frechet_distance(classifier.features(real_images), classifier.features(fake_images))}


def fd_floor(real_a: ArrayLike, real_b: ArrayLike, classifier: FeatureClassifier) -> dict[str, float]:
    """``{"fd_classifier_floor": FD}`` between two disjoint real sets; use the generated set's sample size."""
    return {"fd_classifier_floor": frechet_distance(classifier.features(real_a), classifier.features(real_b))}
