"""The training runs behind the reproduction, each a list of package-trainer flags, and their on-disk cache.

Every run goes through :func:`vaebm_hub.training.main` with a fixed seed. A finished run leaves a saved pipeline in
``<cache_dir>/<name>[-fast]/`` next to ``reproduce_flags.json`` and its training time; a later call with the same
flags loads it instead of retraining (different flags retrain from scratch). ``--fast`` runs are tiny smoke runs
with their own folders.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..pipelines import VAEBMPipeline
from ..training import main as train_main

FLAGS_FILE = "reproduce_flags.json"
SECONDS_FILE = "reproduce_train_seconds.json"
COMMON_FLAGS = ["--seed", "0", "--report_to", "none", "--checkpointing_steps", "100000", "--num_sample_images", "16"]
FAST_FLAGS = [
    "--vae_max_train_steps", "3", "--ebm_max_train_steps", "2", "--train_batch_size", "16", "--langevin_steps", "2",
    "--ebm_n_channel", "8", "--data_init_batches", "1",
]  # fmt: skip

# MNIST at CPU scale: a one-scale NVAE (8 channels, 2 groups of 8x7x7 latents, Gaussian decoder) trains at about
# 0.4 s per batch of 64 on one core; the dataset default (two scales, 16 channels) costs three times that.
MNIST_VAE_CONFIG = dict(
    _class_name="VAEBMVAE", in_channels=1, sample_size=28, num_channels_enc=8, num_channels_dec=8,
    num_latent_scales=1, num_groups_per_scale=2, num_latent_per_group=8, num_preprocess_blocks=2,
    num_postprocess_blocks=2,
)  # fmt: skip


@dataclass(frozen=True)
class TrainingRun:
    """A named trainer invocation. ``base`` names a run whose saved VAE this one trains its EBM on (``--stage
    ebm``); ``vae_config`` is written to a JSON file and passed as ``--vae_config``; ``threads`` is torch's thread
    count while training (8x8 models run fastest on one)."""

    name: str
    flags: tuple[str, ...]
    base: str | None = None
    vae_config: dict = field(default_factory=dict)
    threads: int = 1


RUNS: dict[str, TrainingRun] = {
    run.name: run
    for run in (
        # The embedded demo's scale: digits defaults (vaebm_hub.presets "digits"), 1000 VAE + 400 EBM steps.
        TrainingRun(
            "digits", ("--dataset_name", "digits", "--vae_max_train_steps", "1000", "--ebm_max_train_steps", "400")
        ),
        # The ablation: an EBM on x alone, trained with x-space chains from the same frozen digits VAE.
        TrainingRun(
            "digits_x_space",
            ("--dataset_name", "digits", "--ebm_max_train_steps", "400", "--sampling_space", "x"),
            base="digits",
        ),
        # MNIST is the costliest run (~0.4 s per VAE step, ~2.5 s per EBM iteration on one free core).
        TrainingRun(
            "mnist",
            (
                "--dataset_name",
                "mnist",
                "--vae_max_train_steps",
                "600",
                "--ebm_max_train_steps",
                "80",
                "--ebm_learning_rate",
                "2e-4",
            ),
            vae_config=MNIST_VAE_CONFIG,
            threads=2,
        ),
        TrainingRun(
            "stacked_digits",
            ("--dataset_name", "stacked_digits", "--vae_max_train_steps", "1000", "--ebm_max_train_steps", "300"),
        ),
        # The toy: NVAE's Adamax lr 1e-2 diverges on the MLP VAE (2e-3 trains; 10k steps reach 23 of 25 modes); the
        # EBM gets a larger step size (3e-2) and lr (3e-4) than the digits preset, and mean negatives (use_mu_cd),
        # after 3 short tries recorded in docs/results.md.
        TrainingRun(
            "gaussians25",
            (
                "--dataset_name",
                "gaussians25",
                "--vae_learning_rate",
                "2e-3",
                "--vae_max_train_steps",
                "10000",
                "--ebm_max_train_steps",
                "500",
                "--ebm_learning_rate",
                "3e-4",
                "--langevin_step_size",
                "3e-2",
                "--sample_step_size",
                "3e-2",
                "--use_mu_cd",
            ),
        ),
    )
}


def run_folder(cache_dir: Path, name: str, fast: bool) -> Path:
    return Path(cache_dir) / (f"{name}-fast" if fast else name)


def trainer_flags(run: TrainingRun, cache_dir: Path, fast: bool) -> list[str]:
    """The full flag list of ``run`` (the ``--fast`` sizes override the run's own step counts)."""
    flags = ["--output_dir", str(run_folder(cache_dir, run.name, fast)), *COMMON_FLAGS, *run.flags]
    if run.base is not None:
        flags += ["--stage", "ebm", "--vae_name_or_path", str(run_folder(cache_dir, run.base, fast))]
    if run.vae_config:
        flags += ["--vae_config", str(run_folder(cache_dir, run.name, fast) / "vae_config.json")]
    return flags + (FAST_FLAGS if fast else [])


def _cached(folder: Path, flags: list[str]) -> bool:
    record = folder / FLAGS_FILE
    return (folder / "model_index.json").is_file() and record.is_file() and json.loads(record.read_text()) == flags


def train(name: str, cache_dir: Path, fast: bool = False) -> tuple[Path, float]:
    """Train run ``name`` (and the run it builds on) unless cached; returns its folder and the seconds spent
    training now (0 when loaded from the cache)."""
    run = RUNS[name]
    seconds = train(run.base, cache_dir, fast)[1] if run.base is not None else 0.0
    folder, flags = run_folder(cache_dir, name, fast), trainer_flags(run, cache_dir, fast)
    if _cached(folder, flags):
        return folder, seconds
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FLAGS_FILE).unlink(missing_ok=True)  # written again only once this training run has finished
    if run.vae_config:
        (folder / "vae_config.json").write_text(json.dumps(run.vae_config, indent=2))
    threads = torch.get_num_threads()
    torch.set_num_threads(run.threads)
    start = time.perf_counter()
    try:
        train_main([*flags, "--overwrite_output_dir"])
    finally:
        torch.set_num_threads(threads)
    seconds += time.perf_counter() - start
    (folder / SECONDS_FILE).write_text(json.dumps(round(time.perf_counter() - start, 1)))
    (folder / FLAGS_FILE).write_text(json.dumps(flags, indent=2))
    return folder, seconds


def recorded_train_seconds(folder: Path) -> float | None:
    """How long the run that trained the cached pipeline in ``folder`` took (its own stages only), if recorded."""
    path = Path(folder) / SECONDS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def load_pipeline(folder: Path) -> VAEBMPipeline:
    pipe = VAEBMPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe
