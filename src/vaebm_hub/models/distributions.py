"""Latent and decoder-output distributions of the VAE.

Images are in ``[0, 1]`` at every public boundary; NVAE works internally in ``[-1, 1]`` (``2x - 1``).

* :class:`SoftClampedNormal` — NVAE's Gaussian: ``mu = softclamp(m)``, ``sigma = (exp(softclamp(s)) + offset) * t``.
  NVAE's offset is 0.01, which is why its top prior has standard deviation ``1.01 t``.
* :class:`GaussianImageDecoder` — reparameterisable by pixel noise ``eps_x`` (what VAEBM samples in).
* :class:`BernoulliImageDecoder`, :class:`LogisticMixtureImageDecoder` — no pixel-noise path; Langevin then runs in
  ``eps_z`` only and images are the decoder mean.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .layers import gaussian_log_prob, soft_clamp


def _clamp(x: torch.Tensor, bound: float | None) -> torch.Tensor:
    return x if bound is None else soft_clamp(x, bound)


class SoftClampedNormal:
    """Diagonal Gaussian parameterised like NVAE's ``Normal``.

    ``mu = softclamp(mu_raw)``, ``sigma = (exp(softclamp(log_sigma_raw)) + sigma_offset) * temperature``;
    ``soft_clamp_bound=None`` disables the soft clamp and ``sigma_offset=0`` removes the 0.01 offset.
    """

    def __init__(
        self,
        mu_raw: torch.Tensor,
        log_sigma_raw: torch.Tensor,
        temperature: float = 1.0,
        soft_clamp_bound: float | None = 5.0,
        sigma_offset: float = 0.01,
    ) -> None:
        self.mu = _clamp(mu_raw, soft_clamp_bound)
        self.sigma = torch.exp(_clamp(log_sigma_raw, soft_clamp_bound)) + sigma_offset
        if temperature != 1.0:
            self.sigma = self.sigma * temperature

    def sample(self, eps: torch.Tensor) -> torch.Tensor:
        """``mu + sigma * eps``."""
        return eps * self.sigma + self.mu

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Element-wise ``log N(x; mu, sigma^2)``."""
        return gaussian_log_prob(x, self.mu, self.sigma)

    def kl(self, other: SoftClampedNormal) -> torch.Tensor:
        """Element-wise analytic ``KL(self || other)``."""
        term1 = (self.mu - other.mu) / other.sigma
        term2 = self.sigma / other.sigma
        return 0.5 * (term1 * term1 + term2 * term2) - 0.5 - torch.log(term2)


