"""Stage 2: train the energy network ``E_psi`` on the frozen VAE by short-run Langevin contrastive divergence.

One iteration (vaebm_reference.md §1-§2), for a data batch ``x+`` of size B:

1. ``eps = (eps_z, eps_x) ~ N(0, I)``; with the replay buffer each ``eps_z`` row is replaced by a stored one with
   probability ``p = min(p_max, p_max * step / anneal)``;
2. K Langevin steps ``eps <- eps - (eta/2) dU/deps + sqrt(eta) xi`` on the potential ``U`` (``"exact"``:
   ``E(T(eps)) + |eps|^2 / 2``; ``"official"``: the released code's), with the VAE frozen and in eval mode;
3. negatives ``x-``: the decoder sample ``T_x(z, eps_x)`` of the final ``z``, or with ``use_mu_cd`` the decoder mean
   ``mu / 2 + 1/2`` (unclamped); the final ``eps_z`` rows enter the buffer;
4. ``loss = mean E(x+) - mean E(x-) + alpha_s * L_SR``, Adam(betas 0.99, 0.999, weight decay) with IGEBM clipping;
   ``energy_l2_coeff`` adds IGEBM's ``alpha * mean(E(x+)^2 + E(x-)^2)`` (a deviation, off by default).
   For a Bernoulli decoder ``bernoulli_negative_fraction`` of the negatives are binary draws from the decoder at the
   final ``z`` (a deviation, off by default: VAEBM's decoders are continuous). ``reconstruction_positive_fraction``
   of the positives are the VAE's reconstructions of the batch instead of the data (:func:`reconstruction_images`;
   a deviation, off by default).
   With ``ema_decay`` > 0 an exponential moving average of the energy network's weights is kept (diffusers'
   ``EMAModel``) and the saved pipeline samples with it (a deviation, off by default: the paper samples with the last
   iterate); the training chains always use the current weights. With ``weight_average_fraction`` > 0 it samples
   with the uniform average of the iterates over that share of the last iterations instead (stochastic weight
   averaging; a deviation, off by default).

The energy network gets a data-dependent initialisation from the first batches before training starts.

``sampling_space="x"`` trains the paper's ablation instead (Table 4, "EBM on x only"): step 2 becomes K Langevin steps
on ``E(x)`` in data space from the decoder means of fresh ``eps`` (with the sampling setting
``decoder_output="sample"`` the decoder's samples; :func:`vaebm_hub.pipelines.x_space.x_space_chain`), and the
negatives are the final ``x``; there is no replay buffer.
"""

from __future__ import annotations

import copy
import dataclasses
import functools

import torch
from accelerate import Accelerator
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch import nn
from torch.utils.data import Dataset

from ..models.layers import frozen
from ..pipelines.decoding import decode_noise
from ..pipelines.langevin_chain import ChainOutput, NonFiniteChainError, langevin_chain
from ..pipelines.potential import potential_and_grad
from ..pipelines.step_size import suggest_step_size
from ..pipelines.x_space import IMAGE_RANGE, x_space_chain
from ..presets import AUTO, EBMTraining, Sampling
from ..schedulers import LangevinScheduler
from ..utils import eval_mode
from .chain_precision import chain_dtype, chain_energy
from .checkpointing import FROZEN_VAE_DIR
from .components import make_pipeline
from .divergence import TrainingDivergedError
from .grad_clip import clip_grad_igebm_
from .loop import TrainingStage, first_batches, make_generator
from .replay_buffer import ReplayBuffer, replay_probability


def _official_mean(decoder) -> torch.Tensor:
    """``use_mu_cd``'s image: the decoder mean ``mu / 2 + 1/2`` unclamped, as the official code (the plain mean for
    decoders without ``mu``)."""
    mu = getattr(decoder, "mu", None)
    return decoder.mean if mu is None else 0.5 * mu + 0.5


