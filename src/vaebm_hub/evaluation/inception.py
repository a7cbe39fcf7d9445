"""Real FID, only when the user points to local Inception weights (they cannot be downloaded here).

FID is the Fréchet distance between Gaussian fits of the 2048-d pool features of the TF-ported InceptionV3 that
torch-fidelity ships (``FeatureExtractorInceptionV3``, the network of the original TTUR FID code), computed by
torchmetrics' ``FrechetInceptionDistance`` with ``feature_extractor_weights_path=``. Get the weights file
(``weights-inception-2015-12-05-6726825d.pth``, torch-fidelity's ``URL_INCEPTION_V3``) on a machine with network
access and pass its path. Every other Fréchet distance in this package uses a small domain classifier and is called
FD_clf, never FID.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from .inputs import channels_first

INCEPTION_FEATURES = 2048
INSTALL_HINT = (
    "pip install 'vaebm-hub[evaluation]' (torchmetrics and torch-fidelity; torch-fidelity also imports torchvision, "
    "which must be the build that matches your torch)"
)


def check_inception_weights(weights_path: str | os.PathLike) -> Path:
    """``weights_path`` as a ``Path`` if it is a file, else a ``FileNotFoundError`` that says how to get one."""
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Inception weights {str(path)!r} not found. Real FID needs torch-fidelity's InceptionV3 weights "
            "(weights-inception-2015-12-05-6726825d.pth, the URL_INCEPTION_V3 of torch_fidelity."
            "feature_extractor_inceptionv3); download the file where there is network access and pass its path."
        )
    return path


def _frechet_inception_distance(weights_path: Path, **kwargs):
    """torchmetrics' FID metric on the InceptionV3 loaded from ``weights_path``, with clear errors."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except (ImportError, RuntimeError) as error:  # a torchvision built for another torch fails with RuntimeError
        raise ModuleNotFoundError(
            f"Inception FID needs torchmetrics and torch-fidelity: {INSTALL_HINT}. ({error})"
        ) from error
    try:
        # antialias=False (torchmetrics >= 1.8) resizes to 299×299 as torch-fidelity and the TF reference code do.
        return FrechetInceptionDistance(
            feature=INCEPTION_FEATURES,
            normalize=True,
            feature_extractor_weights_path=str(weights_path),
            antialias=False,
            **kwargs,
        )
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(f"Inception FID needs torch-fidelity: {INSTALL_HINT}. ({error})") from error
    except (RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as error:
        raise ValueError(
            f"{str(weights_path)!r} is not torch-fidelity's InceptionV3 state dict "
            f"(weights-inception-2015-12-05-6726825d.pth): {error}"
        ) from error


def _checked_images(images: np.ndarray, name: str) -> torch.Tensor:
    """(N, 3, H, W) float tensor in [0, 1]: grey images repeated to 3 channels; N ≥ 2."""
    images = torch.from_numpy(channels_first(images, name))
    if len(images) < 2:
        raise ValueError(f"{name} has {len(images)} image(s); FID needs at least 2 per set")
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


class InceptionFID:
    """FID of sample sets against one fixed ``reference`` set, whose Inception features are extracted only once.

    ``InceptionFID(reference, weights_path)(samples)`` → FID = ‖μ_r − μ_s‖² + tr(Σ_r + Σ_s − 2 (Σ_r Σ_s)^{1/2}) on
    InceptionV3 pool features (2048-d). Images are in [0, 1], channels-last or channels-first; grey images are
    repeated to 3 channels and every image is resized to 299×299 inside the network. Each set needs ≥ 2 images (use
    thousands for a meaningful number: FID is biased upwards at small N). torch-fidelity loads ``weights_path`` with
    ``torch.load(weights_only=False)``, so only pass a file you trust.
    """

    def __init__(
        self,
        reference: np.ndarray,
        weights_path: str | os.PathLike,
        *,
        batch_size: int = 50,
        device: str | torch.device = "cpu",
    ) -> None:
        weights = check_inception_weights(weights_path)
        reference = _checked_images(reference, "reference")
        self.batch_size, self.device = batch_size, device
        self.metric = _frechet_inception_distance(weights, reset_real_features=False).to(device)
        self._update(reference, real=True)

    def _update(self, images: torch.Tensor, real: bool) -> None:
        for chunk in images.split(self.batch_size):
            self.metric.update(chunk.to(self.device), real=real)

    def __call__(self, samples: np.ndarray) -> float:
        samples = _checked_images(samples, "samples")
        self.metric.reset()  # keeps the reference statistics (reset_real_features=False)
        self._update(samples, real=False)
        return float(self.metric.compute())


def inception_fid(
    samples: np.ndarray,
    reference: np.ndarray,
    weights_path: str | os.PathLike,
    *,
    batch_size: int = 50,
    device: str | torch.device = "cpu",
) -> float:
    """FID between ``samples`` and ``reference`` on the InceptionV3 weights at ``weights_path`` (see
    :class:`InceptionFID`; use that class to score several sample sets against one reference)."""
    _checked_images(samples, "samples")  # fail on bad samples before the network is built
    return InceptionFID(reference, weights_path, batch_size=batch_size, device=device)(samples)
