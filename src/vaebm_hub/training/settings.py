"""Resolved per-stage settings: every ``None`` flag of :class:`TrainingConfig` filled in.

Precedence for each value: the stage-prefixed flag (``--vae_learning_rate``), the shared flag (``--learning_rate``),
the ``--preset`` (stage 2 only: the paper's settings), the dataset's CPU-scale defaults (:mod:`.defaults`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..presets import VAEBMPreset, get_preset
from .config import TrainingConfig
from .defaults import VAE_WEIGHT_DECAY, DatasetDefaults


def first(*values):
    """The first value that is not ``None``."""
    return next(v for v in values if v is not None)


@dataclass(frozen=True)
class OptimizerSettings:
    learning_rate: float
    batch_size: int
    max_train_steps: int
    lr_scheduler: str
    lr_warmup_steps: int
    weight_decay: float


@dataclass(frozen=True)
class VAESettings:
    optim: OptimizerSettings
    kl_warmup_fraction: float
    kl_const_coeff: float
    kl_balance: bool
    likelihood_clamp: bool
    readjust_bn_batches: int  # 0: keep the training statistics
    dynamic_binarization: bool
    spectral_reg_coeff: float
    use_ema: bool
    ema_max_decay: float
    ema_inv_gamma: float
    ema_power: float


@dataclass(frozen=True)
class EBMSettings:
    optim: OptimizerSettings
    layout: str
    n_channel: int
    langevin_steps: int
    langevin_step_size: float
    langevin_noise_scale: float
    pixel_noise: bool
    metropolis: bool
    potential: str
    sampling_space: str
    use_buffer: bool
    buffer_size: int
    max_replay_prob: float
    replay_anneal_steps: int
    use_mu_cd: bool
    spectral_reg_coeff: float
    grad_clip: bool
    data_init: bool
    data_init_batches: int
    sample_langevin_steps: int
    sample_step_size: float


def stage2_preset(config: TrainingConfig, defaults: DatasetDefaults) -> VAEBMPreset:
    """``--preset`` if given (unknown names raise a ``ValueError``), else the dataset's default."""
    return get_preset(config.preset) if config.preset is not None else defaults.preset


def vae_settings(config: TrainingConfig, defaults: DatasetDefaults) -> VAESettings:
    steps = first(config.vae_max_train_steps, config.max_train_steps, defaults.vae_max_train_steps)
    optim = OptimizerSettings(
        learning_rate=first(config.vae_learning_rate, config.learning_rate, defaults.vae_learning_rate),
        batch_size=first(config.train_batch_size, defaults.vae_batch_size),
        max_train_steps=steps,
        lr_scheduler=first(config.lr_scheduler, "cosine"),
        lr_warmup_steps=first(config.lr_warmup_steps, steps // 20),
        weight_decay=first(config.adam_weight_decay, VAE_WEIGHT_DECAY),
    )
    if not 0 <= config.kl_warmup_fraction <= 1:
        raise ValueError(f"--kl_warmup_fraction must be in [0, 1], got {config.kl_warmup_fraction}.")
    return VAESettings(
        optim=optim,
        kl_warmup_fraction=config.kl_warmup_fraction,
        kl_const_coeff=config.kl_const_coeff,
        kl_balance=not config.no_kl_balance,
        likelihood_clamp=config.vae_likelihood_clamp,
        readjust_bn_batches=0 if config.no_readjust_bn else config.readjust_bn_batches,
        dynamic_binarization=not config.no_dynamic_binarization,
        spectral_reg_coeff=config.vae_spectral_reg_coeff,
        use_ema=config.use_ema,
        ema_max_decay=config.ema_max_decay,
        ema_inv_gamma=config.ema_inv_gamma,
        ema_power=config.ema_power,
    )


def ebm_settings(config: TrainingConfig, defaults: DatasetDefaults) -> EBMSettings:
    preset = stage2_preset(config, defaults)
    optim = OptimizerSettings(
        learning_rate=first(config.ebm_learning_rate, config.learning_rate, preset.learning_rate),
        batch_size=first(config.train_batch_size, preset.batch_size),
        max_train_steps=first(config.ebm_max_train_steps, config.max_train_steps, preset.max_train_steps),
        lr_scheduler=first(config.lr_scheduler, "constant"),
        lr_warmup_steps=first(config.lr_warmup_steps, 0),
        weight_decay=first(config.adam_weight_decay, preset.weight_decay),
    )
    settings = EBMSettings(
        optim=optim,
        layout=first(config.ebm_layout, preset.ebm_layout),
        n_channel=first(config.ebm_n_channel, preset.ebm_n_channel),
        langevin_steps=first(config.langevin_steps, preset.train_langevin_steps),
        langevin_step_size=first(config.langevin_step_size, preset.train_step_size),
        langevin_noise_scale=config.langevin_noise_scale,
        pixel_noise=first(config.langevin_pixel_noise, True),
        metropolis=config.langevin_metropolis,
        potential=config.potential,
        sampling_space=config.sampling_space,
        # The buffer replays eps_z; x-space chains start from fresh VAE samples instead.
        use_buffer=first(config.use_buffer, preset.use_buffer and config.sampling_space == "eps"),
        buffer_size=first(config.buffer_size, preset.buffer_size),
        max_replay_prob=first(config.max_replay_prob, preset.max_replay_prob),
        replay_anneal_steps=first(config.replay_anneal_steps, preset.replay_anneal_steps),
        use_mu_cd=first(config.use_mu_cd, preset.use_mu_cd),
        spectral_reg_coeff=first(config.spectral_reg_coeff, preset.spectral_reg_coeff),
        grad_clip=not config.no_grad_clip,
        data_init=not config.no_data_init,
        data_init_batches=config.data_init_batches,
        sample_langevin_steps=first(config.sample_langevin_steps, preset.sample_langevin_steps),
        sample_step_size=first(config.sample_step_size, config.langevin_step_size, preset.sample_step_size),
    )
    if settings.langevin_steps < 1 or settings.langevin_step_size <= 0:
        raise ValueError("--langevin_steps must be >= 1 and --langevin_step_size > 0.")
    if settings.sampling_space == "x" and settings.use_buffer:
        raise ValueError("--use_buffer replays noise-space chains; drop it with --sampling_space x.")
    if not 0 <= settings.max_replay_prob <= 1:
        raise ValueError(f"--max_replay_prob must be in [0, 1], got {settings.max_replay_prob}.")
    return settings
