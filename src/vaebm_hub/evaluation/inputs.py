"""Checks on what evaluation is given: arrays, image layouts, dataset names, counts; each a ValueError that names
the input and the fix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..data.builtin import BUILTIN_DATASETS, MNIST_PADDED_SIZE, NATIVE_SAMPLE_SHAPES, PADDABLE_DATASETS

MIN_SAMPLES = 4  # precision/recall with k = 3 neighbours needs k + 1 points per set


def check_array(array: object, name: str, *, hint: str = "") -> np.ndarray:
    """``array`` as a non-empty, finite float32 numpy array, else a ``ValueError`` naming ``name`` and ``hint``."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 0 or len(array) == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); pass at least {MIN_SAMPLES} rows.")
    bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if bad.any():
        raise ValueError(f"{name} has NaN or Inf values in {int(bad.sum())} of {len(array)} rows. {hint}".rstrip())
    return array


def channels_first(images: object, name: str = "images", *, hint: str = "") -> np.ndarray:
    """Checked images ``(N, C, H, W)`` float32 in [0, 1] from channels-last or channels-first input (C ∈ {1, 3})."""
    images = check_array(images, name, hint=hint)
    if images.ndim != 4:
        raise ValueError(
            f"{name} must be images (N, H, W, C) or (N, C, H, W), got shape {images.shape}; "
            "2-D points are only evaluated for dataset 'gaussians25'."
        )
    if images.shape[1] not in (1, 3):
        if images.shape[3] not in (1, 3):
            raise ValueError(f"{name} has shape {images.shape}: no channel axis of size 1 or 3 at position 1 or 3.")
        images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    if images.min() < 0 or images.max() > 1:
        raise ValueError(
            f"{name} has values in [{images.min():.3g}, {images.max():.3g}]; images must lie in [0, 1] "
            "(divide uint8 images by 255)."
        )
    return images


def _check_dataset(dataset: str) -> None:
    if dataset not in BUILTIN_DATASETS:
        raise ValueError(
            f"Unknown dataset {dataset!r}: evaluation needs a built-in dataset with a held-out split, one of "
            f"{BUILTIN_DATASETS}."
        )


def reference_options(dataset: str, sample_shape: Sequence[int]) -> dict:
    """Loader options (``{"pad": True}`` or ``{}``) under which ``dataset`` yields items of ``sample_shape``.

    Raises a ``ValueError`` when no such option exists, e.g. a 28×28 pipeline evaluated on ``digits``.
    """
    _check_dataset(dataset)
    native, shape = NATIVE_SAMPLE_SHAPES[dataset], tuple(sample_shape)
    if shape == native:
        return {}
    if dataset in PADDABLE_DATASETS and shape == (native[0], MNIST_PADDED_SIZE, MNIST_PADDED_SIZE):
        return {"pad": True}
    allowed = [native] + ([(native[0], MNIST_PADDED_SIZE, MNIST_PADDED_SIZE)] if dataset in PADDABLE_DATASETS else [])
    raise ValueError(
        f"Samples of shape {shape} cannot be compared with dataset {dataset!r}, whose items are "
        f"{' or '.join(map(str, allowed))}. Evaluate a pipeline trained on {dataset!r} (or pick the dataset the "
        "pipeline was trained on)."
    )


def _check_count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
