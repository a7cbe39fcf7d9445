"""The pipeline's output dataclass and its array conversion (shared by every sampler that mimics the pipeline)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput


@dataclass
class VAEBMPipelineOutput(BaseOutput):
    """``images``: PIL list, ``(B, H, W, C)`` array in [0, 1], ``(B, C, H, W)`` tensor, or the final noise ``(B, D)``
    for ``output_type="latent"``. ``energy_trace``: ``(K + 1, B)`` energies along the chain when requested.
    ``kept``: indices of the returned chains (all of them unless ``drop_nonfinite=True`` dropped some)."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    energy_trace: torch.Tensor | None = None
    kept: torch.Tensor | None = None


def samples_to_numpy(samples: torch.Tensor) -> np.ndarray:
    """Float32 numpy samples: images ``(B, C, H, W)`` become ``(B, H, W, C)``, vectors stay ``(B, D)``."""
    array = samples.detach().float().cpu()
    if array.dim() == 4:
        array = array.permute(0, 2, 3, 1)
    return array.numpy()
