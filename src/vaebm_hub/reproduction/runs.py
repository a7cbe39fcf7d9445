"""The training runs behind the reproduction, each a list of package-trainer flags, and their on-disk cache.

Every run goes through :func:`vaebm_hub.training.main` with a fixed seed. A finished run leaves a saved pipeline in
``<cache_dir>/<name>[-fast]/`` next to ``reproduce_flags.json`` and its training time; a later call with the same
flags loads it instead of retraining (different flags retrain from scratch). ``--fast`` runs are tiny smoke runs
with their own folders. :func:`train_runs` trains the runs a command needs two at a time, each in its own process
on one torch thread (every run is seeded, so the result does not depend on the order).
"""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
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
# 0.3 s per batch of 64 on one free core; the dataset default (two scales, 16 channels) costs three times that.
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


# MNIST in two runs, so that the EBM gets its own batch size: stage 1 (1200 steps, batch 64, ~0.3 s a step on one
# core) and stage 2 on that frozen VAE (batch 32, ~1 s an iteration). The EBM at the digits preset's spectral
# regularisation diverged at lr 2e-4 (see the MNIST tuning notes in docs/results.md).
MNIST_VAE_RUN = TrainingRun(
    "mnist_vae", ("--dataset_name", "mnist", "--stage", "vae", "--vae_max_train_steps", "1200"),
    vae_config=MNIST_VAE_CONFIG,
)  # fmt: skip
MNIST_RUN = TrainingRun(
    "mnist",
    ("--dataset_name", "mnist", "--ebm_max_train_steps", "200", "--ebm_learning_rate", "1e-4", "--train_batch_size",
     "32", "--spectral_reg_coeff", "1.0"),
    base="mnist_vae",
)  # fmt: skip

RUNS: dict[str, TrainingRun] = {
    run.name: run
    for run in (  # costliest first: :func:`train_runs` starts them in this order
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
        TrainingRun(
            "stacked_digits",
            ("--dataset_name", "stacked_digits", "--vae_max_train_steps", "1000", "--ebm_max_train_steps", "300"),
        ),
        MNIST_VAE_RUN,
        MNIST_RUN,
        # The toy at the gaussians25 training defaults (their tuning is recorded in docs/results.md).
        TrainingRun("gaussians25", ("--dataset_name", "gaussians25")),
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


def train(name: str, cache_dir: Path, fast: bool = False, threads: int | None = None) -> tuple[Path, float]:
    """Train run ``name`` (and the run it builds on) unless cached; returns its folder and the seconds spent
    training now (0 when loaded from the cache). ``threads`` overrides the run's torch thread count."""
    run = RUNS[name]
    seconds = train(run.base, cache_dir, fast, threads)[1] if run.base is not None else 0.0
    folder, flags = run_folder(cache_dir, name, fast), trainer_flags(run, cache_dir, fast)
    if _cached(folder, flags):
        return folder, seconds
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FLAGS_FILE).unlink(missing_ok=True)  # written again only once this training run has finished
    if run.vae_config:
        (folder / "vae_config.json").write_text(json.dumps(run.vae_config, indent=2))
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(run.threads if threads is None else threads)
    start = time.perf_counter()
    try:
        train_main([*flags, "--overwrite_output_dir"])
    finally:
        torch.set_num_threads(previous_threads)
    seconds += time.perf_counter() - start
    (folder / SECONDS_FILE).write_text(json.dumps(round(time.perf_counter() - start, 1)))
    (folder / FLAGS_FILE).write_text(json.dumps(flags, indent=2))
    return folder, seconds


def _train_chain(names: list[str], cache_dir: str, fast: bool) -> dict[str, float]:
    """Worker of :func:`train_runs`: train ``names`` in order on one torch thread; ``{name: seconds}``."""
    return {name: train(name, Path(cache_dir), fast, threads=1)[1] for name in names}


def train_runs(names: list[str], cache_dir: Path, fast: bool = False, max_workers: int = 2) -> dict[str, float]:
    """Train the runs in ``names`` (and the runs they build on) that are not cached, ``max_workers`` processes at
    a time; a run and the runs built on it share a process, in that order. Returns ``{name: seconds}`` of the runs
    trained now (the cache semantics are those of :func:`train`)."""
    names = [n for n in RUNS if n in set(names) | {RUNS[m].base for m in names}]  # RUNS order: costliest first
    todo = [n for n in names if not _cached(run_folder(cache_dir, n, fast), trainer_flags(RUNS[n], cache_dir, fast))]
    chains: dict[str, list[str]] = {}
    for name in (n for n in names if n in todo):
        chains.setdefault(RUNS[name].base if RUNS[name].base in todo else name, []).append(name)
    if len(chains) < 2 or max_workers < 2:
        return {n: s for chain in chains.values() for n, s in _train_chain(chain, str(cache_dir), fast).items()}
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max_workers, mp_context=spawn) as pool:
        futures = [pool.submit(_train_chain, chain, str(cache_dir), fast) for chain in chains.values()]
        return {n: s for future in futures for n, s in future.result().items()}


def recorded_train_seconds(folder: Path) -> float | None:
    """How long the run that trained the cached pipeline in ``folder`` took (its own stages only), if recorded."""
    path = Path(folder) / SECONDS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def load_pipeline(folder: Path) -> VAEBMPipeline:
    pipe = VAEBMPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe
