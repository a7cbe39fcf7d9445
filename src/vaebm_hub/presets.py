"""Every named setting of a VAEBM run in one table: the VAE architecture, both training stages and test-time sampling.

One :class:`Preset` per dataset, as plain data. ``cifar10``, ``celeba64``, ``lsun_church64`` and ``celebahq256`` are
the paper's (the official README commands, ``vaebm_reference.md`` §2-§3; stage-1 lengths are NVAE's epochs at its
batch size on 8 GPUs); ``nvae_mnist`` is NVAE's own MNIST model (VAEBM released no MNIST setting). The others are
ours, sized for a 2-core CPU, with the evidence for each value in ``docs/results.md``: ``digits`` (the embedded
demo), ``stacked_digits``, ``mnist``, ``stacked_mnist`` and ``gaussians25``. Image folders and Hub datasets get
:func:`preset_for_images` (a rule on the image size).

Command-line flags override a preset once, in :func:`resolve` (``vaebm_hub.training.config`` maps flags to fields);
what a run records in its logs and model card is the resolved preset, :meth:`Preset.to_dict`.
``in_channels`` / ``sample_size`` (``in_features`` for vectors) always come from the data.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

from .constants import CHAIN_DTYPES, DECODER_OUTPUTS

VAE_CLASSES = ("VAEBMVAE", "VAEBMMLPVAE")
EBM_LAYOUTS_IMAGE = ("cifar32", "celeba64", "lsun64", "celeba256", "mnist", "digits8", "custom")
MLP_LAYOUT = "mlp"  # the energy MLP for vector data (VAEBMEnergyMLP)
AUTO = "auto"  # a step size chosen from the decoder's scale when stage 2 starts
# diffusers.optimization's schedules (get_scheduler); checked here so that a typo fails before stage 1
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "piecewise_constant")  # fmt: skip


@dataclass(frozen=True)
class VAETraining:
    """Stage 1: the ELBO with NVAE's optimiser (Adamax, lr 1e-2, weight decay 3e-4, eps 1e-3), KL warm-up and
    balancing. ``lr_warmup_steps=None`` warms up over the first 5% of the steps (:func:`resolve` fills it in)."""

    max_train_steps: int
    batch_size: int
    learning_rate: float = 1e-2
    weight_decay: float = 3e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-3
    lr_scheduler: str = "cosine"
    lr_warmup_steps: int | None = None
    kl_warmup_fraction: float = 0.3
    kl_const_coeff: float = 1e-4
    kl_balance: bool = True
    likelihood_clamp: bool = False  # True: VAEBM's sampling-time clamp log sigma >= -2 in the training likelihood
    dynamic_binarization: bool = True  # Bernoulli decoders only
    readjust_bn_batches: int = 100  # prior-sample batches for the batch-norm statistics; 0 keeps training's
    spectral_reg_coeff: float = 0.0
    use_ema: bool = False
    ema_max_decay: float = 0.9999
    ema_inv_gamma: float = 1.0
    ema_power: float = 0.75


@dataclass(frozen=True)
class EBMTraining:
    """Stage 2: the energy network and its contrastive training with short-run Langevin negatives."""

    layout: str
    n_channel: int
    max_train_steps: int
    batch_size: int
    learning_rate: float
    langevin_steps: int
    langevin_step_size: float | str  # "auto": from the decoder's scale (vaebm_hub.pipelines.step_size)
    weight_decay: float = 3e-5
    adam_beta1: float = 0.99  # VAEBM's Adam(0.99, 0.999)
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    langevin_noise_scale: float = 1.0
    pixel_noise: bool = True  # chains move eps_x too (the paper); False: eps_z alone, the EBM sees decoder means
    metropolis: bool = False
    potential: str = "exact"
    sampling_space: str = "eps"  # "x": the paper's ablation, chains in data space
    use_buffer: bool = False
    buffer_size: int = 10000
    max_replay_prob: float = 0.6
    replay_anneal_steps: int = 5000
    use_mu_cd: bool = False
    spectral_reg_coeff: float = 0.2
    # IGEBM's energy magnitude term alpha * mean(E(x+)^2 + E(x-)^2) (not in VAEBM; 0 = the paper's loss): bounds the
    # energies when the negatives can never reach the data (e.g. decoder means of a Bernoulli VAE).
    energy_l2_coeff: float = 0.0
    # Bernoulli decoders only: the share of each batch's negatives that are binary draws x ~ Bernoulli(mean) at the
    # chain's final z instead of the mean the chain's energy saw (not in VAEBM, whose decoders are continuous; 0 = the
    # means alone). Draws show the EBM the speckle a Bernoulli decoder puts out, so noise does not pass for data.
    bernoulli_negative_fraction: float = 0.0
    # The share of each batch's positives replaced by the VAE's reconstructions of those data (the decoder at
    # z ~ q(z|x), of the kind the chains' final states decode to) instead of the data (not in VAEBM; 0 = the data
    # alone). With 1 the energy contrasts the decoder's outputs on the aggregate posterior with its outputs on the
    # prior, so it learns where the prior puts latents that the data never use (a prior-hole correction as in NCP-VAE,
    # Aneja et al. 2021) instead of the sharpness that data has and a decoder's outputs never reach.
    reconstruction_positive_fraction: float = 0.0
    # The precision of the energy network inside the training chains (vaebm_hub.training.chain_precision): "float32"
    # (VAEBM), "bfloat16" (torch.autocast; the chains' dE/dx in bfloat16, everything else float32) or "auto"
    # (bfloat16 where the device has native bfloat16, else float32).
    chain_dtype: str = "float32"
    # Decay of an exponential moving average of the energy network's weights that the saved pipeline samples with
    # (not in VAEBM; 0 = off, the paper: the last iterate). The chains during training use the current weights.
    ema_decay: float = 0.0
    # The share of stage 2's last iterations whose weights, averaged uniformly, the saved pipeline samples with
    # (stochastic weight averaging, Izmailov et al. 2018; not in VAEBM; 0 = off, the paper: the last iterate). A
    # short-run energy network's iterates swing from one to the next: the average is a steadier end point. The chains
    # during training use the current weights; excludes ema_decay.
    weight_average_fraction: float = 0.0
    grad_clip: bool = True
    data_init: bool = True
    data_init_batches: int = 5


@dataclass(frozen=True)
class Sampling:
    """Test-time sampling: the saved pipeline's default chain length, step size, MALA setting and images."""

    num_inference_steps: int
    step_size: float | str  # "auto": the training chains' step size
    # Metropolis-adjusted Langevin (MALA) in the saved pipeline's sampler; None: as the stage-2 training chains
    # (EBMTraining.metropolis; :func:`resolve` fills it in). VAEBM samples with plain Langevin (False).
    metropolis: bool | None = None
    # The saved pipeline's images: "mean", the decoder mean of the chains' final z (VAEBM), or "sample", the decoder's
    # sample at their final (z, eps_x) (not in VAEBM; needs chains that move eps_x). See VAEBMPipeline.
    decoder_output: str = "mean"


