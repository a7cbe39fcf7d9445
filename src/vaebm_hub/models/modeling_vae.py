"""``VAEBMVAE``: an NVAE-faithful hierarchical VAE (Vahdat & Kautz, 2020) as a diffusers model.

The generative path mirrors NVAE module for module (``prior_ftr0``, ``dec_tower``, ``dec_sampler``,
``post_process``, ``image_conditional``) and so does the encoder (``stem``, ``pre_process``, ``enc_tower``,
``enc0``, ``enc_sampler``, ``nf_cells``), so official checkpoints import by key (see ``vaebm_hub.convert``).

Latents ``z_l`` come in groups, top (coarsest) first. Sampling from noise ``eps_z`` at temperature ``t``:

* ``z_0 = sigma_0 eps_0`` with ``sigma_0 = (exp(0) + sigma_offset) t`` (NVAE: ``1.01 t``);
* ``z_l = mu_l(z_<l) + sigma_l(z_<l) eps_l`` with ``(mu_l, log sigma_l)`` soft-clamped and ``sigma_l`` scaled by ``t``.

NVAE's quirks are config flags whose defaults reproduce the official behaviour: ``sigma_offset=0.01`` (the 1.01 top
scale), ``soft_clamp_bound=5.0``, ``residual_scale=0.1`` and VAEBM's likelihood clamp
``likelihood_log_scale_min=-2.0`` (``None`` gives NVAE's unclamped likelihood). As in the official code, that clamp
only enters the ``"official"`` Langevin potential: the VAE is trained and scored (ELBO) with NVAE's unclamped
likelihood (``reconstruction_log_prob(..., likelihood_clamp=False)``, the default).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.utils import BaseOutput
from torch import nn

from ..presets import PRESETS
from .distributions import (
    BernoulliImageDecoder,
    GaussianImageDecoder,
    LogisticMixtureImageDecoder,
    SoftClampedNormal,
)
from .layers import WNConv2d, elu_then
from .nvae_cells import CHANNEL_MULT, SUPPORTED_ARCH_INSTANCES, Cell, DecCombinerCell, EncCombinerCell
from .nvae_flows import ARConv2d, PairedCellAR
from .spectral import SpectralRegularizationMixin
from .vae_mixin import VAEBMVAEMixin

DECODER_DISTRIBUTIONS = ("normal", "bernoulli", "discretized_logistic_mixture")

# The VAE architecture of every preset (vaebm_hub.presets: the paper's NVAEs and our CPU-sized ones).
VAE_PRESETS: dict[str, dict] = {name: dict(p.vae) for name, p in PRESETS.items() if p.vae_class == "VAEBMVAE"}


def groups_per_scale(num_scales: int, num_groups: int, adaptive: bool, minimum: int) -> list[int]:
    """Groups at each encoder scale, finest first; with ``adaptive`` the count halves per scale (floor ``minimum``)."""
    groups, n = [], num_groups
    for _ in range(num_scales):
        groups.append(n)
        if adaptive:
            n = max(minimum, n // 2)
    return groups


@dataclass
class PriorSample(BaseOutput):
    """Output of :meth:`VAEBMVAE.decode_noise`: decoder ``logits``, latents ``z`` (top first) and ``log_p_z`` (B,)."""

    logits: torch.Tensor
    z: list[torch.Tensor]
    log_p_z: torch.Tensor


@dataclass
class VAEBMVAEOutput(BaseOutput):
    """Output of the encoder pass :meth:`VAEBMVAE.forward`.

    ``log_q`` (B,) is summed at the pre-flow posterior sample, ``log_p`` (B,) at the post-flow one; ``kl_all`` holds
    one (B,) tensor per group (analytic KL without flows, ``log q - log p`` with flows); ``kl_diag`` one per-channel
    batch-mean vector per group (NVAE's KL-balancing statistic); ``posterior`` and ``prior`` the clamped
    ``(mu, sigma)`` of ``q(z_l | x, z_<l)`` and ``p(z_l | z_<l)`` per group.
    """

    logits: torch.Tensor
    z: list[torch.Tensor]
    log_q: torch.Tensor
    log_p: torch.Tensor
    kl_all: list[torch.Tensor]
    kl_diag: list[torch.Tensor]
    posterior: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    prior: list[tuple[torch.Tensor, torch.Tensor]] | None = None


class VAEBMVAE(ModelMixin, ConfigMixin, VAEBMVAEMixin, SpectralRegularizationMixin):
    """Hierarchical NVAE. Images in ``[0, 1]`` of shape ``(in_channels, sample_size, sample_size)``.

    Defaults are the small digits model of the embedded demo; the paper's configurations are
    :data:`VAE_PRESETS` (``VAEBMVAE.from_preset("cifar10")``).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 1,
        sample_size: int = 8,
        num_channels_enc: int = 16,
        num_channels_dec: int = 16,
        num_latent_scales: int = 1,
        num_groups_per_scale: int = 2,
        num_latent_per_group: int = 4,
        ada_groups: bool = False,
        min_groups_per_scale: int = 1,
        num_preprocess_blocks: int = 1,
        num_preprocess_cells: int = 1,
        num_postprocess_blocks: int = 1,
        num_postprocess_cells: int = 1,
        num_cell_per_cond_enc: int = 1,
        num_cell_per_cond_dec: int = 1,
        decoder_distribution: str = "normal",
        num_mixture_dec: int = 10,
        num_x_bits: int = 8,
        num_nf: int = 0,
        use_se: bool = True,
        res_dist: bool = True,
        arch_instance: str = "res_mbconv",
        soft_clamp_bound: float | None = 5.0,
        sigma_offset: float = 0.01,
        residual_scale: float = 0.1,
        likelihood_log_scale_min: float | None = -2.0,
    ) -> None:
        super().__init__()
        self._check_config()
        primitives = SUPPORTED_ARCH_INSTANCES[arch_instance]
        self.groups_per_scale = groups_per_scale(
            num_latent_scales, num_groups_per_scale, ada_groups, min_groups_per_scale
        )
        cell_kw = dict(use_se=use_se, residual_scale=residual_scale)

        def cell(c_in: int, c_out: int, cell_type: str) -> Cell:
            return Cell(c_in, c_out, cell_type, primitives[cell_type], **cell_kw)

        enc, dec = num_channels_enc, num_channels_dec
        mult = 1
        self.stem = WNConv2d(in_channels, enc, 3, padding=1, bias=True)

        self.pre_process = nn.ModuleList()
        for _ in range(num_preprocess_blocks):
            for c in range(num_preprocess_cells):
                if c == num_preprocess_cells - 1:
                    self.pre_process.append(cell(enc * mult, CHANNEL_MULT * enc * mult, "down_pre"))
                    mult *= CHANNEL_MULT
                else:
                    self.pre_process.append(cell(enc * mult, enc * mult, "normal_pre"))

        self.enc_tower = nn.ModuleList()
        for s in range(num_latent_scales):
            for g in range(self.groups_per_scale[s]):
                for _ in range(num_cell_per_cond_enc):
                    self.enc_tower.append(cell(enc * mult, enc * mult, "normal_enc"))
                if not (s == num_latent_scales - 1 and g == self.groups_per_scale[s] - 1):
                    self.enc_tower.append(EncCombinerCell(enc * mult, dec * mult))
            if s < num_latent_scales - 1:
                self.enc_tower.append(cell(enc * mult, CHANNEL_MULT * enc * mult, "down_enc"))
                mult *= CHANNEL_MULT

        self.enc0 = nn.Sequential(nn.ELU(), WNConv2d(enc * mult, enc * mult, 1, bias=True), nn.ELU())

        self.enc_sampler, self.dec_sampler, self.nf_cells = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        sampler_mult = mult
        for s in range(num_latent_scales):
            for g in range(self.groups_per_scale[num_latent_scales - s - 1]):
                self.enc_sampler.append(
                    WNConv2d(enc * sampler_mult, 2 * num_latent_per_group, 3, padding=1, bias=True)
                )
                for _ in range(num_nf):
                    self.nf_cells.append(PairedCellAR(num_latent_per_group))
                if not (s == 0 and g == 0):
                    self.dec_sampler.append(
                        elu_then(WNConv2d(dec * sampler_mult, 2 * num_latent_per_group, 1, bias=True))
                    )
            sampler_mult //= CHANNEL_MULT

        top_size = sample_size // 2 ** (num_preprocess_blocks + num_latent_scales - 1)
        self.prior_ftr0 = nn.Parameter(torch.rand(dec * mult, top_size, top_size))

        self.dec_tower = nn.ModuleList()
        latent_shapes = []
        size = top_size
        for s in range(num_latent_scales):
            for g in range(self.groups_per_scale[num_latent_scales - s - 1]):
                if not (s == 0 and g == 0):
                    for _ in range(num_cell_per_cond_dec):
                        self.dec_tower.append(cell(dec * mult, dec * mult, "normal_dec"))
                self.dec_tower.append(DecCombinerCell(dec * mult, num_latent_per_group))
                latent_shapes.append((num_latent_per_group, size, size))
            if s < num_latent_scales - 1:
                self.dec_tower.append(cell(dec * mult, dec * mult // CHANNEL_MULT, "up_dec"))
                mult //= CHANNEL_MULT
                size *= 2

        self.post_process = nn.ModuleList()
        for _ in range(num_postprocess_blocks):
            for c in range(num_postprocess_cells):
                if c == 0:
                    self.post_process.append(cell(dec * mult, dec * mult // CHANNEL_MULT, "up_post"))
                    mult //= CHANNEL_MULT
                else:
                    self.post_process.append(cell(dec * mult, dec * mult, "normal_post"))

        self.image_conditional = elu_then(WNConv2d(dec * mult, self.num_output_channels, 3, padding=1, bias=True))
        self.latent_shapes = latent_shapes
        self.data_shape = (in_channels, sample_size, sample_size)

    # ------------------------------------------------------------------ configuration helpers
    @classmethod
    def from_preset(cls, name: str, **overrides) -> VAEBMVAE:
        """Build one of :data:`VAE_PRESETS` (untrained), with keyword overrides."""
        if name not in VAE_PRESETS:
            raise ValueError(f"unknown VAE preset {name!r}; choose one of {sorted(VAE_PRESETS)}")
        return cls(**{**VAE_PRESETS[name], **overrides})

    def _check_config(self) -> None:
        c = self.config
        if c.decoder_distribution not in DECODER_DISTRIBUTIONS:
            raise ValueError(
                f"decoder_distribution must be one of {DECODER_DISTRIBUTIONS}, got {c.decoder_distribution!r}"
            )
        if c.arch_instance not in SUPPORTED_ARCH_INSTANCES:
            raise ValueError(
                f"arch_instance {c.arch_instance!r} is not supported; use one of {list(SUPPORTED_ARCH_INSTANCES)}"
            )
        if c.decoder_distribution == "discretized_logistic_mixture" and c.in_channels != 3:
            raise ValueError("the discretized logistic mixture decoder models RGB images (in_channels=3)")
        if c.num_latent_scales == 1 and c.num_groups_per_scale == 1:
            raise ValueError(
                "NVAE's single-group 'vanilla VAE' variant is not supported; use num_groups_per_scale >= 2"
            )
        if c.num_postprocess_blocks != c.num_preprocess_blocks:
            raise ValueError(
                "num_postprocess_blocks must equal num_preprocess_blocks (the decoder undoes each down-sampling)"
            )
        factor = 2 ** (c.num_preprocess_blocks + c.num_latent_scales - 1)
        if c.sample_size % factor:
            raise ValueError(
                f"sample_size={c.sample_size} must be divisible by 2**(num_preprocess_blocks + num_latent_scales - 1)"
                f" = {factor}"
            )  # fmt: skip

    def _spectral_matrices(self) -> list[tuple[str, torch.Tensor]]:
        """Every convolution's effective weight as ``(C_out, C_in k k)`` — NVAE's weight-norm spectral
        regulariser (``spectral_norm_loss``) covers all of them, masked flow convs included."""
        return [
            (name, module.effective_weight().flatten(1))
            for name, module in self.named_modules()
            if isinstance(module, (WNConv2d, ARConv2d))
        ]

    @property
    def num_output_channels(self) -> int:
        c = self.config
        if c.decoder_distribution == "normal":
            return 2 * c.in_channels
        if c.decoder_distribution == "bernoulli":
            return c.in_channels
        return 10 * c.num_mixture_dec

    @property
    def has_pixel_noise(self) -> bool:
        """Only the Gaussian decoder is reparameterisable by pixel noise ``eps_x``."""
        return self.config.decoder_distribution == "normal"

    def _normal(self, mu_raw: torch.Tensor, log_sigma_raw: torch.Tensor, temperature: float = 1.0):
        return SoftClampedNormal(
            mu_raw, log_sigma_raw, temperature, self.config.soft_clamp_bound, self.config.sigma_offset
        )

    def _top_prior(self, like: torch.Tensor, temperature: float = 1.0) -> SoftClampedNormal:
        zeros = torch.zeros_like(like)
        return self._normal(zeros, zeros, temperature)

    # ------------------------------------------------------------------ generative path
    def decode_noise(self, eps_z: list[torch.Tensor], temperature: float = 1.0) -> PriorSample:
        """Ancestral sampling from latent noise: ``z = T_z(eps_z)``, decoder logits and ``log p(z)`` (B,).

        ``log p(z)`` sums ``log N(z_l; mu_l, sigma_l^2)`` over groups and elements with the temperature-scaled
        ``sigma_l`` — the term VAEBM's official Langevin potential subtracts.
        """
        if len(eps_z) != len(self.latent_shapes):
            raise ValueError(f"expected {len(self.latent_shapes)} latent noise groups, got {len(eps_z)}")
        batch = eps_z[0].shape[0]
        s = self.prior_ftr0.unsqueeze(0).expand(batch, -1, -1, -1)
        z_list, log_p = [], 0.0
        idx = 0
        for cell in self.dec_tower:
            if isinstance(cell, DecCombinerCell):
                if idx == 0:
                    dist = self._top_prior(eps_z[0], temperature)
                else:
                    mu, log_sigma = self.dec_sampler[idx - 1](s).chunk(2, dim=1)
                    dist = self._normal(mu, log_sigma, temperature)
                z = dist.sample(eps_z[idx])
                log_p = log_p + dist.log_prob(z).sum(dim=(1, 2, 3))
                z_list.append(z)
                s = cell(s, z)
                idx += 1
            else:
                s = cell(s)
        return PriorSample(logits=self._image_logits(s), z=z_list, log_p_z=log_p)

    def _image_logits(self, s: torch.Tensor) -> torch.Tensor:
        for cell in self.post_process:
            s = cell(s)
        return self.image_conditional(s)

    def output_distribution(self, logits: torch.Tensor, likelihood_clamp: bool = True):
        """``p(x|z)`` from decoder logits: ``.mean`` and ``.rsample(eps_x)`` in ``[0, 1]``, per-pixel ``.log_prob``.

        ``likelihood_clamp`` applies VAEBM's ``log sigma >= likelihood_log_scale_min`` clamp to the Gaussian
        decoder's ``log_prob`` (what the official Langevin potential evaluates); ``False`` gives NVAE's own,
        unclamped likelihood, which the VAE is trained and scored with.
        """
        c = self.config
        if c.decoder_distribution == "normal":
            log_scale_min = c.likelihood_log_scale_min if likelihood_clamp else None
            return GaussianImageDecoder(logits, c.soft_clamp_bound, c.sigma_offset, log_scale_min)
        if c.decoder_distribution == "bernoulli":
            return BernoulliImageDecoder(logits)
        return LogisticMixtureImageDecoder(logits, c.num_mixture_dec, c.num_x_bits)

    # ------------------------------------------------------------------ encoder / ELBO
    def check_images(self, x: torch.Tensor) -> None:
        """Raise a ``ValueError`` unless ``x`` is a finite ``(B, C, H, W)`` batch in ``[0, 1]`` of this VAE's size."""
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(self.data_shape):
            raise ValueError(
                f"images must have shape (B, {', '.join(map(str, self.data_shape))}), got {tuple(x.shape)}"
            )
        if not torch.isfinite(x).all():
            raise ValueError("images contain NaN or Inf values")
        if x.min() < 0 or x.max() > 1:
            raise ValueError("images must be in [0, 1] (divide uint8 images by 255)")

    def forward(
        self,
        x: torch.Tensor,
        posterior_noise: list[torch.Tensor] | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> VAEBMVAEOutput:
        """Encoder pass: posterior samples ``z ~ q(z|x)`` (noise from ``posterior_noise`` or ``generator``), the
        decoder logits, ``log q``, ``log p`` and the KL terms per group."""
        self.check_images(x)
        posterior_noise = self.posterior_noise(x, posterior_noise, generator)
        s = self.stem(2 * x - 1.0)
        for cell in self.pre_process:
            s = cell(s)
        combiners, combiner_inputs = [], []
        for cell in self.enc_tower:
            if isinstance(cell, EncCombinerCell):
                combiners.append(cell)
                combiner_inputs.append(s)
            else:
                s = cell(s)
        combiners.reverse()
        combiner_inputs.reverse()

        num_nf = self.config.num_nf
        ftr = self.enc0(s)
        mu_q, log_sigma_q = self.enc_sampler[0](ftr).chunk(2, dim=1)
        q = self._normal(mu_q, log_sigma_q)
        z = q.sample(posterior_noise[0])
        log_q_terms = [q.log_prob(z)]
        z = self._flow(z, 0, num_nf)
        p = self._top_prior(z)
        qs, ps, log_p_terms, z_list = [q], [p], [p.log_prob(z)], [z]

        s = self.prior_ftr0.unsqueeze(0).expand(x.shape[0], -1, -1, -1)
        idx = 0
        for cell in self.dec_tower:
            if isinstance(cell, DecCombinerCell):
                if idx > 0:
                    mu_p, log_sigma_p = self.dec_sampler[idx - 1](s).chunk(2, dim=1)
                    ftr = combiners[idx - 1](combiner_inputs[idx - 1], s)
                    mu_q, log_sigma_q = self.enc_sampler[idx](ftr).chunk(2, dim=1)
                    if self.config.res_dist:
                        q = self._normal(mu_p + mu_q, log_sigma_p + log_sigma_q)
                    else:
                        q = self._normal(mu_q, log_sigma_q)
                    z = q.sample(posterior_noise[idx])
                    log_q_terms.append(q.log_prob(z))
                    z = self._flow(z, idx, num_nf)
                    p = self._normal(mu_p, log_sigma_p)
                    qs.append(q)
                    ps.append(p)
                    log_p_terms.append(p.log_prob(z))
                    z_list.append(z)
                s = cell(s, z)
                idx += 1
            else:
                s = cell(s)
        logits = self._image_logits(s)

        kl_all, kl_diag = [], []
        for q, p, lq, lp in zip(qs, ps, log_q_terms, log_p_terms):
            kl = lq - lp if num_nf > 0 else q.kl(p)
            kl_diag.append(kl.sum(dim=(2, 3)).mean(dim=0))
            kl_all.append(kl.sum(dim=(1, 2, 3)))
        log_q = sum(t.sum(dim=(1, 2, 3)) for t in log_q_terms)
        log_p = sum(t.sum(dim=(1, 2, 3)) for t in log_p_terms)
        return VAEBMVAEOutput(
            logits=logits,
            z=z_list,
            log_q=log_q,
            log_p=log_p,
            kl_all=kl_all,
            kl_diag=kl_diag,
            posterior=[(q.mu, q.sigma) for q in qs],
            prior=[(p.mu, p.sigma) for p in ps],
        )

    def _flow(self, z: torch.Tensor, group: int, num_nf: int) -> torch.Tensor:
        for n in range(num_nf):
            z = self.nf_cells[group * num_nf + n](z)
        return z
