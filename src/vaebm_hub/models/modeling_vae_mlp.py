"""``VAEBMMLPVAE``: a small MLP VAE for low-dimensional data (the 2-D 25-Gaussians toy).

One latent group ``z ~ N(0, t^2 I)`` (``z = t eps_z``), a Gaussian decoder ``x = mu(z) + sigma(z) eps_x`` in raw data
units (no ``[0, 1]`` mapping, no clamping), and a Gaussian encoder ``q(z|x)``. It exposes the same noise-space API as
:class:`VAEBMVAE`, so the pipeline, potential and trainer treat both alike.
"""

from __future__ import annotations

import torch
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from .distributions import SoftClampedNormal
from .layers import gaussian_log_prob
from .modeling_vae import PriorSample, VAEBMVAEOutput
from .spectral import SpectralRegularizationMixin
from .vae_mixin import VAEBMVAEMixin


def mlp(in_features: int, hidden: int, out_features: int, num_layers: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(num_layers):
        layers += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class VectorGaussianDecoder:
    """``p(x|z) = N(mu, sigma^2)`` on raw vectors; ``rsample(eps_x) = mu + sigma eps_x``."""

    reparameterizable = True

    def __init__(self, logits: torch.Tensor, sigma_offset: float) -> None:
        mu_raw, log_sigma_raw = logits.chunk(2, dim=1)
        self.dist = SoftClampedNormal(mu_raw, log_sigma_raw, 1.0, None, sigma_offset)

    @property
    def mean(self) -> torch.Tensor:
        return self.dist.mu

    def rsample(self, eps_x: torch.Tensor) -> torch.Tensor:
        return self.dist.sample(eps_x)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.dist.log_prob(x)


class VAEBMMLPVAE(ModelMixin, ConfigMixin, VAEBMVAEMixin, SpectralRegularizationMixin):
    """MLP VAE on vectors of ``in_features`` with a ``latent_dim``-dimensional standard-normal prior.

    ``spectral_norm_loss()`` regularises every ``nn.Linear`` weight of the encoder and decoder.
    """

    @register_to_config
    def __init__(
        self,
        in_features: int = 2,
        latent_dim: int = 2,
        hidden_dim: int = 128,
        num_layers: int = 2,
        sigma_offset: float = 1e-3,
    ) -> None:
        super().__init__()
        if in_features < 1 or latent_dim < 1:
            raise ValueError("in_features and latent_dim must be >= 1")
        self.encoder = mlp(in_features, hidden_dim, 2 * latent_dim, num_layers)
        self.decoder = mlp(latent_dim, hidden_dim, 2 * in_features, num_layers)
        self.latent_shapes = [(latent_dim,)]
        self.data_shape = (in_features,)

    def _spectral_matrices(self) -> list[tuple[str, torch.Tensor]]:
        return [(name, module.weight) for name, module in self.named_modules() if isinstance(module, nn.Linear)]

    @property
    def has_pixel_noise(self) -> bool:
        return True

    def output_distribution(self, logits: torch.Tensor, likelihood_clamp: bool = True) -> VectorGaussianDecoder:
        """``p(x|z)``; this decoder has no likelihood clamp, so ``likelihood_clamp`` changes nothing."""
        return VectorGaussianDecoder(logits, self.config.sigma_offset)

    def decode_noise(self, eps_z: list[torch.Tensor], temperature: float = 1.0) -> PriorSample:
        """``z = t eps_z``, decoder parameters and ``log N(z; 0, t^2 I)`` (B,)."""
        if len(eps_z) != 1:
            raise ValueError(f"expected 1 latent noise group, got {len(eps_z)}")
        z = temperature * eps_z[0]
        log_p = gaussian_log_prob(z, torch.zeros_like(z), torch.full_like(z, temperature)).sum(dim=1)
        return PriorSample(logits=self.decoder(z), z=[z], log_p_z=log_p)

    def check_images(self, x: torch.Tensor) -> None:
        """Raise a ``ValueError`` unless ``x`` is a finite ``(B, in_features)`` batch."""
        if x.dim() != 2 or x.shape[1] != self.config.in_features:
            raise ValueError(f"inputs must have shape (B, {self.config.in_features}), got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("inputs contain NaN or Inf values")

    def forward(
        self,
        x: torch.Tensor,
        posterior_noise: list[torch.Tensor] | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> VAEBMVAEOutput:
        """Encoder pass: ``z ~ q(z|x)``, decoder logits, ``log q``, ``log p`` and the analytic KL."""
        self.check_images(x)
        posterior_noise = self.posterior_noise(x, posterior_noise, generator)
        mu, log_sigma = self.encoder(x).chunk(2, dim=1)
        q = SoftClampedNormal(mu, log_sigma, 1.0, None, self.config.sigma_offset)
        z = q.sample(posterior_noise[0])
        zeros = torch.zeros_like(z)
        p = SoftClampedNormal(zeros, zeros, 1.0, None, 0.0)
        kl = q.kl(p)
        return VAEBMVAEOutput(
            logits=self.decoder(z),
            z=[z],
            log_q=q.log_prob(z).sum(dim=1),
            log_p=p.log_prob(z).sum(dim=1),
            kl_all=[kl.sum(dim=1)],
            kl_diag=[kl.mean(dim=0)],
        )
