"""The command line of ``accelerate launch examples/train.py``: flags, the dataclass they parse into, and the one place
where flags override a preset (:func:`resolve_preset`).

Flag names follow diffusers' ``train_unconditional.py`` where they apply. Every flag that a preset defines defaults to
``None`` (= the preset's value, :mod:`vaebm_hub.presets`); the preset is ``--preset`` or the dataset's own (the
built-ins are preset names), else :func:`~vaebm_hub.presets.preset_for_images`. Shared flags (``--learning_rate``,
``--max_train_steps``, ``--train_batch_size``, ``--lr_scheduler``, ``--lr_warmup_steps``, ``--adam_weight_decay``)
set both stages; the stage-prefixed ones win over them. Nothing past :func:`resolve_preset` reads the flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from ..constants import CHAIN_DTYPES, DECODER_OUTPUTS, DEFAULT_MODEL_LICENSE
from ..presets import PRESETS, VAE_CLASSES, Preset, get_preset, preset_for_images, resolve

STAGES = ("vae", "ebm", "all")
SAMPLING_SPACES = ("eps", "x")


@dataclass
class TrainingConfig:
    # what to train, on what, where
    stage: str = "all"
    dataset_name: str | None = None
    dataset_config_name: str | None = None
    train_data_dir: str | None = None
    cache_dir: str | None = None
    resolution: int | None = None
    channels: int | None = None
    center_crop: bool = False
    random_flip: bool = False
    dataloader_num_workers: int = 0
    output_dir: str = "vaebm-model"
    overwrite_output_dir: bool = False
    seed: int = 0
    preset: str | None = None
    # optimisation (shared by both stages unless a stage-prefixed flag is given)
    train_batch_size: int | None = None
    max_train_steps: int | None = None
    vae_max_train_steps: int | None = None
    ebm_max_train_steps: int | None = None
    learning_rate: float | None = None
    vae_learning_rate: float | None = None
    ebm_learning_rate: float | None = None
    lr_scheduler: str | None = None
    lr_warmup_steps: int | None = None
    adam_weight_decay: float | None = None
    adam_beta1: float | None = None
    adam_beta2: float | None = None
    adam_epsilon: float | None = None
    vae_adam_beta1: float | None = None
    ebm_adam_beta1: float | None = None
    ebm_ema_decay: float | None = None
    ebm_weight_average_fraction: float | None = None
    num_epochs: int | None = None
    vae_num_epochs: int | None = None
    ebm_num_epochs: int | None = None
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"
    channels_last: bool | None = None
    use_ema: bool | None = None
    ema_max_decay: float | None = None
    ema_inv_gamma: float | None = None
    ema_power: float | None = None
    # checkpoints, logs, samples
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = None
    resume_from_checkpoint: str | None = None
    report_to: str = "tensorboard"
    logging_dir: str = "logs"
    save_images_steps: int | None = None
    save_images_epochs: int | None = None
    save_model_epochs: int | None = None
    num_sample_images: int = 64
    eval_batch_size: int | None = None
    logger: str | None = None
    # stage 1 (VAE)
    vae_name_or_path: str | None = None
    vae_preset: str | None = None
    vae_config: str | None = None
    kl_warmup_fraction: float | None = None
    kl_const_coeff: float | None = None
    no_kl_balance: bool = False
    vae_likelihood_clamp: bool | None = None
    no_readjust_bn: bool = False
    no_dynamic_binarization: bool = False
    readjust_bn_batches: int | None = None
    vae_spectral_reg_coeff: float | None = None
    # stage 2 (EBM)
    ebm_layout: str | None = None
    ebm_n_channel: int | None = None
    langevin_steps: int | None = None
    langevin_step_size: float | None = None
    langevin_noise_scale: float | None = None
    langevin_metropolis: bool | None = None
    langevin_pixel_noise: bool | None = None
    langevin_dtype: str | None = None
    sample_langevin_steps: int | None = None
    sample_step_size: float | None = None
    sample_metropolis: bool | None = None
    sample_decoder_output: str | None = None
    potential: str | None = None
    sampling_space: str | None = None
    use_buffer: bool | None = None
    buffer_size: int | None = None
    max_replay_prob: float | None = None
    replay_anneal_steps: int | None = None
    use_mu_cd: bool | None = None
    spectral_reg_coeff: float | None = None
    energy_l2_coeff: float | None = None
    bernoulli_negative_fraction: float | None = None
    reconstruction_positive_fraction: float | None = None
    no_grad_clip: bool = False
    no_data_init: bool = False
    data_init_batches: int | None = None
    # divergence guard
    divergence_max_retries: int = 3
    divergence_lr_factor: float = 0.5
    divergence_threshold: float = 50.0
    divergence_growth_factor: float = 1000.0
    # Hub
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_token: str | None = None
    hub_private_repo: bool = False
    hub_license: str = DEFAULT_MODEL_LICENSE
    local_rank: int = -1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="accelerate launch examples/train.py",
        description="Train VAEBM: stage 1 the VAE (NVAE), stage 2 the energy network on the frozen VAE. Unset "
        "flags take the values of the --preset (default: the dataset's own; see vaebm_hub.presets).",
    )
    d = TrainingConfig()
    g = p.add_argument_group("run")
    g.add_argument("--stage", choices=STAGES, default=d.stage, help="vae, ebm (needs --vae_name_or_path) or all.")
    g.add_argument("--output_dir", default=d.output_dir, help="Ends holding the pipeline; checkpoints/logs inside.")
    g.add_argument("--overwrite_output_dir", action="store_true", help="Delete a previous run's files there first.")
    g.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help="Seeds initial weights, data order and every random draw (the same seed gives the same weights).",
    )
    g.add_argument("--preset", help=f"Settings of both stages and sampling: one of {', '.join(PRESETS)}.")
    g.add_argument("--local_rank", type=int, default=d.local_rank, help=argparse.SUPPRESS)

    g = p.add_argument_group("data")
    g.add_argument("--dataset_name", help="digits, mnist, stacked_mnist, stacked_digits, gaussians25 or a Hub id.")
    g.add_argument("--dataset_config_name", help="The Hub dataset's configuration name, if it has several.")
    g.add_argument("--train_data_dir", help="A folder of images (loaded as a datasets imagefolder).")
    g.add_argument("--cache_dir", help="Where datasets caches downloads.")
    g.add_argument(
        "--resolution", type=int, help="Resize + crop images to this size (default: the preset's, else keep it)."
    )
    g.add_argument("--channels", type=int, choices=(1, 3), help="Convert images to grey (1) or RGB (3).")
    g.add_argument(
        "--center_crop",
        action="store_true",
        help="Crop the centre after resizing (default: a random crop).",
    )
    g.add_argument("--random_flip", action="store_true", help="Mirror images horizontally at random.")
    g.add_argument(
        "--dataloader_num_workers",
        type=int,
        default=d.dataloader_num_workers,
        help="Worker processes loading the data (0 = in the main process).",
    )

    g = p.add_argument_group("optimisation (per stage; --vae_*/--ebm_* flags win over the shared ones)")
    g.add_argument("--train_batch_size", type=int, help="Per process.")
    for prefix in ("", "vae_", "ebm_"):
        g.add_argument(f"--{prefix}max_train_steps", type=int, help="Optimizer steps.")
        g.add_argument(
            f"--{prefix}learning_rate",
            type=float,
            help={"": "Learning rate of both stages", "vae_": "Stage 1 only", "ebm_": "Stage 2 only"}[prefix]
            + " (defaults: VAE Adamax 1e-2 as NVAE, EBM the preset's).",
        )
    g.add_argument("--lr_scheduler", help="A diffusers.optimization scheduler name (VAE: cosine, EBM: constant).")
    g.add_argument(
        "--lr_warmup_steps",
        type=int,
        help="Warm-up steps of the learning-rate schedule (VAE default: 5%% of the steps; EBM: 0).",
    )
    g.add_argument("--adam_weight_decay", type=float, help="Weight decay of both stages' optimizers.")
    g.add_argument("--adam_beta1", type=float, help="beta1 of both stages (defaults: VAE 0.9, EBM 0.99).")
    g.add_argument("--adam_beta2", type=float, help="beta2 of both stages (default 0.999).")
    g.add_argument("--adam_epsilon", type=float, help="eps of both stages (defaults: VAE 1e-3 as NVAE, EBM 1e-8).")
    g.add_argument("--vae_adam_beta1", type=float, help="beta1 of stage 1 only.")
    g.add_argument("--ebm_adam_beta1", type=float, help="beta1 of stage 2 only.")
    for prefix, what in (("", "each stage"), ("vae_", "stage 1"), ("ebm_", "stage 2")):
        g.add_argument(
            f"--{prefix}num_epochs", type=int, help=f"Passes over the data for {what}, instead of max_train_steps."
        )
    g.add_argument(
        "--gradient_accumulation_steps",
        type=int,
        default=d.gradient_accumulation_steps,
        help="Micro-batches per optimizer step.",
    )
    g.add_argument(
        "--mixed_precision",
        choices=("no", "fp16", "bf16"),
        default=d.mixed_precision,
        help="Accelerate's mixed precision for the networks (the Langevin chains stay float32).",
    )
    g.add_argument(
        "--channels_last",
        action=argparse.BooleanOptionalAction,
        help="Run the convolutions in channels-last layout (default: on when training on the CPU, where it makes "
        "a stage-1 step about 1.7x and a Langevin step 1.2-1.5x faster; saved weights are unaffected).",
    )
    g.add_argument("--use_ema", action=argparse.BooleanOptionalAction, help="Keep an EMA of the VAE weights.")
    g.add_argument("--ema_max_decay", type=float, help="Largest decay of the VAE's EMA.")
    g.add_argument("--ema_inv_gamma", type=float, help="inv_gamma of the EMA warm-up (diffusers' EMAModel).")
    g.add_argument("--ema_power", type=float, help="power of the EMA warm-up (diffusers' EMAModel).")
    g.add_argument(
        "--ebm_ema_decay",
        type=float,
        help="Decay of an EMA of the energy network's weights, which the saved pipeline samples with (not in VAEBM; "
        "0 = off, the last iterate as the paper).",
    )
    g.add_argument(
        "--ebm_weight_average_fraction",
        type=float,
        help="The saved pipeline samples with the uniform average of the energy network's weights over this share "
        "of stage 2's last iterations (stochastic weight averaging; not in VAEBM; 0 = off, the last iterate).",
    )

    g = p.add_argument_group("checkpoints and logging")
    g.add_argument(
        "--checkpointing_steps",
        type=int,
        default=d.checkpointing_steps,
        help="Write a resumable checkpoint every N optimizer steps (and at each stage's end).",
    )
    g.add_argument("--checkpoints_total_limit", type=int, help="Keep only the newest N checkpoints.")
    g.add_argument("--resume_from_checkpoint", help="'latest' or a checkpoint-N folder.")
    g.add_argument("--report_to", default=d.report_to, help="tensorboard, wandb, all or none.")
    g.add_argument("--logging_dir", default=d.logging_dir, help="Relative to --output_dir.")
    g.add_argument("--save_images_steps", type=int, help="Write a sample grid every N steps (always at stage end).")
    g.add_argument("--save_images_epochs", type=int, help="Write a sample grid every N epochs (diffusers' flag).")
    g.add_argument(
        "--save_model_epochs", type=int, help="Also save the pipeline into --output_dir every N epochs of a stage."
    )
    g.add_argument("--num_sample_images", type=int, default=d.num_sample_images, help="Images per sample grid.")
    g.add_argument("--eval_batch_size", type=int, help="diffusers' name for --num_sample_images.")
    g.add_argument("--logger", choices=("tensorboard", "wandb", "none"), help="diffusers' name for --report_to.")

    g = p.add_argument_group("stage 1: VAE")
    g.add_argument("--vae_name_or_path", help="A saved pipeline (its vae/) or a saved VAE folder.")
    g.add_argument("--vae_preset", help="Take the VAE architecture of this preset instead.")
    g.add_argument(
        "--vae_config",
        help="A JSON file of VAE config values; its _class_name (VAEBMVAE or VAEBMMLPVAE) defaults to the preset's.",
    )
    g.add_argument("--kl_warmup_fraction", type=float, help="Share of stage 1 over which the KL weight rises to 1.")
    g.add_argument("--kl_const_coeff", type=float, help="Smallest KL coefficient.")
    g.add_argument("--no_kl_balance", action="store_true", help="Turn off NVAE's KL balancing during warm-up.")
    g.add_argument(
        "--vae_likelihood_clamp",
        action=argparse.BooleanOptionalAction,
        help="Train with VAEBM's sampling-time likelihood clamp (log sigma >= -2), or with "
        "--no-vae_likelihood_clamp NVAE's unclamped likelihood (default: the preset's; see docs/results.md).",
    )
    g.add_argument(
        "--no_readjust_bn",
        action="store_true",
        help="Keep the VAE's batch-norm statistics from training instead of re-estimating them from prior samples "
        "before saving (NVAE's --readjust_bn, on by default).",
    )
    g.add_argument("--readjust_bn_batches", type=int, help="Prior-sample batches for that.")
    g.add_argument(
        "--no_dynamic_binarization",
        action="store_true",
        help="Bernoulli decoders train on the grey images themselves instead of a fresh binarisation of every batch "
        "(pixel ~ Bernoulli(intensity), NVAE's MNIST setting).",
    )
    g.add_argument(
        "--vae_spectral_reg_coeff",
        type=float,
        help="Weight of NVAE's spectral regulariser in stage 1 (0 = off).",
    )

    g = p.add_argument_group("stage 2: EBM")
    g.add_argument(
        "--ebm_layout",
        help="Energy-network layout: cifar32, celeba64, lsun64, celeba256, mnist, digits8 or mlp.",
    )
    g.add_argument("--ebm_n_channel", type=int, help="Base width of the energy network.")
    g.add_argument("--langevin_steps", type=int, help="K, Langevin steps per training iteration.")
    g.add_argument(
        "--langevin_step_size",
        type=step_size_value,
        help="eta of the training chains, or 'auto' (from the decoder's scale).",
    )
    g.add_argument(
        "--langevin_noise_scale",
        type=float,
        help="Scale of the injected noise (1 = Langevin; 0 = gradient descent).",
    )
    g.add_argument(
        "--langevin_metropolis",
        action=argparse.BooleanOptionalAction,
        help="Metropolis-adjusted Langevin (MALA) for the training chains and the saved pipeline's sampler.",
    )
    g.add_argument(
        "--langevin_pixel_noise",
        action=argparse.BooleanOptionalAction,
        help="Chains move the pixel noise eps_x with eps_z (the paper), or with --no-langevin_pixel_noise eps_z "
        "alone, the energy network seeing decoder means (for decoders whose noise is wide next to the data's detail).",
    )
    g.add_argument(
        "--langevin_dtype",
        choices=CHAIN_DTYPES,
        help="Precision of the energy network inside the training chains: float32 (VAEBM), bfloat16 (autocast; "
        "faster where the hardware has native bfloat16) or auto (bfloat16 only there).",
    )
    g.add_argument("--sample_langevin_steps", type=int, help="Default chain length of the saved pipeline.")
    g.add_argument(
        "--sample_step_size", type=step_size_value, help="Step size of the saved pipeline's scheduler, or 'auto'."
    )
    g.add_argument(
        "--sample_metropolis",
        action=argparse.BooleanOptionalAction,
        help="MALA in the saved pipeline's sampler alone (default: --langevin_metropolis if given, else the preset).",
    )
    g.add_argument(
        "--sample_decoder_output",
        choices=DECODER_OUTPUTS,
        help="The saved pipeline's images: the decoder mean of the chains' final z (VAEBM), or the decoder's sample "
        "at their final (z, eps_x) (needs pixel noise). With --sampling_space x, also the images the chains start "
        "from. Default: the preset's.",
    )
    g.add_argument(
        "--potential",
        choices=("exact", "official"),
        help="exact: the paper's E(T(eps)) + |eps|^2/2; official: the released code's potential.",
    )
    g.add_argument(
        "--sampling_space",
        choices=SAMPLING_SPACES,
        help="eps: VAEBM's Langevin chains in the VAE's noise space (default). x: the paper's ablation, an EBM on x "
        "alone with chains in data space on E(x), started from the VAE's images of --sample_decoder_output (decoder "
        "means or samples; no replay buffer).",
    )
    g.add_argument("--use_buffer", action=argparse.BooleanOptionalAction, help="Replay buffer of eps_z.")
    g.add_argument("--buffer_size", type=int, help="Capacity of the eps_z replay buffer.")
    g.add_argument("--max_replay_prob", type=float, help="Largest probability that a chain restarts from the buffer.")
    g.add_argument(
        "--replay_anneal_steps",
        type=int,
        help="Steps over which the replay probability rises to its maximum.",
    )
    g.add_argument("--use_mu_cd", action=argparse.BooleanOptionalAction, help="Negatives = decoder mean.")
    g.add_argument("--spectral_reg_coeff", type=float, help="alpha_s of the EBM's spectral regularisation.")
    g.add_argument(
        "--energy_l2_coeff",
        type=float,
        help="alpha of IGEBM's energy term alpha * mean(E(x+)^2 + E(x-)^2), which keeps the energies bounded (not in "
        "VAEBM: 0 is the paper's loss).",
    )
    g.add_argument(
        "--bernoulli_negative_fraction",
        type=float,
        help="Bernoulli decoders: the share of the negatives that are binary draws x ~ Bernoulli(decoder mean) "
        "instead of the mean itself (not in VAEBM; 0: means only).",
    )
    g.add_argument(
        "--reconstruction_positive_fraction",
        type=float,
        help="The share of the positives that are the VAE's reconstructions of the data batch (decoder outputs at "
        "z ~ q(z|x), of the kind the chains' states decode to) instead of the data (not in VAEBM; 0: data only). 1: "
        "the energy learns the prior's holes rather than the decoder's blur.",
    )
    g.add_argument("--no_grad_clip", action="store_true", help="Turn off IGEBM gradient clipping.")
    g.add_argument("--no_data_init", action="store_true", help="Skip the EBM's data-dependent initialisation.")
    g.add_argument(
        "--data_init_batches",
        type=int,
        help="Batches used for the energy network's data-dependent initialisation.",
    )

    g = p.add_argument_group("divergence guard")
    g.add_argument(
        "--divergence_max_retries",
        type=int,
        default=d.divergence_max_retries,
        help="Roll-backs after a divergence before the run stops with TrainingDivergedError.",
    )
    g.add_argument(
        "--divergence_lr_factor",
        type=float,
        default=d.divergence_lr_factor,
        help="Learning-rate factor applied at each roll-back.",
    )
    g.add_argument(
        "--divergence_threshold",
        type=float,
        default=d.divergence_threshold,
        help="A watched metric this many times its typical size counts as a blow-up.",
    )
    g.add_argument(
        "--divergence_growth_factor",
        type=float,
        default=d.divergence_growth_factor,
        help="Stage 2: an energy gap this many times its median over the stage's first 50 steps counts as a "
        "divergence, at any step ('inf' turns this test off).",
    )

    g = p.add_argument_group("Hub")
    g.add_argument(
        "--push_to_hub",
        action="store_true",
        help="Upload the trained pipeline and its card (never checkpoints or logs) when done.",
    )
    g.add_argument("--hub_model_id", help="The Hub repository to push to, e.g. your-name/vaebm-mnist.")
    g.add_argument("--hub_token", help="Token for the upload (default: HF_TOKEN or the stored login).")
    g.add_argument("--hub_private_repo", action="store_true", help="Create the repository as private.")
    g.add_argument(
        "--hub_license",
        default=DEFAULT_MODEL_LICENSE,
        help="The model card's license (a Hub license id; default: %(default)s, the package's license).",
    )
    return p


def step_size_value(text: str) -> float | str:
    """``--langevin_step_size`` / ``--sample_step_size``: a number, or ``auto``."""
    return "auto" if text == "auto" else float(text)


def parse_args(argv: Sequence[str] | None = None) -> TrainingConfig:
    """Parse flags into a :class:`TrainingConfig` and check the ones that need no data or model."""
    namespace = build_parser().parse_args(argv)
    config = TrainingConfig(**{f.name: getattr(namespace, f.name) for f in fields(TrainingConfig)})
    check_config(config)
    return config


def check_config(config: TrainingConfig) -> None:
    """Flag combinations that are wrong whatever the data; each raises a ``ValueError`` naming the fix."""
    if config.stage not in STAGES:
        raise ValueError(f"--stage must be one of {STAGES}, got {config.stage!r}.")
    if config.stage == "ebm" and config.vae_name_or_path is None:
        raise ValueError(
            "--stage ebm trains the energy network on a frozen, trained VAE: pass --vae_name_or_path (a pipeline "
            "saved by --stage vae, or a saved VAE folder), or use --stage all to train both."
        )
    if sum(x is not None for x in (config.vae_preset, config.vae_config)) > 1:
        raise ValueError("Pass only one of --vae_preset and --vae_config.")
    for name in ("preset", "vae_preset"):
        if getattr(config, name) is not None:
            get_preset(getattr(config, name))  # unknown names list the choices
    if config.resolution is not None and config.resolution < 1:
        raise ValueError(f"--resolution must be a positive image size in pixels, got {config.resolution}.")
    if Path(config.output_dir).exists() and not Path(config.output_dir).is_dir():
        raise ValueError(f"--output_dir {config.output_dir!r} is a file; pass a folder (new or a previous run's).")
    if config.push_to_hub and not config.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id (e.g. your-name/vaebm-digits).")
    if config.dataloader_num_workers < 0:
        raise ValueError(f"--dataloader_num_workers must be >= 0 (0 loads in the main process), got "
                         f"{config.dataloader_num_workers}.")  # fmt: skip
    if config.gradient_accumulation_steps < 1:
        raise ValueError("--gradient_accumulation_steps must be >= 1.")
    if config.checkpointing_steps < 1:
        raise ValueError("--checkpointing_steps must be >= 1.")
    if config.checkpoints_total_limit is not None and config.checkpoints_total_limit < 1:
        raise ValueError("--checkpoints_total_limit must be >= 1 (it keeps the newest N checkpoints).")
    counts = ("train_batch_size", "max_train_steps", "vae_max_train_steps", "ebm_max_train_steps", "num_sample_images",
              "eval_batch_size", "save_images_epochs", "save_model_epochs")  # fmt: skip
    for name in counts:
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}.")
    for stage in ("", "vae_", "ebm_"):
        steps, epochs = getattr(config, f"{stage}max_train_steps"), getattr(config, f"{stage}num_epochs")
        if steps is not None and epochs is not None:
            raise ValueError(f"Pass --{stage}max_train_steps or --{stage}num_epochs, not both.")
        if epochs is not None and epochs < 1:
            raise ValueError(f"--{stage}num_epochs must be >= 1, got {epochs}.")
    if config.logger is not None:
        config.report_to = config.logger  # diffusers' train_unconditional.py name
    if config.eval_batch_size is not None:
        config.num_sample_images = config.eval_batch_size
    check_tracker_installed(config.report_to)
    if config.readjust_bn_batches is not None and config.readjust_bn_batches < 1:
        raise ValueError("--readjust_bn_batches must be >= 1 (use --no_readjust_bn to skip the re-estimation).")


TRACKER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}


def check_tracker_installed(report_to: str) -> None:
    """Fail before training (as diffusers' scripts do) when ``--report_to`` names a tracker that is not installed."""
    names = TRACKER_PACKAGES if report_to == "all" else ([report_to] if report_to in TRACKER_PACKAGES else [])
    for name in names:
        module, package = TRACKER_PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise ValueError(
                f"--report_to {report_to} needs {name}, which is not installed: pip install {package} "
                "(or pass --report_to none)."
            )
    if report_to not in ("none", "all", *TRACKER_PACKAGES):
        raise ValueError(f"--report_to must be one of tensorboard, wandb, all or none, got {report_to!r}.")


# ---------------------------------------------------------------------------------------------------- flags -> preset
def preset_name(config: TrainingConfig) -> str | None:
    """``--preset``, else the dataset's own preset (every built-in has one), else ``None`` (the image rule)."""
    if config.preset is not None:
        return config.preset
    return config.dataset_name if config.dataset_name in PRESETS else None


def _first(*values):
    return next((v for v in values if v is not None), None)


def _vae_architecture(config: TrainingConfig, preset_class: str) -> tuple[str | None, dict]:
    """``(class name or None, kwargs)`` from ``--vae_config`` or ``--vae_preset`` (``(None, {})`` if neither). A
    ``--vae_config`` without ``_class_name`` keeps the preset's class ``preset_class`` (an MLP VAE for vectors)."""
    if config.vae_preset is not None:
        preset = get_preset(config.vae_preset)
        return preset.vae_class, dict(preset.vae)
    if config.vae_config is None:
        return None, {}
    path = Path(config.vae_config)
    if not path.is_file():
        raise ValueError(f"--vae_config {config.vae_config!r} is not a file; pass a JSON file of config values.")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"--vae_config {config.vae_config!r} is not valid JSON ({error}).") from error
    if not isinstance(values, dict):
        raise ValueError(f"--vae_config {config.vae_config!r} must hold a JSON object of VAE config values.")
    class_name = values.get("_class_name", preset_class)
    if class_name not in VAE_CLASSES:
        raise ValueError(f"--vae_config names an unknown class {class_name!r}; use one of {list(VAE_CLASSES)}")
    return class_name, {k: v for k, v in values.items() if not k.startswith("_")}


