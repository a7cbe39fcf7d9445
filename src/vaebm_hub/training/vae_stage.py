"""Stage 1: train the VAE on the negative ELBO with NVAE's KL warm-up and KL balancing.

Per batch, with ``kl_l`` the (B,) KL of latent group ``l`` (top group first) and ``beta`` the warm-up coefficient::

    loss = mean_b[ -log p(x_b | z_b) + beta * sum_l gamma_l kl_l,b ] + lambda_SR * L_SR

``beta = clamp(step / (kl_warmup_fraction * max_steps), kl_const_coeff, 1)``. While ``beta < 1`` the balancing
coefficients ``gamma_l ∝ (mean_b |kl_l,b| + 0.01) / alpha_l`` (renormalised to mean 1, no gradient) shift the KL
penalty toward groups that carry more information; ``alpha_l = 4^i / n_i`` for a group at scale ``i`` (``i = 0`` the
top, coarsest scale, ``n_i`` its number of groups), divided by its minimum (NVAE's "square" weighting). Afterwards
``gamma_l = 1``. ``L_SR`` is the weight-normalisation spectral regulariser (``vae.spectral_norm_loss()``).

A Bernoulli decoder sees every batch freshly binarised, ``x_b ~ Bernoulli(x)`` (NVAE's dynamic binarisation for
MNIST; ``--no_dynamic_binarization`` trains on the grey values). ``log p(x|z)`` is NVAE's unclamped likelihood:
VAEBM's ``log sigma >= -2`` clamp belongs to its Langevin potential only (under the clamp, pixels whose scale sits
below it get no gradient for their scale). ``--vae_likelihood_clamp`` trains with the clamped likelihood instead
(this package's behaviour before 0.2).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from accelerate import Accelerator
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch import nn
from torch.utils.data import Dataset

from ..presets import VAETraining
from ..utils import eval_mode
from .loop import TrainingStage, make_generator


def kl_coefficient(step: int, max_steps: int, warmup_fraction: float, min_coeff: float) -> float:
    """``clamp(step / (warmup_fraction * max_steps), min_coeff, 1)`` (1 when there is no warm-up)."""
    warmup = warmup_fraction * max_steps
    if warmup <= 0:
        return 1.0
    return min(max(step / warmup, min_coeff), 1.0)


def kl_balance_weights(groups_per_scale_top_first: Sequence[int]) -> torch.Tensor:
    """``alpha`` (G,): ``4^i / n_i`` for every group of scale ``i`` (top scale first), divided by the minimum."""
    alpha = torch.cat([torch.full((n,), 4.0**i / n) for i, n in enumerate(groups_per_scale_top_first)])
    return alpha / alpha.min()


def balanced_kl(kl: torch.Tensor, kl_coeff: float, alpha: torch.Tensor | None) -> torch.Tensor:
    """``beta * sum_l gamma_l kl_l`` per example (B,) from the per-group KL ``kl`` (B, G); ``gamma = 1`` if
    ``alpha`` is None or ``beta >= 1``."""
    if alpha is None or kl_coeff >= 1.0:
        return kl_coeff * kl.sum(dim=1)
    gamma = (kl.detach().abs().mean(dim=0) + 0.01) / alpha.to(kl)
    gamma = gamma / gamma.mean()
    return kl_coeff * (kl * gamma).sum(dim=1)


class NegativeELBOTerms(nn.Module):
    """``vae`` as the trained module: ``x -> (-log p(x|z) (B,), KL per group (B, G))``.

    Plain tensors out, so that DDP and Accelerate's mixed-precision output conversion (which cannot rebuild a
    multi-field output dataclass) handle them.
    """

    def __init__(self, vae: nn.Module, likelihood_clamp: bool = False) -> None:
        super().__init__()
        self.vae, self.likelihood_clamp = vae, likelihood_clamp

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.vae(x, generator=generator)
        recon = self.vae.reconstruction_log_prob(x, out.logits, likelihood_clamp=self.likelihood_clamp)
        return -recon, torch.stack(out.kl_all, dim=1)


class VAEStage(TrainingStage):
    name = "vae"
    watch = ("grad_norm",)
    divergence_fix = "lower --vae_learning_rate, raise --vae_spectral_reg_coeff"

    def __init__(
        self,
        vae: nn.Module,
        settings: VAETraining,
        *,
        seed: int,
        process_index: int,
        num_sample_images: int,
    ) -> None:
        self.vae, self.settings, self.seed = vae, settings, seed
        self.generator = make_generator(seed, "vae-posterior", process_index)
        self.num_sample_images = num_sample_images
        scales = list(reversed(getattr(vae, "groups_per_scale", [len(vae.latent_shapes)])))
        self.binarize = vae.has_bernoulli_decoder and settings.dynamic_binarization
        self.alpha = kl_balance_weights(scales) if settings.kl_balance else None
        self.ema: EMAModel | None = None

    def prepare(self, accelerator: Accelerator, dataset: Dataset, fresh: bool) -> None:
        self.vae.train()
        if fresh and self.settings.spectral_reg_coeff > 0:
            self.vae.reset_power_iteration(make_generator(self.seed, "spectral"))
        optimizer = torch.optim.Adamax(
            self.vae.parameters(),
            lr=self.settings.learning_rate,
            weight_decay=self.settings.weight_decay,
            betas=(self.settings.adam_beta1, self.settings.adam_beta2),
            eps=self.settings.adam_eps,
        )
        scheduler = get_scheduler(
            self.settings.lr_scheduler,
            optimizer,
            num_warmup_steps=self.settings.lr_warmup_steps * accelerator.num_processes,
            num_training_steps=self.settings.max_train_steps * accelerator.num_processes,
        )
        if self.settings.use_ema:
            s = self.settings
            self.ema = EMAModel(
                self.vae.parameters(), decay=s.ema_max_decay, use_ema_warmup=True, inv_gamma=s.ema_inv_gamma,
                power=s.ema_power, model_cls=type(self.vae), model_config=self.vae.config,
            )  # fmt: skip
            self.ema.to(accelerator.device)
        self.model, self.optimizer, self.lr_scheduler = accelerator.prepare(
            NegativeELBOTerms(self.vae, self.settings.likelihood_clamp), optimizer, scheduler
        )

    def training_loss(self, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.settings
        if self.binarize:
            uniform = torch.rand(batch.shape, generator=self.generator, dtype=batch.dtype).to(batch.device)
            batch = (uniform < batch).to(batch.dtype)
        recon, kl = self.model(batch, generator=self.generator)
        beta = kl_coefficient(step, self.settings.max_train_steps, s.kl_warmup_fraction, s.kl_const_coeff)
        loss = (recon + balanced_kl(kl, beta, self.alpha)).mean()
        metrics = {"nelbo": (recon + kl.sum(dim=1)).mean().detach(), "kl_coeff": torch.tensor(beta)}
        if s.spectral_reg_coeff > 0:
            spectral = self.vae.spectral_norm_loss()
            loss = loss + s.spectral_reg_coeff * spectral
            metrics["spectral"] = spectral.detach()
        return loss, metrics

    def after_optimizer_step(self) -> None:
        if self.ema is not None:
            self.ema.step(self.vae.parameters())

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.get_state(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "spectral": self.vae.power_iteration_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.vae.load_power_iteration_state(state["spectral"])

    def sample_panels(self) -> dict[str, torch.Tensor]:
        generator = make_generator(self.seed, "sample-grid")
        with torch.no_grad(), eval_mode(self.vae), self.ema_weights():
            noise = self.vae.sample_noise(self.num_sample_images, generator=generator, device=self.vae.device)
            return {"VAE samples": self.vae.generate(noise)}

    @contextlib.contextmanager
    def ema_weights(self) -> Iterator[None]:
        """Inside, the VAE holds its EMA weights (a no-op without ``--use_ema``)."""
        if self.ema is None:
            yield
            return
        self.ema.store(self.vae.parameters())
        self.ema.copy_to(self.vae.parameters())
        try:
            yield
        finally:
            self.ema.restore(self.vae.parameters())

    def finished_vae(self) -> nn.Module:
        """The trained VAE (with its EMA weights if ``--use_ema``), its batch-norm statistics re-estimated from
        prior samples (:meth:`readjust_batch_norm`, unless turned off), frozen, in eval mode."""
        if self.ema is not None:
            self.ema.copy_to(self.vae.parameters())
        if self.settings.readjust_bn_batches > 0:
            self.vae.readjust_batch_norm(
                self.settings.readjust_bn_batches, self.settings.batch_size, generator=make_generator(self.seed, "bn")
            )
        return self.vae.eval().requires_grad_(False)