def sampler_metropolis(ebm_training: EBMTraining, sampling: Sampling) -> bool:
    """Whether the saved sampler uses MALA: ``sampling.metropolis``, else (None) the stage-2 chains' setting."""
    return ebm_training.metropolis if sampling.metropolis is None else sampling.metropolis


def scheduler_settings(ebm_training: EBMTraining, sampling: Sampling) -> dict:
    """``LangevinScheduler`` keyword arguments of a pipeline sampled as ``sampling`` says, with the stage-2 chains'
    noise scale (and :func:`sampler_metropolis`)."""
    return dict(
        default_num_inference_steps=sampling.num_inference_steps,
        step_size=sampling.step_size,
        noise_scale=ebm_training.langevin_noise_scale,
        metropolis=sampler_metropolis(ebm_training, sampling),
    )


@dataclass(frozen=True)
class Preset:
    """A complete run: ``vae`` holds :class:`VAEBMVAE` (or :class:`VAEBMMLPVAE`) keyword arguments."""

    name: str
    description: str
    vae_class: str
    vae: dict
    vae_training: VAETraining
    ebm_training: EBMTraining
    sampling: Sampling
    resolution: int | None = None  # built-ins: 32 pads MNIST 28 -> 32, as NVAE does

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------------- the paper's
_NVAE_PAPER = dict(num_preprocess_cells=2, num_postprocess_cells=2, num_cell_per_cond_enc=2, num_cell_per_cond_dec=2,
                   use_se=True, num_latent_per_group=20, num_nf=1)  # fmt: skip
_NVAE_64 = dict(_NVAE_PAPER, in_channels=3, sample_size=64, num_channels_enc=48, num_channels_dec=48,
                num_latent_scales=3, num_groups_per_scale=5, num_preprocess_blocks=1,
                num_postprocess_blocks=1)  # fmt: skip

_PAPER = [
    Preset(
        "cifar10", "CIFAR-10 32x32 (paper)", "VAEBMVAE",
        dict(_NVAE_PAPER, in_channels=3, sample_size=32, num_channels_enc=128, num_channels_dec=128,
             num_latent_scales=1, num_groups_per_scale=30, num_preprocess_blocks=1, num_postprocess_blocks=1),
        VAETraining(max_train_steps=78125, batch_size=32),
        EBMTraining(layout="cifar32", n_channel=128, max_train_steps=30000, batch_size=32, learning_rate=4e-5,
                    langevin_steps=10, langevin_step_size=8e-5),
        Sampling(num_inference_steps=16, step_size=8e-5),
    ),
    Preset(
        "celeba64", "CelebA 64x64 (paper)", "VAEBMVAE", dict(_NVAE_64),
        VAETraining(max_train_steps=31790, batch_size=32),
        EBMTraining(layout="celeba64", n_channel=64, max_train_steps=30000, batch_size=32, learning_rate=5e-5,
                    langevin_steps=10, langevin_step_size=5e-6, use_mu_cd=True),
        Sampling(num_inference_steps=20, step_size=5e-6),
    ),
    Preset(
        "lsun_church64", "LSUN Church 64x64 (paper)", "VAEBMVAE", dict(_NVAE_64),
        VAETraining(max_train_steps=29584, batch_size=32),
        EBMTraining(layout="lsun64", n_channel=64, max_train_steps=30000, batch_size=32, learning_rate=4e-5,
                    langevin_steps=10, langevin_step_size=4e-6, use_mu_cd=True, use_buffer=True),
        Sampling(num_inference_steps=20, step_size=4e-6),
    ),
    Preset(
        "celebahq256", "CelebA-HQ 256x256 (paper)", "VAEBMVAE",
        dict(_NVAE_PAPER, in_channels=3, sample_size=256, num_channels_enc=32, num_channels_dec=32,
             num_latent_scales=5, num_groups_per_scale=4, num_preprocess_blocks=1, num_postprocess_blocks=1,
             num_nf=2, num_x_bits=5),
        VAETraining(max_train_steps=84375, batch_size=8, learning_rate=6e-3),
        EBMTraining(layout="celeba256", n_channel=64, max_train_steps=9000, batch_size=16, learning_rate=4e-5,
                    langevin_steps=6, langevin_step_size=3e-6, use_mu_cd=True, use_buffer=True, buffer_size=2000,
                    replay_anneal_steps=3000, spectral_reg_coeff=0.3),
        Sampling(num_inference_steps=24, step_size=3e-6),
    ),
    Preset(
        "nvae_mnist", "MNIST padded to 32x32, NVAE's own model (VAEBM released no MNIST setting)", "VAEBMVAE",
        dict(in_channels=1, sample_size=32, num_channels_enc=32, num_channels_dec=32, num_latent_scales=2,
             num_groups_per_scale=5, num_latent_per_group=20, num_preprocess_blocks=2, num_postprocess_blocks=2,
             num_preprocess_cells=3, num_postprocess_cells=3, decoder_distribution="bernoulli", use_se=True,
             ada_groups=True),
        VAETraining(max_train_steps=93750, batch_size=200),
        EBMTraining(layout="mnist", n_channel=64, max_train_steps=30000, batch_size=32, learning_rate=4e-5,
                    langevin_steps=10, langevin_step_size=8e-5),
        Sampling(num_inference_steps=16, step_size=8e-5),
        resolution=32,
    ),
]  # fmt: skip

# ---------------------------------------------------------------------------------------------------- ours (CPU)
_DIGITS_EBM = EBMTraining(
    layout="digits8", n_channel=32, max_train_steps=1000, batch_size=64, learning_rate=1e-4, langevin_steps=10,
    langevin_step_size=5e-3, use_buffer=True, replay_anneal_steps=500,
)  # fmt: skip
_SMALL_NVAE_2_SCALES = dict(num_latent_scales=2, num_groups_per_scale=2, num_latent_per_group=4)
# NVAE's MNIST geometry at CPU width: 32x32 input, two down-sampling pre-process blocks, latent scales at 4x4 (two
# groups: a hierarchical global latent) and 8x8 (four), 20 channels per group, Bernoulli decoder with dynamic
# binarisation. NVAE's MNIST has 10 groups per scale (5 at 4x4 with --ada_groups). Four groups instead of two (one at
# 4x4), at the same 2000 steps: MNIST VAE FD_clf 101.6 against 164.7, FD_rand 0.086 against 0.187; StackedMNIST
# VAE 873 / 854 modes (seeds 0 / 1) against 758 / 634, reverse KL 0.35 / 0.42 against 0.64 / 0.87 (docs/results.md,
# "A second group in the global latent"). A step costs about 25% more.
_MNIST_NVAE = dict(
    num_channels_enc=8, num_channels_dec=8, num_latent_scales=2, num_groups_per_scale=4, ada_groups=True,
    num_latent_per_group=20, num_preprocess_blocks=2, num_postprocess_blocks=2, decoder_distribution="bernoulli",
)  # fmt: skip
# Both MNIST presets' stage 1: 2000 steps. The default mnist command took about 35 minutes on one thread beside
# another job (2026-12-05, a 16-channel energy network), over its 30-minute target; 1600 + 400 steps fit but did
# worse (docs/results.md, "MNIST's 30 minutes").
_MNIST_VAE = VAETraining(max_train_steps=2000, batch_size=64)
# 500 iterations at a fixed step of 3e-4 (docs/results.md, "Stage 2 on MNIST"): the automatic step (1.4e-4) with
# 1000 iterations diverged on a Bernoulli VAE, whose mean negatives can never be as sharp as the data.
_MNIST_EBM = dataclasses.replace(
    _DIGITS_EBM, layout="mnist", n_channel=16, batch_size=32, max_train_steps=500, langevin_step_size=3e-4
)
# The stacked_mnist preset's stage 2 and both presets' sampling (mnist adds reconstruction positives). Half the
# negatives binary draws from the decoder, with the energy term alpha = 0.01: -E ranks pixel-shuffled MNIST as out of
# distribution (AUROC 0.94 against 0.000 with mean negatives alone) and FD_clf at K = 100 falls to 85 against 124
# (docs/results.md, "Stage 2 on MNIST"). Trained at the sampling step, 4.8e-3 (16x that of _MNIST_EBM): in two seeds
# it closes 0.92 / 0.87 of MNIST's FD_rand gap (3e-4: 0.69, 1.2e-3: 0.73 / 0.30) and 0.64 / 0.62 of FD_clf's (3e-4:
# 0.66), and -E keeps pixel-shuffled MNIST out (AUROC 0.93 / 1.00). Without the energy term a StackedMNIST EBM
# diverged (loss -7e7 by iteration 340).
_MNIST_STAGE_2 = dataclasses.replace(
    _MNIST_EBM, bernoulli_negative_fraction=0.5, energy_l2_coeff=0.01, langevin_step_size=4.8e-3
)
_MNIST_SAMPLING = Sampling(num_inference_steps=30, step_size=4.8e-3)
# The digits VAE trains with VAEBM's clamped likelihood (FD_clf 24.5 against 42.2 unclamped); 1000 + 300 steps
# close more of the gap at K = 10 than 1500 + 1000 (0.70 against 0.45, docs/results.md, "digits"), measured with
# decoder means and data positives; the digits preset, with its own positives and images, trains 2000 + 1000.
_DIGITS_VAE = VAETraining(max_train_steps=1000, batch_size=64, likelihood_clamp=True)