class GaussianImageDecoder:
    """``p(x|z)``: per-pixel Gaussian on ``2x - 1`` (NVAE's ``NormalDecoder`` with ``num_mixture_dec=1``).

    ``logits`` carry ``C`` mean channels then ``C`` log-scale channels. ``log_scale_min`` (VAEBM: -2) clamps the
    soft-clamped log-scale from below in :meth:`log_prob` only; sampling uses the unclamped scale, as the official
    code does. ``log_scale_min=None`` gives NVAE's own likelihood.
    """

    reparameterizable = True

    def __init__(
        self,
        logits: torch.Tensor,
        soft_clamp_bound: float | None = 5.0,
        sigma_offset: float = 0.01,
        log_scale_min: float | None = -2.0,
    ) -> None:
        mu_raw, log_sigma_raw = logits.chunk(2, dim=1)
        self.dist = SoftClampedNormal(mu_raw, log_sigma_raw, 1.0, soft_clamp_bound, sigma_offset)
        self.mu = self.dist.mu
        self.sigma = self.dist.sigma
        if log_scale_min is None:
            self.likelihood_sigma = self.sigma
        else:
            log_sigma = _clamp(log_sigma_raw, soft_clamp_bound)
            self.likelihood_sigma = torch.exp(torch.clamp(log_sigma, min=log_scale_min)) + sigma_offset

    @property
    def mean(self) -> torch.Tensor:
        """Decoder mean mapped to ``[0, 1]``: ``clamp(mu / 2 + 1/2, 0, 1)``."""
        return torch.clamp(self.mu / 2 + 0.5, 0.0, 1.0)

    def rsample(self, eps_x: torch.Tensor) -> torch.Tensor:
        """``clamp(mu + sigma * eps_x, -1, 1) / 2 + 1/2`` in ``[0, 1]``."""
        return torch.clamp(self.dist.sample(eps_x), -1.0, 1.0) / 2 + 0.5

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel ``log N(2x - 1; mu, sigma'^2)`` for ``x`` in ``[0, 1]`` (no Jacobian for the ``2x - 1`` map,
        as in NVAE)."""
        return gaussian_log_prob(2 * x - 1, self.mu, self.likelihood_sigma)


class BernoulliImageDecoder:
    """Per-pixel Bernoulli with logits (NVAE's MNIST decoder)."""

    reparameterizable = False

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits

    @property
    def mean(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    def rsample(self, eps_x: torch.Tensor | None = None) -> torch.Tensor:
        """No reparameterised sample exists; returns the mean (VAEBM then samples in ``eps_z`` only)."""
        return self.mean

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``x * logits - softplus(logits)`` per pixel."""
        return x * self.logits - F.softplus(self.logits)


class LogisticMixtureImageDecoder:
    """NVAE's discretised mixture of logistics for RGB images with autoregressive colour coupling.

    Logit layout: ``M`` mixture logits, then ``(3, 3M)`` per colour: ``M`` means, ``M`` log-scales (clamped at -7),
    ``M`` coupling coefficients (tanh).
    """

    reparameterizable = False

    def __init__(self, logits: torch.Tensor, num_mixtures: int, num_bits: int = 8) -> None:
        b, c, h, w = logits.shape
        m = num_mixtures
        if c != 10 * m:
            raise ValueError(f"a {m}-component logistic mixture needs {10 * m} logit channels, got {c}")
        self.num_mixtures = m
        self.max_value = 2.0**num_bits - 1
        self.mixture_logits = logits[:, :m]
        params = logits[:, m:].view(b, 3, 3 * m, h, w)
        self.means = params[:, :, :m]
        self.log_scales = torch.clamp(params[:, :, m : 2 * m], min=-7.0)
        self.coeffs = torch.tanh(params[:, :, 2 * m : 3 * m])

    @property
    def mean(self) -> torch.Tensor:
        """NVAE's ``mean()``: mixture-weighted means with the colour coupling, clamped, in ``[0, 1]``
        (not the exact mixture mean)."""
        weights = torch.softmax(self.mixture_logits, dim=1).unsqueeze(1)
        means = (self.means * weights).sum(dim=2)
        coeffs = (self.coeffs * weights).sum(dim=2)
        r = torch.clamp(means[:, 0], -1, 1)
        g = torch.clamp(means[:, 1] + coeffs[:, 0] * r, -1, 1)
        b = torch.clamp(means[:, 2] + coeffs[:, 1] * r + coeffs[:, 2] * g, -1, 1)
        return torch.stack([r, g, b], dim=1) / 2 + 0.5

    def rsample(self, eps_x: torch.Tensor | None = None) -> torch.Tensor:
        """No reparameterised sample exists (mixture selection is discrete); returns :attr:`mean`."""
        return self.mean

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Discretised log-likelihood ``(B, H, W)`` of ``x`` in ``[0, 1]`` (summed over colours)."""
        x = (2 * x - 1).unsqueeze(2)  # B, 3, 1, H, W
        r, g = x[:, 0], x[:, 1]
        mean_r = self.means[:, 0]
        mean_g = self.means[:, 1] + self.coeffs[:, 0] * r
        mean_b = self.means[:, 2] + self.coeffs[:, 1] * r + self.coeffs[:, 2] * g
        centered = x - torch.stack([mean_r, mean_g, mean_b], dim=1)
        inv_scale = torch.exp(-self.log_scales)
        half_bin = 1.0 / self.max_value
        plus_in = inv_scale * (centered + half_bin)
        min_in = inv_scale * (centered - half_bin)
        cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
        log_cdf_plus = plus_in - F.softplus(plus_in)
        log_one_minus_cdf_min = -F.softplus(min_in)
        mid_in = inv_scale * centered
        log_pdf_mid = mid_in - self.log_scales - 2.0 * F.softplus(mid_in)
        log_mid = torch.where(
            cdf_delta > 1e-5,
            torch.log(torch.clamp(cdf_delta, min=1e-10)),
            log_pdf_mid - math.log(self.max_value / 2),
        )
        log_probs = torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.99, log_one_minus_cdf_min, log_mid))
        log_probs = log_probs.sum(dim=1) + F.log_softmax(self.mixture_logits, dim=1)
        return torch.logsumexp(log_probs, dim=1)
