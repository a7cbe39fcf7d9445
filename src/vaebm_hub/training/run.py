"""``main(argv)``: plan a run from the flags — every check on the user's input happens there, before training —
then train the stages in order and save the pipeline into ``--output_dir``.

Output layout: ``model_index.json``, ``vae/``, ``ebm/``, ``scheduler/`` and ``README.md`` at the top (load with
``VAEBMPipeline.from_pretrained(output_dir)``), next to ``checkpoint-N/``, ``logs/`` and ``samples/``. ``--stage vae``
saves a complete pipeline whose energy network is a placeholder with a zeroed output layer (``E == 0``): sampling
it returns the VAE's own samples, and ``--stage ebm --vae_name_or_path <that folder>`` trains the real one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from torch import nn
from torch.utils.data import Dataset

from ..constants import DEFAULT_MODEL_LICENSE
from ..data.builtin import BUILTIN_DATASETS, PADDABLE_DATASETS
from ..hub import add_remote_code
from ..hub.push import create_repo_early
from ..models import zero_energy_
from ..models.layers import set_channels_last
from ..pipelines.decoding import check_decoder_output
from ..presets import PRESETS, Preset
from .checkpointing import (
    CHECKPOINT_PREFIX,
    read_state,
    remove_stale_temporaries,
    resolve_resume,
    verify_checkpoint,
)
from .components import check_vae_fits_data, load_training_data, load_vae, make_pipeline, new_ebm, new_vae
from .config import TrainingConfig, check_config, parse_args, preset_name, resolve_preset, steps_per_epoch
from .ebm_stage import FROZEN_VAE_DIR, EBMStage, check_settings_fit_vae, resolve_step_sizes
from .hub_upload import push_trained_pipeline, write_model_card
from .loop import LoopOptions, StageRunner
from .vae_stage import VAEStage

logger = get_logger(__name__)

PIPELINE_FILES = ("model_index.json", "vae", "ebm", "scheduler", "README.md", "pipeline_vaebm.py")
RUN_FOLDERS = ("samples", "logs")
# Flags that describe the run on the model card beside the resolved settings; secrets and paths stay off it.
CARD_FLAGS = ("dataset_name", "train_data_dir", "seed", "mixed_precision", "gradient_accumulation_steps")


@dataclass
class RunPlan:
    """Everything a run needs, built and checked before any training starts. ``settings`` is the resolved preset
    (what the run records); ``loop`` the checkpoint/logging options of both stages."""

    settings: Preset
    output_dir: Path
    dataset: Dataset
    vae: nn.Module
    stages: list[str]
    resume: Path | None
    ebm_step_offset: int
    loops: dict[str, LoopOptions]  # per stage: checkpoints, sample grids, divergence guard
    seed: int
    num_sample_images: int
    channels_last: bool | None
    card_rows: dict = field(default_factory=dict)
    dataset_name: str | None = None
    hub_model_id: str | None = None
    hub_license: str = DEFAULT_MODEL_LICENSE


def _has_previous_run(output_dir: Path) -> bool:
    return output_dir.is_dir() and (
        (output_dir / "model_index.json").exists()
        or any(p.name.startswith(CHECKPOINT_PREFIX) for p in output_dir.iterdir())
    )


def _data_resolution(config: TrainingConfig, vae_path: Path | None) -> int | None:
    """``--resolution``, else for built-ins the given VAE's size (MNIST at 28 or padded to 32) or the preset's."""
    if config.resolution is not None or config.dataset_name not in BUILTIN_DATASETS:
        return config.resolution
    if vae_path is not None and config.dataset_name in PADDABLE_DATASETS:
        root = vae_path / "vae" if (vae_path / "model_index.json").is_file() else vae_path
        if (root / "config.json").is_file():
            return json.loads((root / "config.json").read_text()).get("sample_size")
    name = preset_name(config)
    return PRESETS[name].resolution if name in PRESETS else None


def card_rows(config: TrainingConfig, settings: Preset, stages: list[str]) -> dict:
    """The model card's "Training configuration" rows: the stages, a few run flags, and the resolved settings of
    every trained stage and of sampling (``vae_training.learning_rate``, ``ebm_training.max_train_steps``, ...)."""
    rows: dict = {"stages": " + ".join(stages), "preset": settings.name}
    rows.update({name: getattr(config, name) for name in CARD_FLAGS if getattr(config, name) is not None})
    sections = (["vae_training"] if "vae" in stages else []) + ["ebm_training", "sampling"]
    for section in sections:
        for key, value in dataclasses.asdict(getattr(settings, section)).items():
            rows[f"{section}.{key}"] = value
    return rows


def plan_run(config: TrainingConfig) -> RunPlan:
    """Turn the flags into a checked plan: load the data and the VAE, resolve the preset and validate everything;
    raises ``ValueError`` on bad input. This is the only function that reads the flags."""
    set_seed(config.seed)
    output_dir = Path(config.output_dir)
    resume = resolve_resume(output_dir, config.resume_from_checkpoint, verify=verify_checkpoint)
    fresh_start_allowed = config.overwrite_output_dir or config.resume_from_checkpoint is not None
    if not fresh_start_allowed and _has_previous_run(output_dir):
        raise ValueError(
            f"--output_dir {str(output_dir)!r} already holds a training run; pass --resume_from_checkpoint latest to "
            "continue it, --overwrite_output_dir to start over, or another --output_dir."
        )
    stages = ["vae", "ebm"] if config.stage == "all" else [config.stage]
    resumed_stage = read_state(resume)["stage"] if resume is not None else None
    if resumed_stage is not None and resumed_stage not in stages:
        raise ValueError(f"{resume} is a checkpoint of the {resumed_stage!r} stage but --stage is {config.stage!r}.")
    if resumed_stage == "ebm":
        stages, vae_path = ["ebm"], resume / FROZEN_VAE_DIR
    elif stages[0] == "ebm" or config.vae_name_or_path is not None:
        vae_path = Path(config.vae_name_or_path)
    else:
        vae_path = None
    dataset = load_training_data(
        config.dataset_name, config.train_data_dir, resolution=_data_resolution(config, vae_path),
        channels=config.channels, center_crop=config.center_crop, random_flip=config.random_flip,
        dataset_config_name=config.dataset_config_name, cache_dir=config.cache_dir, seed=config.seed,
    )  # fmt: skip
    shape = tuple(dataset.sample_shape)
    num_processes = int(os.environ.get("WORLD_SIZE", "1"))
    settings = resolve_preset(config, shape, num_samples=len(dataset), num_processes=num_processes)
    if vae_path is not None:
        vae = load_vae(vae_path)
    else:
        explicit = config.vae_preset is not None or config.vae_config is not None
        vae = new_vae(settings, shape, config.seed, sizes_from_data=not explicit)
    check_vae_fits_data(vae, dataset)
    check_settings_fit_vae(settings.ebm_training, vae)
    check_decoder_output(settings.sampling.decoder_output, settings.ebm_training.pixel_noise, vae)
    new_ebm(settings.ebm_training, shape, config.seed)  # fails now, not after stage 1, if the layout does not fit

    if resumed_stage == "ebm":
        offset = read_state(resume)["step_offset"]
    else:
        offset = settings.vae_training.max_train_steps if "vae" in stages else 0
    loops = {}
    for stage, stage_settings in (("vae", settings.vae_training), ("ebm", settings.ebm_training)):
        epoch = steps_per_epoch(
            len(dataset), stage_settings.batch_size, num_processes, config.gradient_accumulation_steps
        )
        loops[stage] = loop_options(config, output_dir, offset if stage == "ebm" else 0, epoch)
    return RunPlan(
        settings=settings, output_dir=output_dir, dataset=dataset, vae=vae, stages=stages, resume=resume,
        ebm_step_offset=offset, loops=loops, seed=config.seed, num_sample_images=config.num_sample_images,
        channels_last=config.channels_last, card_rows=card_rows(config, settings, stages),
        dataset_name=config.dataset_name, hub_model_id=config.hub_model_id, hub_license=config.hub_license,
    )  # fmt: skip


def loop_options(config: TrainingConfig, output_dir: Path, step_offset: int, epoch: int) -> LoopOptions:
    """One stage's :class:`LoopOptions` from the command-line config; ``epoch`` (optimizer steps per epoch) turns the
    epoch-based flags into steps."""
    image_epochs, model_epochs = config.save_images_epochs, config.save_model_epochs
    return LoopOptions(
        output_dir=output_dir, seed=config.seed, step_offset=step_offset,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        checkpointing_steps=config.checkpointing_steps, checkpoints_total_limit=config.checkpoints_total_limit,
        save_images_steps=config.save_images_steps or (image_epochs and image_epochs * epoch),
        dataloader_num_workers=config.dataloader_num_workers, random_flip=config.random_flip,
        divergence_max_retries=config.divergence_max_retries, divergence_lr_factor=config.divergence_lr_factor,
        divergence_threshold=config.divergence_threshold, divergence_growth_factor=config.divergence_growth_factor,
        save_model_steps=model_epochs and model_epochs * epoch,
    )  # fmt: skip


def make_accelerator(
    output_dir: str | os.PathLike,
    *,
    gradient_accumulation_steps: int = 1,
    mixed_precision: str = "no",
    report_to: str = "tensorboard",
    logging_dir: str = "logs",
) -> Accelerator:
    """The run's ``Accelerator``; refuses a multi-process launch that Accelerate did not set up as distributed."""
    output_dir = Path(output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        log_with=None if report_to == "none" else report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / logging_dir)),
    )
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != world_size:
        raise ValueError(
            f"{world_size} processes were launched but Accelerate runs each one alone (no GPU found, so they would "
            "all write the same files). On CPU launch with ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu "
            "--num_processes N ... (gloo backend), or use --cpu with --num_processes 1."
        )
    return accelerator