@torch.no_grad()
def negative_images(vae: nn.Module, eps: torch.Tensor, use_mu_cd: bool) -> torch.Tensor:
    """The samples the EBM is trained against, from the final chain state ``eps`` (B, D): with ``use_mu_cd`` the
    decoder mean (:func:`_official_mean`), else what the chain's energy saw, ``T(eps)`` (the decoder sample, or the
    mean for latent-only chains)."""
    decoded = vae.noise_to_data(eps)
    return _official_mean(decoded.decoder) if use_mu_cd else decoded.x


@torch.no_grad()
def reconstruction_images(
    vae: nn.Module, x: torch.Tensor, use_mu_cd: bool, pixel_noise: bool, generator: torch.Generator
) -> torch.Tensor:
    """The VAE's reconstructions of data ``x``, of the kind :func:`negative_images` gives for a chain's final state:
    the decoder at a posterior sample ``z ~ q(z|x)``, as :func:`_official_mean` with ``use_mu_cd``, else its sample
    ``T_x(z, eps_x)`` (the mean for latent-only chains and decoders without pixel noise). One ``eps`` is drawn: its
    ``eps_z`` for the posterior sample, its ``eps_x`` for the pixel noise. Against negatives of this kind the energy
    cannot use the decoder's blur or noise, only where the latents come from: the aggregate posterior for positives,
    the prior (moved by the chains) for negatives. (Binary draws among the negatives, ``bernoulli_negative_fraction``,
    still differ from every positive by their speckle.)"""
    eps_z, eps_x = vae.split_noise(vae.sample_noise(len(x), generator=generator, device=x.device, dtype=x.dtype))
    with eval_mode(vae):
        decoder = vae.output_distribution(vae(x, posterior_noise=eps_z).logits)
    if use_mu_cd:
        return _official_mean(decoder)
    return decoder.rsample(eps_x) if pixel_noise and eps_x is not None else decoder.mean


