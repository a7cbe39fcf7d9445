"""The VAE's reparameterised noise space ``eps = (eps_z groups..., eps_x)`` as one flat tensor.

VAEBM's Langevin chain moves every latent group and the pixel noise at once. Keeping ``eps`` as a single
``(B, D)`` tensor makes every sampler operation one vectorised op; the VAE splits it into per-group views
(no copies) only where it decodes.

A chain may also move the latent noise alone (``eps = eps_z``, ``D = latent_dim``; the sample is then the decoder
mean): :meth:`NoiseSpaceMixin.split_noise` accepts both widths, and ``sample_noise(..., pixel_noise=False)`` draws
the shorter one.
"""

from __future__ import annotations

import math

import torch
from diffusers.utils.torch_utils import randn_tensor


class NoiseSpaceMixin:
    """Flat noise layout for a VAE with ``latent_shapes`` (per group, no batch) and ``data_shape``.

    Subclasses define ``latent_shapes``, ``data_shape`` and ``has_pixel_noise``.
    """

    latent_shapes: list[tuple[int, ...]]
    data_shape: tuple[int, ...]
    has_pixel_noise: bool

    @property
    def noise_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the parts of ``eps``: one per latent group, then the pixel noise if the decoder has one."""
        return list(self.latent_shapes) + ([tuple(self.data_shape)] if self.has_pixel_noise else [])

    @property
    def noise_dim(self) -> int:
        return sum(math.prod(shape) for shape in self.noise_shapes)

    @property
    def latent_dim(self) -> int:
        return sum(math.prod(shape) for shape in self.latent_shapes)

    def noise_dim_for(self, pixel_noise: bool) -> int:
        """Width of ``eps`` for chains with (``noise_dim``) or without (``latent_dim``) the pixel noise."""
        return self.noise_dim if pixel_noise else self.latent_dim

    def split_noise(self, eps: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """``(B, D)`` -> (list of ``eps_z`` views shaped ``(B, *group_shape)``, ``eps_x`` or ``None``).

        ``D`` is ``noise_dim`` (latent groups, then pixel noise) or ``latent_dim`` (latent groups only: ``eps_x`` is
        then ``None``).
        """
        widths = {self.noise_dim, self.latent_dim}
        if eps.dim() != 2 or eps.shape[1] not in widths:
            expected = " or ".join(f"(batch, {w})" for w in sorted(widths, reverse=True))
            raise ValueError(
                f"noise must have shape {expected} for this VAE, got {tuple(eps.shape)}; "
                "draw it with `vae.sample_noise(batch_size, generator=...)`."
            )
        shapes = self.noise_shapes if eps.shape[1] == self.noise_dim else list(self.latent_shapes)
        sizes = [math.prod(shape) for shape in shapes]
        parts = [p.view(eps.shape[0], *shape) for p, shape in zip(eps.split(sizes, dim=1), shapes)]
        if len(parts) > len(self.latent_shapes):
            return parts[:-1], parts[-1]
        return parts, None

    def merge_noise(self, eps_z: list[torch.Tensor], eps_x: torch.Tensor | None = None) -> torch.Tensor:
        """Inverse of :meth:`split_noise`."""
        parts = list(eps_z) + ([eps_x] if self.has_pixel_noise else [])
        if len(parts) != len(self.noise_shapes):
            raise ValueError(
                f"expected {len(self.latent_shapes)} latent groups (+ pixel noise: {self.has_pixel_noise})"
            )
        return torch.cat([p.reshape(p.shape[0], -1) for p in parts], dim=1)

    def sample_noise(
        self,
        batch_size: int,
        generator: torch.Generator | list[torch.Generator] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        pixel_noise: bool = True,
    ) -> torch.Tensor:
        """Standard-normal ``eps`` of shape ``(batch_size, noise_dim)`` (``latent_dim`` without ``pixel_noise``); a
        list of generators seeds each row."""
        width = self.noise_dim_for(pixel_noise)
        return randn_tensor((batch_size, width), generator=generator, device=device, dtype=dtype)
