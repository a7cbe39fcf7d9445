"""Methods every VAEBM VAE shares, built on its noise layout, decoder and encoder pass.

A VAE provides ``latent_shapes``, ``data_shape``, ``has_pixel_noise``, ``decode_noise(eps_z, t)``,
``output_distribution(logits)``, ``check_images(x)`` and ``forward(x, posterior_noise, generator)``.
"""

from __future__ import annotations

import math

import torch

from .noise_space import NoiseSpaceMixin


class VAEBMVAEMixin(NoiseSpaceMixin):
    def posterior_noise(
        self,
        x: torch.Tensor,
        noise: list[torch.Tensor] | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> list[torch.Tensor]:
        """The per-group noise of a posterior sample: ``noise`` if given, else drawn with ``generator``."""
        if noise is not None:
            return noise
        eps = self.sample_noise(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        return self.split_noise(eps)[0]

    def generate(self, eps: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Data from flat noise ``eps`` (B, D): the decoder mean of ``z = T_z(eps_z)`` (images in ``[0, 1]``)."""
        eps_z, _ = self.split_noise(eps)
        return self.output_distribution(self.decode_noise(eps_z, temperature).logits).mean

    def reconstruction_log_prob(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """``log p(x|z)`` summed per example (B,)."""
        return self.output_distribution(logits).log_prob(x).flatten(1).sum(dim=1)

    def elbo(self, x: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
        """Single-sample ELBO ``log p(x|z) - sum_l KL_l`` per example (B,)."""
        out = self(x, generator=generator)
        return self.reconstruction_log_prob(x, out.logits) - sum(out.kl_all)

    def importance_weighted_log_likelihood(
        self, x: torch.Tensor, num_samples: int = 16, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """IWAE bound ``log (1/K) sum_k p(x, z_k) / q(z_k|x)`` per example (B,), tighter than the ELBO as K grows."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        log_weights = []
        for _ in range(num_samples):
            out = self(x, generator=generator)
            log_weights.append(self.reconstruction_log_prob(x, out.logits) + out.log_p - out.log_q)
        return torch.logsumexp(torch.stack(log_weights), dim=0) - math.log(num_samples)
