"""A small single-channel CNN whose penultimate activations serve as evaluation features.

No Inception weights exist offline, so sample quality is measured in the feature space of a classifier trained on
the same dataset (see ``frechet.py``). Training is deterministic for a given seed on CPU, and the trained weights are
cached as safetensors next to a JSON file holding the held-out accuracy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

ArrayLike = np.ndarray | torch.Tensor


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """Architecture and training settings; every field enters the cache key."""

    width: int = 32
    feature_dim: int = 128
    pool_size: int = 2
    num_classes: int = 10
    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-3
    outlier_exposure: float = 0.5
    holdout_fraction: float = 0.2
    seed: int = 0


# Per-dataset defaults used when ``get_feature_classifier`` is called without a config.
CLASSIFIER_PRESETS: dict[str, ClassifierConfig] = {
    "digits": ClassifierConfig(),
    "mnist": ClassifierConfig(epochs=2, pool_size=7),
}


class FeatureNet(nn.Module):
    """(N, 1, H, W) in [0, 1] → logits (N, num_classes); ``features`` is the (N, feature_dim) ReLU layer before them.

    Three 3×3 convolutions (the last two with stride 2), adaptive average pooling to pool_size², then a linear feature
    layer. The presets pick pool_size = H/4, so pooling keeps the whole final map (2×2 for 8×8, 7×7 for 28×28):
    averaging a 7×7 map down to 2×2 cost MNIST about 4 points of accuracy.
    """

    def __init__(self, width: int, feature_dim: int, num_classes: int, pool_size: int = 2):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(pool_size),
            nn.Flatten(),
            nn.Linear(2 * width * pool_size**2, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    @classmethod
    def from_config(cls, config: ClassifierConfig) -> FeatureNet:
        return cls(config.width, config.feature_dim, config.num_classes, config.pool_size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class FeatureClassifier:
    """A trained :class:`FeatureNet` with a numpy interface for the metrics.

    Inputs are single-channel images (N, 1, H, W) in [0, 1] at the training resolution, as numpy arrays or tensors.
    """

    def __init__(self, net: FeatureNet, accuracy: float, image_size: tuple[int, int], loaded_from_cache: bool):
        self.net = net.eval()
        self.accuracy = accuracy
        self.image_size = image_size
        self.loaded_from_cache = loaded_from_cache

    def fingerprint(self) -> str:
        """A digest of the network's weights and the input size: equal for two loads of the same cached classifier,
        different once a weight changes (metrics memoise features on it)."""
        digest = hashlib.blake2b(repr(self.image_size).encode(), digest_size=16)
        for name, tensor in self.net.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def _check(self, x: ArrayLike) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float32, device="cpu")
        if x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[2:]) != self.image_size:
            raise ValueError(
                f"expected images of shape (N, 1, {self.image_size[0]}, {self.image_size[1]}), got {tuple(x.shape)}; "
                "the classifier is single-channel: classify multi-channel stacks one channel at a time"
            )
        return x

    @torch.no_grad()
    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], x: ArrayLike, batch_size: int) -> np.ndarray:
        x = self._check(x)
        return torch.cat([fn(chunk) for chunk in x.split(batch_size)]).double().numpy()

    def features(self, x: ArrayLike, batch_size: int = 1024) -> np.ndarray:
        """Penultimate ReLU features, (N, feature_dim) float64."""
        return self._apply(self.net.features, x, batch_size)

    def predict_proba(self, x: ArrayLike, batch_size: int = 1024) -> np.ndarray:
        """Softmax class probabilities, (N, num_classes) float64."""
        return self._apply(lambda c: self.net(c).softmax(dim=1), x, batch_size)

    @torch.no_grad()
    def proba_from_features(self, features: np.ndarray) -> np.ndarray:
        """:meth:`predict_proba` from :meth:`features` already computed (the head alone; no second pass)."""
        logits = self.net.head(torch.as_tensor(features, dtype=torch.float32))
        return logits.softmax(dim=1).double().numpy()


def _check_training_data(images: ArrayLike, labels: ArrayLike, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(images, dtype=torch.float32, device="cpu")
    y = torch.as_tensor(labels, device="cpu").long()
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"training images must be (N, 1, H, W) floats in [0, 1], got shape {tuple(x.shape)}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},) to match the images, got {tuple(y.shape)}")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}); got range [{int(y.min())}, {int(y.max())}]")
    return x, y


def _synthetic_outliers(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Same-shape batch: first half U[0, 1] noise, second half the images with their pixels randomly permuted."""
    n, _, h, w = x.shape
    noise = torch.rand((n // 2, *x.shape[1:]), generator=generator)
    order = torch.rand((n - n // 2, h * w), generator=generator).argsort(dim=1)
    shuffled = x[n // 2 :].flatten(2).gather(2, order[:, None, :]).view(n - n // 2, *x.shape[1:])
    return torch.cat([noise, shuffled])


def train_feature_classifier(
    images: ArrayLike, labels: ArrayLike, config: ClassifierConfig = ClassifierConfig()
) -> tuple[FeatureNet, float]:
    """Train a :class:`FeatureNet` with Adam; returns (net, accuracy on the held-out split).

    Loss = CE(y, p(x)) + λ · CE(uniform, p(x̃)) with λ = ``config.outlier_exposure`` (Hendrycks et al., 2019):
    x̃ are synthetic non-images (uniform noise and pixel-shuffled training images), so that the classifier is unsure
    off the data manifold and a confidence gate (``modes.stacked_mode_count``) rejects garbage rather than assigning
    it a confident class, which a plain softmax CNN does for most noise images.

    A seeded permutation holds out ``config.holdout_fraction`` of the data; initialisation, batch order and outliers
    are drawn from ``config.seed`` only, so the same inputs and config give identical weights on CPU.
    """
    if not 0.0 < config.holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1) for a held-out accuracy, got {config.holdout_fraction}")
    x, y = _check_training_data(images, labels, config.num_classes)
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(len(x), generator=generator)
    num_holdout = max(1, round(config.holdout_fraction * len(x)))
    holdout, train = order[:num_holdout], order[num_holdout:]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = FeatureNet.from_config(config)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    net.train()
    for _ in range(config.epochs):
        for batch in train[torch.randperm(len(train), generator=generator)].split(config.batch_size):
            loss = F.cross_entropy(net(x[batch]), y[batch])
            if config.outlier_exposure > 0:
                outlier_log_probs = net(_synthetic_outliers(x[batch], generator)).log_softmax(dim=1)
                loss = loss - config.outlier_exposure * outlier_log_probs.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(x[holdout]).argmax(dim=1) == y[holdout]).double().mean().item()
    return net, accuracy


def default_cache_dir() -> Path:
    """``$VAEBM_HUB_CACHE/classifiers`` if the variable is set, else ``~/.cache/vaebm_hub/classifiers``."""
    root = os.environ.get("VAEBM_HUB_CACHE") or Path.home() / ".cache" / "vaebm_hub"
    return Path(root) / "classifiers"


def _cache_key(dataset: str, x: torch.Tensor, y: torch.Tensor, config: ClassifierConfig) -> str:
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(config), sort_keys=True).encode())
    digest.update(str(tuple(x.shape)).encode())
    digest.update(x.numpy().tobytes())
    digest.update(y.numpy().tobytes())
    return f"{dataset}-{digest.hexdigest()[:16]}"


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary name and rename, so a concurrent reader never sees a partial file."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def get_feature_classifier(
    dataset: str,
    images: ArrayLike,
    labels: ArrayLike,
    cache_dir: str | os.PathLike | None = None,
    config: ClassifierConfig | None = None,
) -> FeatureClassifier:
    """Load the classifier for ``dataset`` from the cache, or train it on (images, labels) and cache it.

    The cache key is the dataset name plus a hash of the config and of the training arrays, so new data or settings
    never reuse stale weights. Files: ``<key>.safetensors`` (weights) and ``<key>.json`` (held-out accuracy, config).
    ``config`` defaults to ``CLASSIFIER_PRESETS[dataset]`` (or ``ClassifierConfig()`` for an unknown name).
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", dataset):
        raise ValueError(f"dataset name {dataset!r} is used in file names; use only letters, digits, '_', '.', '-'")
    config = config or CLASSIFIER_PRESETS.get(dataset, ClassifierConfig())
    x, y = _check_training_data(images, labels, config.num_classes)
    image_size = (x.shape[2], x.shape[3])
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _cache_key(dataset, x, y, config)
    weights_path, meta_path = directory / f"{key}.safetensors", directory / f"{key}.json"

    if weights_path.is_file() and meta_path.is_file():
        net = FeatureNet.from_config(config)
        net.load_state_dict(load_file(weights_path))
        accuracy = json.loads(meta_path.read_text())["accuracy"]
        return FeatureClassifier(net, accuracy, image_size, loaded_from_cache=True)

    net, accuracy = train_feature_classifier(x, y, config)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"dataset": dataset, "accuracy": accuracy, "num_images": len(x), "config": dataclasses.asdict(config)}
    _atomic_write(weights_path, lambda tmp: save_file(net.state_dict(), tmp))
    _atomic_write(meta_path, lambda tmp: tmp.write_text(json.dumps(meta, indent=2)))  # written last: marks completion
    return FeatureClassifier(net, accuracy, image_size, loaded_from_cache=False)