_OURS = [
    Preset(
        "digits", "scikit-learn's 8x8 digits, the embedded demo (CPU scale)", "VAEBMVAE",
        # A coarse 2x2 top scale over the 4x4 one and 2000 stage-1 steps: FD_clf 7.95 against 22.2 for one scale
        # (floor 7.36), 0.63 of the samples confident against 0.41 (docs/results.md, "digits").
        dict(in_channels=1, sample_size=8, num_latent_scales=2),
        # Stage 2 with IGEBM's energy term alpha = 0.01: in all three seeds (and both lr 5e-5 seeds) log h stops losing
        # to the ELBO on constant images and MNIST-8x8 (no run without it at lr >= 1e-4 held), docs/results.md,
        # "digits stage 2". Positives from the VAE's reconstructions, sampled at half the training step: over three
        # stage-2 seeds (four sample seeds each) K = 30 ends 0.074 / 0.086 / 0.074 above FD_rand's floor and K = 100
        # is no worse than the VAE (0.164) on average (worse in 1 of the 12 evaluations, claim 1's among them), where
        # data positives at 6.25e-4 (the preset until 2026-12-06) ended 0.102 / 0.110 / 0.110 at their best K, and at
        # 2.5e-3 ran away with the chain length in the one seed tried (docs/results.md, "digits: reconstruction
        # positives"). 1000 iterations (300 until 2026-12-07; stage 2 about 380 s on one thread against 140): over
        # three stage-2 seeds, eight sampling draws each, FD_rand closes 0.76 / 0.83 / 0.80 of its gap at the best K
        # against 0.65 / 0.61 / 0.69, K = 100 no worse than the VAE in either space in all three, claim 4's digits
        # rule intact (docs/results.md, "digits: 1000 stage-2 iterations").
        dataclasses.replace(_DIGITS_VAE, max_train_steps=2000),
        dataclasses.replace(
            _DIGITS_EBM, max_train_steps=1000, energy_l2_coeff=0.01, reconstruction_positive_fraction=1.0
        ),
        # Images are the decoder's samples at the chains' final (z, eps_x), not VAEBM's decoder means: on the three
        # stage-2 seeds above (four sampling seeds each) K = 30 ends 0.020 / 0.019 / 0.028 above FD_rand's floor
        # against the VAE's samples' 0.085 (0.67-0.77 of the gap), where the means end 0.067 / 0.071 / 0.079 against
        # the VAE's means' 0.158 (0.50-0.58); FD_clf ends within 0.6 of its floor at K = 30 either way
        # (docs/results.md, "digits: decoder samples as the images"). Sampled at 1.875e-3 (2.5e-3 until 2026-12-07):
        # over the same three seeds, eight sampling draws each, FD_rand closes 0.65 / 0.61 / 0.69 of its gap at the
        # best K (2.5e-3: 0.66 / 0.61 / 0.68) and K = 100 is no worse than the VAE in both spaces in all three (2.5e-3:
        # one of three; docs/results.md, "digits: one draw of 359 samples is not a verdict").
        Sampling(num_inference_steps=30, step_size=1.875e-3, decoder_output="sample"),
    ),
    Preset(
        "stacked_digits", "three 8x8 digits as RGB, 1000 modes (CPU scale)", "VAEBMVAE",
        dict(in_channels=3, sample_size=8),
        dataclasses.replace(_DIGITS_VAE, max_train_steps=1500), _DIGITS_EBM,  # three digits: a longer stage 1
        Sampling(num_inference_steps=30, step_size=5e-3),
    ),
    Preset(
        "mnist", "MNIST padded to 32x32 as NVAE does (CPU scale)", "VAEBMVAE", dict(_MNIST_NVAE),
        _MNIST_VAE,
        # Positives from the VAE's reconstructions: on the default command's VAE, three stage-2 seeds close 0.54 /
        # 0.59 / 0.62 of FD_clf's gap and 0.75 / 0.71 / 0.77 of FD_rand's, K = 100 no worse than the VAE in either
        # space, where the data positives closed 0.47 / 0.38 / 0.40 and 0.10 / worse / worse (docs/results.md,
        # "MNIST: reconstruction positives"). A 48-channel energy network (16 until 2026-12-06; the default command's
        # stage 2 takes 10.2 min against 7.7): three seeds close 0.69 / 0.69 / 0.69 of FD_clf's gap and 1.02 / 0.68 /
        # 0.93 of FD_rand's, K = 100 no worse in any, -E keeps pixel-shuffled MNIST out (0.999-1.000); 32 channels:
        # 0.70 / 0.61 / 0.69 and 1.00 / 1.05 / 0.72, K = 100 worse in FD_rand in seed 1 (docs/results.md, "MNIST: a
        # 48-channel energy network"). Batch 16 for 1000 iterations (32 for 500 until 2026-12-06, the same images
        # and chain steps as twice the updates; the default command's stage 2 19.4 min against 10.2): on that VAE three
        # seeds close 0.73 / 0.73 / 0.68 of FD_clf's gap and 0.91 / 1.04 / 0.86 of FD_rand's, K = 100 no worse in
        # any, against the preset's 0.72 / 0.69 / 0.71 and 0.73 / 0.67 / 0.98; -E keeps pixel-shuffled MNIST out
        # (0.999 / 1.000); 1400 iterations: 0.72 / 1.00, one seed (docs/results.md, "Where the chains take MNIST's
        # digits; negatives from the data; half the batch").
        # The chains' energy network in bfloat16 where the hardware has it natively (chain_dtype "auto"; VAEBM:
        # float32): 20% less time per stage-2 iteration on one thread, 16% on two, on an AVX-512 BF16 CPU
        # (benchmarks/results/chain_precision.md); the default command 26.0 min against 31.2. Paired with float32 runs
        # of the same seed and VAE, FD_clf's gap closed moves by -0.08 / -0.07 / +0.05 and FD_rand's by -0.01 / +0.02 /
        # -0.02, inside the stage-2 seed spread (docs/results.md, "MNIST: the chains' energy network in bfloat16").
        # The saved energy network is the mean of the last 200 iterates (the last iterate until 2026-12-07): nine
        # iterates 50 apart score 21-37 above FD_clf's floor at K = 50, so the last one is a draw from that spread;
        # on two stage-2 seeds the mean ends 19.6 / 20.0 at the best K against the last iterate's 22.3 / 19.2, and
        # keeps K = 100 no worse than the VAE in FD_rand where the last iterate of seed 0 ran away (docs/results.md,
        # "MNIST: the last iterate is a lottery; the mean of the last iterates").
        dataclasses.replace(
            _MNIST_STAGE_2, n_channel=48, reconstruction_positive_fraction=1.0, batch_size=16, max_train_steps=1000,
            replay_anneal_steps=1000, chain_dtype="auto", weight_average_fraction=0.2,
        ),
        # K = 50 (30 until 2026-12-07): on four energy networks of this preset (two seeds, two VAEs, float32 and
        # bfloat16 chains; five draws of 500 samples) K = 50 ends lower than K = 30 in FD_clf in every draw (by
        # 3.3-5.7 points) and in FD_rand too, and lower than K = 100 in FD_clf in three of the five; at 3e-4 (the
        # training step until 2026-12-04) chains barely moved the samples (docs/results.md, "Sampling step on MNIST"
        # and "MNIST: ink along the chains, and fifty steps"). Sampled with MALA (trained without): on six energy
        # networks FD_clf at the best K falls by 5-14 points in every one, FD_rand is better in five of the six, and
        # the chains drift less towards 1s and 7s (docs/results.md, "MNIST: MALA at sampling time").
        dataclasses.replace(_MNIST_SAMPLING, num_inference_steps=50, metropolis=True),
        resolution=32,
    ),
    Preset(
        "stacked_mnist", "StackedMNIST: three MNIST digits as RGB, padded to 32x32 (CPU scale)", "VAEBMVAE",
        dict(_MNIST_NVAE),
        # With two groups at 4x4, 2000 stage-1 steps cover more modes (873) than the one-group 4000 steps of this
        # preset until 2026-12-05 (824) in less time; VAEBM at K = 30 then covers 901 (reverse KL 0.34). The mnist
        # preset's stage 2 (with data positives) and sampling add modes where mean negatives at 3e-4 barely moved the
        # samples (docs/results.md, "StackedMNIST" and "A second group in the global latent"); reconstruction
        # positives moved neither the modes nor the reverse KL (905, 0.233 against 912, 0.228; "MNIST:
        # reconstruction positives"). Mean negatives alone, batches of 64 and 128, and K = 10 or 20 did not keep the
        # reverse KL below the VAE's over one to three stage-2 seeds each (docs/results.md, "StackedMNIST: the chains
        # carry digits to 1s").
        _MNIST_VAE, _MNIST_STAGE_2, _MNIST_SAMPLING,
        resolution=32,
    ),
    Preset(
        "gaussians25", "the 2-D 25-Gaussians toy (MLP VAE and energy)", "VAEBMMLPVAE",
        dict(latent_dim=2, hidden_dim=128, num_layers=2),
        # NVAE's Adamax lr 1e-2 diverges on the MLP VAE (2e-3 trains; 3k steps cover 5 of 25 modes, 10k steps 23).
        VAETraining(max_train_steps=10000, batch_size=256, learning_rate=2e-3),
        # Chains on the latent noise alone (the decoder's sigma_x is 8x a mode's width), the step from the decoder's
        # scale (3.3e-4 for this VAE, the value a search found), 10000 iterations: 5000 put 0.33 of the samples
        # within 3 sigma, 10000 0.54; the same run continued to 20000 diverged after 11000. The energy term
        # alpha = 0.05 (0.01 until 2026-12-07): at 0.01 the stage-2 seed decides whether the chains drain modes
        # (on one VAE, 23-25 of 25 at K = 30 and 21-25 at K = 100 over three seeds); at 0.05 all three seeds keep
        # 25/25 at every K with a reverse KL near 0.03, and the share within 3 sigma rises with the chain length:
        # 0.49-0.61 at K = 100, 0.66-0.76 at K = 300 (docs/results.md, "25-Gaussians: the energy term and the
        # seed").
        dataclasses.replace(
            _DIGITS_EBM, layout=MLP_LAYOUT, n_channel=128, learning_rate=3e-4, batch_size=256, spectral_reg_coeff=0.0,
            langevin_step_size=AUTO, pixel_noise=False, max_train_steps=10000, energy_l2_coeff=0.05,
        ),
        Sampling(num_inference_steps=300, step_size=AUTO),  # 2500 samples at K = 300: 6 s on one thread
    ),
]  # fmt: skip

