"""The VAE's reparameterised noise space ``eps = (eps_z groups..., eps_x)`` as one flat tensor.

VAEBM's Langevin chain moves every latent group and the pixel noise at once. Keeping ``eps`` as a single
``(B, D)`` tensor makes every sampler operation one vectorised op; the VAE splits it into per-group views
(no copies) only where it decodes.
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

    def split_noise(self, eps: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """``(B, D)`` -> (list of ``eps_z`` views shaped ``(B, *group_shape)``, ``eps_x`` or ``None``)."""
        if eps.dim() != 2 or eps.shape[1] != self.noise_dim:
            raise ValueError(
                f"noise must have shape (batch, {self.noise_dim}) for this VAE, got {tuple(eps.shape)}; "
                "draw it with `vae.sample_noise(batch_size, generator=...)`."
            )
        sizes = [math.prod(shape) for shape in self.noise_shapes]
        parts = [p.view(eps.shape[0], *shape) for p, shape in zip(eps.split(sizes, dim=1), self.noise_shapes)]
        if self.has_pixel_noise:
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
    ) -> torch.Tensor:
        """Standard-normal ``eps`` of shape ``(batch_size, noise_dim)``; a list of generators seeds each row."""
        return randn_tensor((batch_size, self.noise_dim), generator=generator, device=device, dtype=dtype)
