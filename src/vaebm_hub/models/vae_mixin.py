"""Methods every VAEBM VAE shares, built on its noise layout, decoder and encoder pass.

A VAE provides ``latent_shapes``, ``data_shape``, ``has_pixel_noise``, ``decode_noise(eps_z, t)``,
``output_distribution(logits)``, ``check_images(x)`` and ``forward(x, posterior_noise, generator)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .noise_space import NoiseSpaceMixin


@dataclass
class NoiseDecoding:
    """``eps -> x`` in full: the prior pass ``prior`` (logits, ``z``, ``log p(z)``), the decoder distribution
    ``p(x|z)`` and the data ``x`` — the decoder sample ``T_x(z, eps_x)`` when ``eps`` carries pixel noise, else the
    decoder mean."""

    prior: object
    decoder: object
    x: torch.Tensor


class VAEBMVAEMixin(NoiseSpaceMixin):
    @property
    def has_bernoulli_decoder(self) -> bool:
        """Whether ``p(x|z)`` is per-pixel Bernoulli (no reparameterised sample; NVAE's MNIST decoder)."""
        return getattr(self.config, "decoder_distribution", None) == "bernoulli"

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

    @torch.no_grad()
    def readjust_batch_norm(
        self,
        num_batches: int = 100,
        batch_size: int = 64,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> int:
        """Re-estimate the batch-norm statistics of the generative path from prior samples (NVAE's
        ``--readjust_bn``); returns how many batch-norm layers were re-estimated.

        Training leaves running statistics measured on posterior samples ``z ~ q(z|x)``, but sampling decodes prior
        samples ``z ~ p(z)``, whose activations differ. Every batch-norm layer the prior path runs through gets the
        exact average of its batch statistics over ``num_batches`` batches of ``batch_size`` prior samples at
        ``temperature`` (torch's cumulative average, ``momentum=None``; NVAE instead runs its 0.05-momentum update for
        500 train-mode passes); layers off that path (the encoder) keep their statistics.
        """
        if num_batches < 1 or batch_size < 2:
            raise ValueError(f"need num_batches >= 1 and batch_size >= 2, got {num_batches} and {batch_size}")
        norms = [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
                 for m in norms]  # fmt: skip
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        was_training, completed = self.training, False
        self.train()
        try:
            for _ in range(num_batches):
                eps = self.sample_noise(batch_size, generator=generator, device=self.device, dtype=self.dtype)
                self.decode_noise(self.split_noise(eps)[0], temperature)
            completed = True
        finally:
            self.train(was_training)
            for m, (mean, var, count, momentum) in zip(norms, saved):
                m.momentum = momentum
                if not completed or int(m.num_batches_tracked) == 0:  # interrupted, or not on the prior path
                    m.running_mean.copy_(mean)
                    m.running_var.copy_(var)
                    m.num_batches_tracked.copy_(count)
        return sum(int(m.num_batches_tracked) == num_batches for m in norms)

    def noise_to_data(self, eps: torch.Tensor, temperature: float = 1.0) -> NoiseDecoding:
        """The VAE's reparameterised map ``T(eps)`` for flat noise ``eps`` (B, D): ``z = T_z(eps_z)`` by ancestral
        sampling at ``temperature``, then ``x = T_x(z, eps_x)`` (or the decoder mean without pixel noise)."""
        eps_z, eps_x = self.split_noise(eps)
        prior = self.decode_noise(eps_z, temperature)
        decoder = self.output_distribution(prior.logits)
        x = decoder.rsample(eps_x) if eps_x is not None else decoder.mean
        return NoiseDecoding(prior=prior, decoder=decoder, x=x)

    def generate(self, eps: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Data from flat noise ``eps`` (B, D): the decoder mean of ``z = T_z(eps_z)`` (images in ``[0, 1]``)."""
        return self.noise_to_data(eps[:, : self.latent_dim], temperature).x  # the latent part alone: the mean

    def reconstruction_log_prob(
        self, x: torch.Tensor, logits: torch.Tensor, likelihood_clamp: bool = False
    ) -> torch.Tensor:
        """``log p(x|z)`` summed per example (B,): NVAE's likelihood, or with ``likelihood_clamp`` VAEBM's
        sampling-time clamped one (see ``output_distribution``)."""
        distribution = self.output_distribution(logits, likelihood_clamp=likelihood_clamp)
        return distribution.log_prob(x).flatten(1).sum(dim=1)

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