PRESETS: dict[str, Preset] = {p.name: p for p in _PAPER + _OURS}
PAPER_PRESETS = tuple(p.name for p in _PAPER)

# NVAE ``args.dataset`` names -> our preset names.
NVAE_DATASET_TO_PRESET = {
    "cifar10": "cifar10",
    "celeba_64": "celeba64",
    "lsun_church_64": "lsun_church64",
    "celeba_256": "celebahq256",
    "mnist": "nvae_mnist",
}


def get_preset(name: str) -> Preset:
    """A preset by our name or by the NVAE dataset name; unknown names raise a ``ValueError`` listing the choices."""
    key = name if name in PRESETS else NVAE_DATASET_TO_PRESET.get(name, name)  # our names first: "mnist" is ours
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[key]


def ebm_layout_for_size(sample_size: int) -> str:
    """The paper's energy-network layout for square images of ``sample_size`` (every layout ends at 4x4 or less)."""
    if sample_size <= 8:
        return "digits8"
    if sample_size < 32:
        return "mnist"
    if sample_size < 64:
        return "cifar32"
    return "celeba64" if sample_size < 256 else "celeba256"


def preset_for_images(sample_shape: tuple[int, ...]) -> Preset:
    """The rule for image data without a preset of its own (image folders, Hub datasets): the ``mnist`` preset's
    training, with the energy layout for the image size and one latent scale below 16x16 (stage 2 with a 16-channel
    energy network, the data as positives, and without Bernoulli draws or the energy term)."""
    size = sample_shape[-1]
    base = PRESETS["mnist"]
    return dataclasses.replace(
        base,
        name=f"images{size}",
        description=f"{sample_shape[0]}x{size}x{size} images (rule: preset_for_images)",
        vae=dict(_SMALL_NVAE_2_SCALES) if size >= 16 else {},
        # Gaussian decoders here, not the Bernoulli of the mnist preset: the step from the decoder's scale, and
        # _MNIST_EBM without the mnist preset's Bernoulli draws (a Gaussian decoder's negatives are samples already).
        ebm_training=dataclasses.replace(_MNIST_EBM, layout=ebm_layout_for_size(size), langevin_step_size=AUTO),
        sampling=Sampling(num_inference_steps=10, step_size=AUTO),  # not the mnist preset's 4.8e-3, K = 50 (Bernoulli)
        resolution=None,
    )