def available_cores() -> int:
    """Physical cores (as Accelerate counts them for ``--cpu`` runs), at most the CPUs this process may run on."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(psutil.cpu_count(logical=False) or allowed, allowed))


def cpu_thread_hint(device: torch.device, local_processes: int) -> str | None:
    """What to do when a CPU run trains on fewer torch threads than its share of the cores, else ``None``.
    ``accelerate launch`` without a config sets ``OMP_NUM_THREADS=1``; on the 2-core machine a second thread makes the
    ``mnist`` preset's stage-1 steps 1.5x and its stage-2 iterations 1.65x faster."""
    if device.type != "cpu":
        return None
    share, threads = max(1, available_cores() // max(1, local_processes)), torch.get_num_threads()
    if threads >= share:
        return None
    return (
        f"training on {threads} torch thread(s) of the {share} CPU cores this process could use (`accelerate launch` "
        "without a config sets OMP_NUM_THREADS=1): run `accelerate config default` once, or launch with --cpu or "
        f"--num_cpu_threads_per_process {share}, to use them (on 2 cores the mnist preset trains about 1.5x faster)."
    )


def clear_previous_run(output_dir: Path) -> None:
    """``--overwrite_output_dir``: remove what an earlier run wrote (only the names this trainer writes)."""
    for path in output_dir.iterdir():
        if path.name.startswith(CHECKPOINT_PREFIX) or path.name in PIPELINE_FILES + RUN_FOLDERS:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def save_pipeline(accelerator: Accelerator, pipe, plan: RunPlan) -> None:
    """Main process: ``save_pretrained`` into the output folder plus a model card."""
    if accelerator.is_main_process:
        pipe.save_pretrained(plan.output_dir)
        add_remote_code(plan.output_dir)  # the published layout: plain diffusers loads it with trust_remote_code
        write_model_card(
            plan.output_dir,
            plan.card_rows,
            dataset_name=plan.dataset_name,
            repo_id=plan.hub_model_id,
            license=plan.hub_license,
        )
    accelerator.wait_for_everyone()


def execute(plan: RunPlan, accelerator: Accelerator) -> None:
    """Train the planned stages and save the pipeline."""
    shape, settings = tuple(plan.dataset.sample_shape), plan.settings
    vae, resume = plan.vae, plan.resume
    channels_last = plan.channels_last if plan.channels_last is not None else accelerator.device.type == "cpu"
    set_channels_last(vae, channels_last)
    common = dict(seed=plan.seed, process_index=accelerator.process_index, num_sample_images=plan.num_sample_images)
    placeholder = zero_energy_(new_ebm(settings.ebm_training, shape, plan.seed))

    def sampler_settings():
        """The stage-2 and sampling settings with any "auto" step size resolved on the VAE as it is now."""
        stage2, sampling = resolve_step_sizes(vae, settings.ebm_training, settings.sampling, plan.dataset, plan.seed)
        plan.card_rows.update({"ebm_training.langevin_step_size": stage2.langevin_step_size,
                               "sampling.step_size": sampling.step_size})  # fmt: skip
        return stage2, sampling

    def vae_pipeline():
        return make_pipeline(vae, placeholder, *sampler_settings())

    if "vae" in plan.stages:
        stage = VAEStage(vae, settings.vae_training, **common)
        save = lambda: save_pipeline(accelerator, vae_pipeline(), plan)  # noqa: E731
        StageRunner(accelerator, stage, plan.dataset, plan.loops["vae"], on_save_model=save).run(resume)
        vae, resume = stage.finished_vae(), None
        save_pipeline(accelerator, vae_pipeline(), plan)
        accelerator.free_memory()
    if "ebm" in plan.stages:
        stage2, sampling = sampler_settings()
        ebm = new_ebm(stage2, shape, plan.seed)
        set_channels_last(ebm, channels_last)
        stage = EBMStage(vae, ebm, stage2, sampling, device=accelerator.device, **common)
        save = lambda: save_pipeline(accelerator, stage.pipeline(), plan)  # noqa: E731
        StageRunner(accelerator, stage, plan.dataset, plan.loops["ebm"], on_save_model=save).run(resume)
        save_pipeline(accelerator, stage.pipeline(), plan)
        accelerator.free_memory()


def run(config: TrainingConfig) -> Path:
    """Plan, train and save (and push, with ``--push_to_hub``) as ``main`` does; returns the output folder."""
    plan = plan_run(config)
    if config.push_to_hub and int(os.environ.get("RANK", "0")) == 0:
        create_repo_early(config.hub_model_id, token=config.hub_token, private=config.hub_private_repo)
    accelerator = make_accelerator(
        config.output_dir, gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision, report_to=config.report_to, logging_dir=config.logging_dir,
    )  # fmt: skip
    if accelerator.is_main_process:
        plan.output_dir.mkdir(parents=True, exist_ok=True)
        if config.overwrite_output_dir and plan.resume is None:
            clear_previous_run(plan.output_dir)
        remove_stale_temporaries(plan.output_dir)
    accelerator.wait_for_everyone()
    hint = cpu_thread_hint(accelerator.device, int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes)))
    if hint is not None:
        logger.warning(hint, main_process_only=True)
    hparams = {k: v for k, v in plan.card_rows.items() if isinstance(v, (int, float, str, bool))}
    accelerator.init_trackers("vaebm_hub", config=hparams)
    execute(plan, accelerator)
    if config.push_to_hub and accelerator.is_main_process:
        push_trained_pipeline(
            plan.output_dir, config.hub_model_id, token=config.hub_token, private=config.hub_private_repo
        )
    accelerator.end_training()
    accelerator.print(
        f'Saved the pipeline to {plan.output_dir}; load it with VAEBMPipeline.from_pretrained("{plan.output_dir}")'
    )
    return plan.output_dir


def train(output_dir: str | os.PathLike, *, dataset_name: str | None = None, **overrides) -> Path:
    """Train from Python: a preset (the dataset's own, or ``preset=...``) plus keyword overrides named like the
    flags, e.g. ``train("out", dataset_name="mnist", ebm_max_train_steps=2000, report_to="none")``."""
    config = TrainingConfig(output_dir=str(output_dir), dataset_name=dataset_name, **overrides)
    check_config(config)
    return run(config)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``accelerate launch examples/train.py``."""
    if not logging.getLogger().handlers:  # as diffusers' training scripts: INFO lines with time and level
        logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    run(parse_args(argv))
    return 0
