"""Out-of-distribution evaluation: AUROC of a score and synthetic OOD sets that exist offline.

Every builder maps in-distribution images (N, C, H, W) in [0, 1] to an OOD set of the same shape and dtype.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def auroc(scores_in: np.ndarray, scores_out: np.ndarray) -> float:
    """AUROC = P(s_in > s_out) + ½ P(s_in = s_out), higher score meaning more in-distribution
    (``sklearn.metrics.roc_auc_score`` with in-distribution as the positive class; ties count one half)."""
    scores_in, scores_out = np.ravel(scores_in), np.ravel(scores_out)
    if len(scores_in) == 0 or len(scores_out) == 0:
        raise ValueError(f"both score sets must be non-empty, got {len(scores_in)} and {len(scores_out)} scores")
    labels = np.r_[np.ones(len(scores_in)), np.zeros(len(scores_out))]
    return float(roc_auc_score(labels, np.r_[scores_in, scores_out]))


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {images.shape}")
    return images


def uniform_noise(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Independent U[0, 1] pixels."""
    images = _check_images(images)
    return np.random.default_rng(seed).random(images.shape).astype(images.dtype)


def constant_images(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each image one constant value drawn from U[0, 1] (shared by its channels)."""
    images = _check_images(images)
    values = np.random.default_rng(seed).random((len(images), 1, 1, 1))
    return np.broadcast_to(values, images.shape).astype(images.dtype)


def pixel_shuffled(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each image's spatial positions permuted by its own random permutation (channels move together)."""
    images = _check_images(images)
    n, c, h, w = images.shape
    order = np.random.default_rng(seed).random((n, h * w)).argsort(axis=1)
    flat = images.reshape(n, c, h * w)
    return np.take_along_axis(flat, order[:, None, :], axis=2).reshape(images.shape)


def inverted(images: np.ndarray) -> np.ndarray:
    """1 − x."""
    images = _check_images(images)
    return (1 - images).astype(images.dtype)


def interpolated(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """The paper's "Interp" set: each image averaged with a different, randomly paired image (needs N ≥ 2)."""
    images = _check_images(images)
    if len(images) < 2:
        raise ValueError("interpolation pairs distinct images; pass at least 2 images")
    order = np.random.default_rng(seed).permutation(len(images))
    partner = np.empty_like(order)
    partner[order] = np.roll(order, 1)  # a cyclic shift of a random order: no image is paired with itself
    return ((images + images[partner]) / 2).astype(images.dtype)


OOD_SETS = {
    "uniform": uniform_noise,
    "constant": constant_images,
    "shuffled": pixel_shuffled,
    "inverted": lambda images, seed=0: inverted(images),
    "interp": interpolated,
}


def make_ood_set(name: str, images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Build the OOD set ``name`` (one of ``OOD_SETS``) from in-distribution images (N, C, H, W)."""
    if name not in OOD_SETS:
        raise ValueError(f"unknown OOD set {name!r}; choose one of {sorted(OOD_SETS)}")
    return OOD_SETS[name](images, seed=seed)