def steps_per_epoch(num_samples: int, batch_size: int, num_processes: int = 1, accumulation: int = 1) -> int:
    """Optimizer steps of one pass over ``num_samples`` (the last, partial global batch counts)."""
    return max(1, math.ceil(num_samples / (batch_size * num_processes * accumulation)))


def resolve_preset(
    config: TrainingConfig, sample_shape: tuple[int, ...], num_samples: int | None = None, num_processes: int = 1
) -> Preset:
    """The run's settings: the preset (see :func:`preset_name`; image data without one get
    :func:`~vaebm_hub.presets.preset_for_images`) with every flag that was given applied on top. ``--num_epochs``
    become optimizer steps for a dataset of ``num_samples`` items on ``num_processes`` processes."""
    name = preset_name(config)
    preset = get_preset(name) if name is not None else preset_for_images(sample_shape)
    c = config

    def stage_steps(max_steps: int | None, epochs: int | None, preset_batch: int) -> int | None:
        if epochs is None:
            return max_steps
        if num_samples is None:
            raise ValueError("--num_epochs needs the dataset size; pass --max_train_steps instead.")
        batch = _first(c.train_batch_size, preset_batch)
        return epochs * steps_per_epoch(num_samples, batch, num_processes, c.gradient_accumulation_steps)

    sampling_space = _first(c.sampling_space, preset.ebm_training.sampling_space)
    use_buffer = c.use_buffer
    if use_buffer is None and sampling_space == "x":
        use_buffer = False  # the buffer replays noise-space chains
    vae_class, vae_kwargs = _vae_architecture(config, preset.vae_class)
    if vae_class is not None:
        preset = dataclasses.replace(preset, vae_class=vae_class, vae=vae_kwargs)
    shared = dict(
        batch_size=c.train_batch_size, lr_scheduler=c.lr_scheduler, lr_warmup_steps=c.lr_warmup_steps,
        weight_decay=c.adam_weight_decay, adam_beta2=c.adam_beta2, adam_eps=c.adam_epsilon,
    )  # fmt: skip
    return resolve(
        preset,
        vae_training=dict(
            shared,
            max_train_steps=stage_steps(
                _first(c.vae_max_train_steps, c.max_train_steps),
                _first(c.vae_num_epochs, c.num_epochs),
                preset.vae_training.batch_size,
            ),
            learning_rate=_first(c.vae_learning_rate, c.learning_rate),
            adam_beta1=_first(c.vae_adam_beta1, c.adam_beta1),
            kl_warmup_fraction=c.kl_warmup_fraction,
            kl_const_coeff=c.kl_const_coeff,
            kl_balance=False if c.no_kl_balance else None,
            likelihood_clamp=c.vae_likelihood_clamp,
            dynamic_binarization=False if c.no_dynamic_binarization else None,
            readjust_bn_batches=0 if c.no_readjust_bn else c.readjust_bn_batches,
            spectral_reg_coeff=c.vae_spectral_reg_coeff,
            use_ema=c.use_ema,
            ema_max_decay=c.ema_max_decay,
            ema_inv_gamma=c.ema_inv_gamma,
            ema_power=c.ema_power,
        ),  # fmt: skip
        ebm_training=dict(
            shared,
            max_train_steps=stage_steps(
                _first(c.ebm_max_train_steps, c.max_train_steps),
                _first(c.ebm_num_epochs, c.num_epochs),
                preset.ebm_training.batch_size,
            ),
            learning_rate=_first(c.ebm_learning_rate, c.learning_rate),
            adam_beta1=_first(c.ebm_adam_beta1, c.adam_beta1),
            layout=c.ebm_layout,
            n_channel=c.ebm_n_channel,
            langevin_steps=c.langevin_steps,
            langevin_step_size=c.langevin_step_size,
            langevin_noise_scale=c.langevin_noise_scale,
            metropolis=c.langevin_metropolis,
            pixel_noise=c.langevin_pixel_noise,
            chain_dtype=c.langevin_dtype,
            potential=c.potential,
            sampling_space=sampling_space,
            use_buffer=use_buffer,
            buffer_size=c.buffer_size,
            max_replay_prob=c.max_replay_prob,
            replay_anneal_steps=c.replay_anneal_steps,
            use_mu_cd=c.use_mu_cd,
            spectral_reg_coeff=c.spectral_reg_coeff,
            energy_l2_coeff=c.energy_l2_coeff,
            bernoulli_negative_fraction=c.bernoulli_negative_fraction,
            reconstruction_positive_fraction=c.reconstruction_positive_fraction,
            ema_decay=c.ebm_ema_decay,
            weight_average_fraction=c.ebm_weight_average_fraction,
            grad_clip=False if c.no_grad_clip else None,
            data_init=False if c.no_data_init else None,
            data_init_batches=c.data_init_batches,
        ),  # fmt: skip
        sampling=dict(
            num_inference_steps=c.sample_langevin_steps,
            step_size=_first(c.sample_step_size, c.langevin_step_size),
            # x-space chains clip images, which MALA cannot: a preset's MALA sampler is dropped for them
            metropolis=_first(c.sample_metropolis, c.langevin_metropolis, False if sampling_space == "x" else None),
            # a decoder sample needs chains that carry eps_x: a preset's is dropped without pixel noise
            decoder_output=_first(c.sample_decoder_output, "mean" if c.langevin_pixel_noise is False else None),
        ),
    )