def bernoulli_draws(means: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """``means`` (a Bernoulli decoder's, in [0, 1]) with the first ``round(fraction * B)`` rows replaced by binary
    draws ``x ~ Bernoulli(mean)`` (``bernoulli_negative_fraction``; 0 returns ``means`` and draws nothing). The draws
    are made on ``generator``'s device (the trainer's generators live on the CPU, as diffusers' ``randn_tensor``
    draws), then moved to ``means``' device: the same bits on every accelerator."""
    rows = round(fraction * means.shape[0])
    if rows == 0:
        return means
    probs = means[:rows].clamp(0.0, 1.0).to(generator.device)
    drawn = torch.bernoulli(probs, generator=generator).to(means.device)
    return torch.cat([drawn, means[rows:]])


STEP_SIZE_DATA = (4, 256)  # batches x batch size of data that set the spread for an "auto" step size


def resolve_step_sizes(
    vae: nn.Module, settings: EBMTraining, sampling: Sampling, dataset: Dataset, seed: int
) -> tuple[EBMTraining, Sampling]:
    """``settings`` and ``sampling`` with every ``"auto"`` step size replaced by
    :func:`~vaebm_hub.pipelines.step_size.suggest_step_size` for the frozen ``vae`` and the first training batches
    (deterministic: the same VAE and seed give the same step on every process and after a resume)."""
    step = settings.langevin_step_size
    if step == AUTO:
        data = first_batches(dataset, STEP_SIZE_DATA[1], STEP_SIZE_DATA[0], seed)
        with eval_mode(vae):
            step = suggest_step_size(vae, data, pixel_noise=settings.pixel_noise)
        settings = dataclasses.replace(settings, langevin_step_size=step)
    if sampling.step_size == AUTO:
        sampling = dataclasses.replace(sampling, step_size=step)
    return settings, sampling


def weight_average(ebm: nn.Module, settings: EBMTraining) -> EMAModel | None:
    """The average of the energy network's weights that the saved pipeline samples with, or ``None`` (the last
    iterate, as VAEBM).

    ``ema_decay`` > 0: diffusers' EMA at that decay. ``weight_average_fraction`` > 0: the uniform mean of the last
    ``m = round(fraction * max_train_steps)`` iterates (at least one). That is diffusers' ``EMAModel`` too: with its
    warm-up at ``inv_gamma = power = 1`` the decay of the t-th update after ``update_after_step`` is ``1 - 1 / (1 +
    t)`` (0 up to then: the average holds the current weights), which makes it the running mean of the iterates after
    step ``max_train_steps - m``; a checkpoint carries it (window included) as it carries an EMA.
    """
    if settings.weight_average_fraction > 0:
        count = max(1, round(settings.weight_average_fraction * settings.max_train_steps))
        start = settings.max_train_steps - count
        return EMAModel(
            ebm.parameters(), decay=1.0, update_after_step=start, use_ema_warmup=True, inv_gamma=1.0, power=1.0
        )
    if settings.ema_decay > 0:
        return EMAModel(ebm.parameters(), decay=settings.ema_decay)
    return None


def check_settings_fit_vae(settings: EBMTraining, vae: nn.Module) -> None:
    """Stage-2 settings that the VAE cannot serve, a ``ValueError`` naming the flag (the trainer checks this before
    stage 1, so that a bad flag does not cost a stage 1)."""
    if settings.bernoulli_negative_fraction > 0 and not vae.has_bernoulli_decoder:
        raise ValueError(
            "--bernoulli_negative_fraction needs a VAE with a Bernoulli decoder (decoder_distribution="
            "'bernoulli'); this VAE's decoder is continuous and already yields sample negatives: leave it at 0."
        )


class EBMStage(TrainingStage):
    name = "ebm"
    watch = ("energy_gap", "grad_norm", "energy_pos", "energy_neg")
    steady_watch = ("energy_gap",)  # E's level is free (the loss sees differences only): only the gap is bounded
    collapse_watch = (("energy_spread", "energy_pos"),)  # one energy for every input: the network is dead
    divergence_fix = (
        "lower --ebm_learning_rate or --langevin_step_size, bound the energies with --energy_l2_coeff (e.g. 0.01; "
        "raise it where the preset already sets one), raise --spectral_reg_coeff"
    )

    def __init__(
        self,
        vae: nn.Module,
        ebm: nn.Module,
        settings: EBMTraining,
        sampling: Sampling,
        *,
        seed: int,
        process_index: int,
        device: torch.device,
        num_sample_images: int,
    ) -> None:
        check_settings_fit_vae(settings, vae)
        self.vae = vae.to(device).eval().requires_grad_(False)
        self.ebm, self.settings, self.sampling, self.seed = ebm.to(device), settings, sampling, seed
        self.num_sample_images = num_sample_images
        self.generator = make_generator(seed, "ebm-chains", process_index)
        self.langevin = LangevinScheduler(
            default_num_inference_steps=settings.langevin_steps,
            step_size=settings.langevin_step_size,
            noise_scale=settings.langevin_noise_scale,
            metropolis=settings.metropolis,
        )
        self.buffer = ReplayBuffer(settings.buffer_size, vae.latent_dim) if settings.use_buffer else None
        # x-space chains keep images in [0, 1]; vector data (the 2-D toy) is unbounded.
        self.clip_range = IMAGE_RANGE if len(vae.data_shape) == 3 else None
        self.ema: EMAModel | None = None
        # the energy network the chains call: the network itself, or it under bfloat16 autocast (chain_precision)
        self.chain_ebm = chain_energy(self.ebm, chain_dtype(settings.chain_dtype, device))

    def prepare(self, accelerator: Accelerator, dataset: Dataset, fresh: bool) -> None:
        s = self.settings
        if fresh:
            if s.data_init:
                init = first_batches(dataset, self.settings.batch_size, s.data_init_batches, self.seed)
                self.ebm.data_init_(init.to(accelerator.device))
            self.ebm.reset_power_iteration(make_generator(self.seed, "spectral"))
        optimizer = torch.optim.Adam(
            self.ebm.parameters(),
            lr=self.settings.learning_rate,
            betas=(self.settings.adam_beta1, self.settings.adam_beta2),
            eps=self.settings.adam_eps,
            weight_decay=self.settings.weight_decay,
        )
        scheduler = get_scheduler(
            self.settings.lr_scheduler,
            optimizer,
            num_warmup_steps=self.settings.lr_warmup_steps * accelerator.num_processes,
            num_training_steps=self.settings.max_train_steps * accelerator.num_processes,
        )
        self.model, self.optimizer, self.lr_scheduler = accelerator.prepare(self.ebm, optimizer, scheduler)
        self.ema = weight_average(self.ebm, s)  # after the data-dependent initialisation: it starts from that net
        if self.ema is not None:
            self.ema.to(accelerator.device)

    # ---------------------------------------------------------------- negatives
    def initial_noise(self, batch_size: int, step: int) -> torch.Tensor:
        """Fresh ``eps``, its ``eps_z`` part partly replayed from the buffer."""
        eps = self.vae.sample_noise(
            batch_size, generator=self.generator, device=self.vae.device, pixel_noise=self.settings.pixel_noise
        )
        if self.buffer is None:
            return eps
        s, latent = self.settings, self.vae.latent_dim
        prob = replay_probability(step, s.max_replay_prob, s.replay_anneal_steps)
        eps_z = self.buffer.replace_rows(eps[:, :latent], prob, self.generator)
        return torch.cat([eps_z, eps[:, latent:]], dim=1)

    def run_chains(self, eps: torch.Tensor) -> ChainOutput:
        """K Langevin steps from ``eps`` (:func:`~vaebm_hub.pipelines.langevin_chain.langevin_chain`; a chain that
        reaches NaN/Inf keeps its last finite state and is flagged in ``finite``). With ``sampling_space="x"`` the
        state is the image ``x``, started from the images of ``eps`` the pipeline's ``decoder_output`` names."""
        with torch.autocast(eps.device.type, enabled=False), frozen(self.ebm):  # gradients to the state only
            if self.settings.sampling_space == "x":
                x = decode_noise(self.vae, eps, self.sampling.decoder_output)
                state, finite = x_space_chain(
                    self.chain_ebm, x, self.langevin, generator=self.generator, clip_range=self.clip_range
                )
                return ChainOutput(state, finite)
            potential = functools.partial(
                potential_and_grad, self.vae, self.chain_ebm, temperature=1.0, potential=self.settings.potential
            )
            return langevin_chain(potential, eps, self.langevin, generator=self.generator)

    def negatives(self, state: torch.Tensor) -> torch.Tensor:
        """The negative images for the final chain states: for noise-space chains see :func:`negative_images`;
        x-space chains already end on images."""
        if self.settings.sampling_space == "x":
            return state
        images = negative_images(self.vae, state, self.settings.use_mu_cd)
        return bernoulli_draws(images, self.settings.bernoulli_negative_fraction, self.generator)

    def positives(self, batch: torch.Tensor) -> torch.Tensor:
        """The data batch with its first ``round(reconstruction_positive_fraction * B)`` rows replaced by the VAE's
        reconstructions of them (:func:`reconstruction_images`); the batch itself when the fraction is 0."""
        s = self.settings
        rows = round(s.reconstruction_positive_fraction * batch.shape[0])
        if rows == 0:
            return batch
        reconstructed = reconstruction_images(self.vae, batch[:rows], s.use_mu_cd, s.pixel_noise, self.generator)
        return torch.cat([reconstructed.to(batch.dtype), batch[rows:]])

    def training_loss(self, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.settings
        batch = self.positives(batch)
        chain = self.run_chains(self.initial_noise(batch.shape[0], step))
        eps, finite = chain.state, chain.finite
        negatives = self.negatives(eps)
        finite &= torch.isfinite(negatives).flatten(1).all(dim=1)
        negatives = torch.where(finite.view(-1, *[1] * (negatives.dim() - 1)), negatives, 0.0)
        if self.buffer is not None:
            self.buffer.push(eps[:, : self.vae.latent_dim])
        energies = self.model(torch.cat([batch, negatives]))
        energy_pos, energy_neg = energies.chunk(2)
        gap = energy_pos.mean() - energy_neg.mean()
        # A chain that left the finite numbers makes the loss NaN, which the divergence guard acts on.
        loss = gap + torch.where(finite.all(), 0.0, float("nan"))
        metrics = {
            "energy_gap": gap.detach(),
            "energy_pos": energy_pos.mean().detach(),
            "energy_neg": energy_neg.mean().detach(),
            "energy_spread": energies.detach().std(),  # 0: one energy for every input
        }
        if s.energy_l2_coeff > 0:
            magnitude = energy_pos.square().mean() + energy_neg.square().mean()
            loss = loss + s.energy_l2_coeff * magnitude
            metrics["energy_l2"] = magnitude.detach()
        if s.spectral_reg_coeff > 0:
            spectral = self.ebm.spectral_norm_loss()
            loss = loss + s.spectral_reg_coeff * spectral
            metrics["spectral"] = spectral.detach()
        return loss, metrics

    def before_optimizer_step(self) -> None:
        if self.settings.grad_clip:
            clip_grad_igebm_(self.optimizer)

    def after_optimizer_step(self) -> None:
        if self.ema is not None:
            self.ema.step(self.ebm.parameters())

    # ---------------------------------------------------------------- state, samples, output
    def state_dict(self) -> dict:
        return {
            "generator": self.generator.get_state(),
            "buffer": self.buffer.state_dict() if self.buffer is not None else None,
            "spectral": self.ebm.power_iteration_state(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        if self.buffer is not None:
            self.buffer.load_state_dict(state["buffer"])
        self.ebm.load_power_iteration_state(state["spectral"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise ValueError(
                    "this checkpoint was written without --ebm_ema_decay or --ebm_weight_average_fraction, so it "
                    "holds no average of the energy network's weights to resume: resume with the flags the run "
                    "started with, or start stage 2 afresh."
                )
            self.ema.load_state_dict(state["ema"])

    def write_checkpoint_extras(self, directory) -> None:
        self.vae.save_pretrained(directory / FROZEN_VAE_DIR)

    def sampling_ebm(self) -> nn.Module:
        """The energy network the pipeline samples with: the training one, or a copy holding the averaged weights."""
        if self.ema is None:
            return self.ebm
        ebm = copy.deepcopy(self.ebm)
        self.ema.copy_to(ebm.parameters())
        return ebm

    def pipeline(self):
        return make_pipeline(self.vae, self.sampling_ebm(), self.settings, self.sampling)

    def sample_panels(self) -> dict[str, torch.Tensor]:
        """VAE samples (K = 0) beside VAEBM samples from the same initial noise."""
        pipe = self.pipeline()
        generator = make_generator(self.seed, "sample-grid")
        noise = self.vae.sample_noise(
            self.num_sample_images, generator=generator, pixel_noise=self.settings.pixel_noise
        )
        steps = self.sampling.num_inference_steps
        panels = {}
        for label, k in (("VAE (K=0)", 0), (f"VAEBM (K={steps})", steps)):
            generator = make_generator(self.seed, "sample-chain")
            try:
                panels[label] = pipe(
                    len(noise), num_inference_steps=k, latents=noise, generator=generator, output_type="pt"
                ).images
            except NonFiniteChainError as error:  # the loss can drift to a degenerate EBM without a NaN
                raise TrainingDivergedError(
                    f"the energy network's sampling chains diverge ({error}): stage 2 has diverged although no "
                    "step was NaN. Lower --ebm_learning_rate or --langevin_step_size, or bound the energies with "
                    "--energy_l2_coeff (e.g. 0.01)."
                ) from error
        return panels
