r"""The Langevin step size from the decoder's scale, instead of by hand.

A step moves the noise by ``sqrt(eta)`` per coordinate (its noise term), which the decoder turns into a move of the
sample of about ``g * sqrt(eta)`` per data coordinate, with the decoder's *gain*

    g = rms_b,i [ (J_b d_b)_i ] / rms_b,j [ (d_b)_j ],   d ~ N(0, I),   J_b = dT/deps at eps_b ~ N(0, I)

(estimated by finite differences on a batch of prior noise). Asking that one step move the sample by a fixed fraction
``f`` of the data's own per-coordinate spread ``s`` gives

    eta = (f * s / g)^2

so that a decoder that magnifies noise (the 2-D toy's: a unit move of ``eps`` moves ``x`` by 3) gets a small step,
and one that damps it (an MNIST decoder mean: 0.38) a large one. ``f = 0.02`` gives the toy 3.3e-4, the value a
search found (``docs/results.md``); for images the per-coordinate spread understates how far a step can go (MNIST's
search found 1e-3 where the rule says 1.4e-4), so the image presets keep searched values and the ``gaussians25``
preset uses the rule (``langevin_step_size="auto"``).
"""

from __future__ import annotations

import torch
from torch import nn

DEFAULT_FRACTION = 0.02
FINITE_DIFFERENCE = 1e-2


@torch.no_grad()
def decoder_gain(
    vae: nn.Module, *, pixel_noise: bool = True, num_samples: int = 256, generator: torch.Generator | None = None
) -> float:
    """The rms move of ``T(eps)`` per coordinate for a unit rms move of ``eps`` (see the module docstring)."""
    generator = generator or torch.Generator().manual_seed(0)
    eps = vae.sample_noise(num_samples, generator=generator, pixel_noise=pixel_noise)
    direction = torch.randn(eps.shape, generator=generator)
    eps, direction = eps.to(vae.device, vae.dtype), direction.to(vae.device, vae.dtype)
    moved = vae.noise_to_data(eps + FINITE_DIFFERENCE * direction).x - vae.noise_to_data(eps).x
    return float(moved.flatten(1).pow(2).mean().sqrt() / (FINITE_DIFFERENCE * direction.pow(2).mean().sqrt()))


def suggest_step_size(
    vae: nn.Module, data: torch.Tensor, *, pixel_noise: bool = True, fraction: float = DEFAULT_FRACTION
) -> float:
    """``eta = (fraction * s / g)^2`` with ``s`` the per-coordinate standard deviation of ``data`` (N, ...) (its rms
    over coordinates) and ``g`` :func:`decoder_gain`."""
    spread = float(data.flatten(1).std(dim=0).pow(2).mean().sqrt())
    gain = decoder_gain(vae, pixel_noise=pixel_noise)
    if not (spread > 0 and gain > 0):
        raise ValueError(f"cannot pick a step size: data spread {spread:g}, decoder gain {gain:g} (both must be > 0)")
    return (fraction * spread / gain) ** 2