def resolve(
    preset: Preset,
    *,
    vae: dict | None = None,
    vae_training: dict | None = None,
    ebm_training: dict | None = None,
    sampling: dict | None = None,
) -> Preset:
    """``preset`` with field overrides (``None`` values are ignored), checked by :func:`check_preset`; unknown field
    names raise a ``ValueError``."""

    def merged(section, values: dict | None):
        values = {k: v for k, v in (values or {}).items() if v is not None}
        names = {f.name for f in dataclasses.fields(section)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown {type(section).__name__} settings {unknown}; known: {sorted(names)}")
        return dataclasses.replace(section, **values)

    stage1 = merged(preset.vae_training, vae_training)
    if stage1.lr_warmup_steps is None:
        stage1 = dataclasses.replace(stage1, lr_warmup_steps=stage1.max_train_steps // 20)
    stage2, test_time = merged(preset.ebm_training, ebm_training), merged(preset.sampling, sampling)
    test_time = dataclasses.replace(test_time, metropolis=sampler_metropolis(stage2, test_time))
    resolved = dataclasses.replace(
        preset,
        vae={**preset.vae, **(vae or {})},
        vae_training=stage1,
        ebm_training=stage2,
        sampling=test_time,
    )
    check_preset(resolved)
    return resolved


class Bounds(NamedTuple):
    """The range a numeric setting must lie in, and the flag that sets it."""

    flag: str
    low: float
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    hint: str = ""  # appended to the error message

    def admits(self, value: float) -> bool:
        above = value >= self.low if self.low_inclusive else value > self.low
        below = self.high is None or (value <= self.high if self.high_inclusive else value < self.high)
        return above and below

    def describe(self) -> str:
        text = f"{'>=' if self.low_inclusive else '>'} {self.low}"
        return text + ("" if self.high is None else f" and {'<=' if self.high_inclusive else '<'} {self.high}")


# (section, field) -> its bounds, for the numeric settings checked before training. Adam's and Adamax's betas must be
# below 1 (torch refuses 1 when it builds the optimizer, which for stage 2 comes after stage 1 has trained).
NUMERIC_RANGES = {
    **{(section, "max_train_steps"): Bounds("--max_train_steps", 1) for section in ("vae", "ebm")},
    **{(section, "batch_size"): Bounds("--train_batch_size", 1) for section in ("vae", "ebm")},
    **{(section, "learning_rate"): Bounds("--learning_rate", 0, low_inclusive=False) for section in ("vae", "ebm")},
    **{(section, "weight_decay"): Bounds("--adam_weight_decay", 0) for section in ("vae", "ebm")},
    **{(section, "adam_beta1"): Bounds("--adam_beta1", 0, 1, high_inclusive=False) for section in ("vae", "ebm")},
    **{(section, "adam_beta2"): Bounds("--adam_beta2", 0, 1, high_inclusive=False) for section in ("vae", "ebm")},
    **{(section, "adam_eps"): Bounds("--adam_epsilon", 0, low_inclusive=False) for section in ("vae", "ebm")},
    **{(section, "lr_warmup_steps"): Bounds("--lr_warmup_steps", 0) for section in ("vae", "ebm")},
    **{(section, "spectral_reg_coeff"): Bounds("--spectral_reg_coeff", 0) for section in ("vae", "ebm")},
    ("vae", "kl_warmup_fraction"): Bounds("--kl_warmup_fraction", 0, 1),
    ("vae", "kl_const_coeff"): Bounds("--kl_const_coeff", 0, 1),
    ("vae", "readjust_bn_batches"): Bounds("--readjust_bn_batches", 0),
    ("vae", "ema_max_decay"): Bounds("--ema_max_decay", 0, 1),
    ("vae", "ema_inv_gamma"): Bounds("--ema_inv_gamma", 0, low_inclusive=False),
    ("vae", "ema_power"): Bounds("--ema_power", 0, low_inclusive=False),
    ("ebm", "n_channel"): Bounds("--ebm_n_channel", 1),
    ("ebm", "energy_l2_coeff"): Bounds("--energy_l2_coeff", 0),
    ("ebm", "bernoulli_negative_fraction"): Bounds("--bernoulli_negative_fraction", 0, 1),
    ("ebm", "reconstruction_positive_fraction"): Bounds("--reconstruction_positive_fraction", 0, 1),
    ("ebm", "ema_decay"): Bounds("--ebm_ema_decay", 0, 1, high_inclusive=False, hint="0 turns the EMA off"),
    ("ebm", "weight_average_fraction"): Bounds("--ebm_weight_average_fraction", 0, 1, hint="0 turns the average off"),
    ("ebm", "langevin_steps"): Bounds("--langevin_steps", 1),
    ("ebm", "langevin_noise_scale"): Bounds("--langevin_noise_scale", 0),
    ("ebm", "buffer_size"): Bounds("--buffer_size", 1),
    ("ebm", "max_replay_prob"): Bounds("--max_replay_prob", 0, 1),
    ("ebm", "replay_anneal_steps"): Bounds("--replay_anneal_steps", 0),
    ("ebm", "data_init_batches"): Bounds("--data_init_batches", 1),
    ("sampling", "num_inference_steps"): Bounds("--sample_langevin_steps", 0),
}
# Settings with a per-stage flag beside the shared one: the error names both.
STAGE_FLAGS = {
    (stage, name): f"--{stage}_{name} / --{name}"
    for stage in ("vae", "ebm")
    for name in ("learning_rate", "adam_beta1")
}


# VAE sizes that must be >= 1 (every other integer of an architecture must be >= 0, e.g. num_nf).
POSITIVE_VAE_SIZES = ("in_channels", "sample_size", "num_channels_enc", "num_channels_dec", "num_latent_scales",
                      "num_groups_per_scale", "num_latent_per_group", "in_features", "latent_dim", "hidden_dim",
                      "num_layers", "num_x_bits", "num_mixture_dec")  # fmt: skip


def check_vae_architecture(vae: dict) -> None:
    """Integer sizes of a VAE architecture (``--vae_config``, ``--vae_preset``, a preset's) checked before anything
    is built: a ``ValueError`` naming the setting instead of a negative-dimension error inside torch."""
    for name, value in vae.items():
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        low = 1 if name in POSITIVE_VAE_SIZES else 0
        if value < low:
            raise ValueError(f"the VAE's {name} must be an integer >= {low}, got {value} (--vae_config / preset).")


def check_preset(preset: Preset) -> None:
    """Settings that cannot train, each a ``ValueError`` naming the flag and the allowed range — all checked before
    stage 1 starts (NaN, Inf, zero learning rates, empty buffers, ...)."""
    sections = {"vae": preset.vae_training, "ebm": preset.ebm_training, "sampling": preset.sampling}
    for (section, name), bounds in NUMERIC_RANGES.items():
        value = getattr(sections[section], name)
        flag = STAGE_FLAGS.get((section, name), bounds.flag)
        number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        if not (number and bounds.admits(value)):
            hint = f" ({bounds.hint})" if bounds.hint else ""
            raise ValueError(
                f"{flag} ({section} {name}) must be a finite number {bounds.describe()}, got {value!r}{hint}."
            )
    check_vae_architecture(preset.vae)
    s2 = preset.ebm_training
    for name, value in (
        ("langevin_step_size", s2.langevin_step_size),
        ("sample_step_size", preset.sampling.step_size),
    ):
        if value != AUTO and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"--{name} must be a finite number > 0 or 'auto', got {value!r}.")
    if s2.sampling_space not in ("eps", "x"):
        raise ValueError(f"sampling_space must be 'eps' or 'x', got {s2.sampling_space!r}.")
    if s2.potential not in ("exact", "official"):
        raise ValueError(f"--potential must be 'exact' or 'official', got {s2.potential!r}.")
    if s2.chain_dtype not in CHAIN_DTYPES:
        raise ValueError(f"--langevin_dtype must be one of {', '.join(CHAIN_DTYPES)}, got {s2.chain_dtype!r}.")
    output = preset.sampling.decoder_output
    if output not in DECODER_OUTPUTS:
        raise ValueError(f"--sample_decoder_output must be one of {', '.join(DECODER_OUTPUTS)}, got {output!r}.")
    if s2.ema_decay > 0 and s2.weight_average_fraction > 0:
        raise ValueError(
            "--ebm_ema_decay and --ebm_weight_average_fraction both average the energy network's weights for the "
            "saved pipeline, in two different ways: set one of them to 0."
        )
    if s2.sampling_space == "x" and s2.use_buffer:
        raise ValueError("--use_buffer replays noise-space chains; drop it with --sampling_space x.")
    if s2.sampling_space == "x" and (s2.metropolis or preset.sampling.metropolis):
        raise ValueError(
            "MALA (--langevin_metropolis / --sample_metropolis) cannot run x-space chains: they clip images to "
            "[0, 1], which breaks the Metropolis test; drop it with --sampling_space x."
        )
    for section in (preset.vae_training, s2):
        if section.lr_scheduler not in LR_SCHEDULERS:
            raise ValueError(
                f"--lr_scheduler must be one of {', '.join(LR_SCHEDULERS)}, got {section.lr_scheduler!r}."
            )
