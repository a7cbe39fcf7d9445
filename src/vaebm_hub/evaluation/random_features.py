"""A second, independent feature space for sample quality: a fixed random convolutional embedding.

FD_clf measures distances in the features of a classifier trained on the dataset; a claim that rests on one learned
feature space may be an artefact of what that classifier attends to. This embedding shares nothing with it — no
training, no data, another architecture: three 5×5 convolutions (16, 32, 64 channels; stride 1, 2, 2) with
orthonormal filters (times 2) drawn from a fixed seed, tanh activations, and per-channel mean *and* max pooling of
every layer (224 numbers per channel of the image). Random networks are known to give informative, if less sharp,
distribution distances (Naeem et al., 2020). Its Fréchet distance is reported as ``fd_rand``, beside its own
real-vs-real floor.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from .classifier import ArrayLike

RANDOM_EMBEDDING_SEED = 20210104  # fixed forever: changing it changes every fd_rand ever reported
WIDTHS = (16, 32, 64)
WEIGHT_GAIN = 2.0  # keeps the tanh units out of saturation for inputs in [-1, 1]


class RandomEmbedding(nn.Module):
    """(N, 1, H, W) images in [0, 1] → (N, 2 · (16 + 32 + 64)) features; deterministic, never trained."""

    def __init__(self, seed: int = RANDOM_EMBEDDING_SEED) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        layers, c_in = [], 1
        for i, c_out in enumerate(WIDTHS):
            conv = nn.Conv2d(c_in, c_out, 5, stride=1 if i == 0 else 2, padding=2)
            weight = torch.empty(c_out, c_in * 25)
            nn.init.orthogonal_(weight, generator=generator)
            with torch.no_grad():
                conv.weight.copy_(WEIGHT_GAIN * weight.view_as(conv.weight))  # orthonormal filters, gain 2
                conv.bias.zero_()
            layers.append(conv)
            c_in = c_out
        self.layers = nn.ModuleList(layers).requires_grad_(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, pooled = 2 * x - 1, []
        for conv in self.layers:
            h = torch.tanh(conv(h))
            pooled += [h.mean(dim=(2, 3)), h.amax(dim=(2, 3))]
        return torch.cat(pooled, dim=1)


@functools.lru_cache(maxsize=1)
def _embedding() -> RandomEmbedding:
    return RandomEmbedding().eval()


def random_features(images: ArrayLike, batch_size: int = 1024) -> np.ndarray:
    """Random-embedding features (N, C · 224) float64 of images (N, C, H, W) in [0, 1]; each channel is embedded on
    its own and the channels' features are concatenated (as the classifier features of stacks are)."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if x.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    net = _embedding()
    parts = [torch.cat([net(chunk) for chunk in x[:, c : c + 1].split(batch_size)]) for c in range(x.shape[1])]
    return torch.cat(parts, dim=1).double().numpy()
