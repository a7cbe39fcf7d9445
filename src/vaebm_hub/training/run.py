"""``main(argv)``: plan a run from the flags — every check on the user's input happens there, before training —
then train the stages in order and save the pipeline into ``--output_dir``.

Output layout: ``model_index.json``, ``vae/``, ``ebm/``, ``scheduler/`` and ``README.md`` at the top (load with
``VAEBMPipeline.from_pretrained(output_dir)``), next to ``checkpoint-N/``, ``logs/`` and ``samples/``. ``--stage vae``
saves a complete pipeline whose energy network is a placeholder with a zeroed output layer (``E == 0``): sampling
it returns the VAE's own samples, and ``--stage ebm --vae_name_or_path <that folder>`` trains the real one.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from torch import nn
from torch.utils.data import Dataset

from ..data import BUILTIN_DATASETS
from ..models.layers import set_channels_last
from .checkpointing import CHECKPOINT_PREFIX, read_state, remove_stale_temporaries, resolve_resume
from .components import check_vae_fits_data, load_training_data, load_vae, make_pipeline, new_ebm, new_vae
from .config import TrainingConfig, parse_args
from .defaults import dataset_defaults
from .ebm_stage import FROZEN_VAE_DIR, EBMStage
from .hub_upload import push_trained_pipeline, write_model_card
from .loop import LoopOptions, StageRunner
from .settings import EBMSettings, VAESettings, ebm_settings, vae_settings
from .vae_stage import VAEStage

PIPELINE_FILES = ("model_index.json", "vae", "ebm", "scheduler", "README.md")
RUN_FOLDERS = ("samples", "logs")


@dataclass
class RunPlan:
    """Everything a run needs, built and checked before any training starts."""

    config: TrainingConfig
    output_dir: Path
    dataset: Dataset
    vae: nn.Module
    vae_settings: VAESettings | None
    ebm_settings: EBMSettings
    stages: list[str]
    resume: Path | None
    ebm_step_offset: int


def _has_previous_run(output_dir: Path) -> bool:
    return output_dir.is_dir() and (
        (output_dir / "model_index.json").exists()
        or any(p.name.startswith(CHECKPOINT_PREFIX) for p in output_dir.iterdir())
    )


def plan_run(config: TrainingConfig) -> RunPlan:
    """Load the data and the VAE, resolve the settings and validate everything; raises ``ValueError`` on bad input."""
    set_seed(config.seed)
    output_dir = Path(config.output_dir)
    resume = resolve_resume(output_dir, config.resume_from_checkpoint)
    fresh_start_allowed = config.overwrite_output_dir or config.resume_from_checkpoint is not None
    if not fresh_start_allowed and _has_previous_run(output_dir):
        raise ValueError(
            f"--output_dir {str(output_dir)!r} already holds a training run; pass --resume_from_checkpoint latest to "
            "continue it, --overwrite_output_dir to start over, or another --output_dir."
        )
    dataset = load_training_data(config)
    shape = tuple(dataset.sample_shape)
    builtin = config.dataset_name if config.dataset_name in BUILTIN_DATASETS else None
    defaults = dataset_defaults(builtin, shape)
    stage2 = ebm_settings(config, defaults)
    stages = ["vae", "ebm"] if config.stage == "all" else [config.stage]

    resumed_stage = read_state(resume)["stage"] if resume is not None else None
    if resumed_stage is not None and resumed_stage not in stages:
        raise ValueError(f"{resume} is a checkpoint of the {resumed_stage!r} stage but --stage is {config.stage!r}.")
    if resumed_stage == "ebm":
        stages = ["ebm"]
        vae = load_vae(resume / FROZEN_VAE_DIR)
    elif stages[0] == "ebm" or config.vae_name_or_path is not None:
        vae = load_vae(config.vae_name_or_path)
    else:
        vae = new_vae(config, defaults, shape)
    check_vae_fits_data(vae, dataset)
    new_ebm(stage2, shape, config.seed)  # fails now, not after stage 1, if the layout does not fit the data

    stage1 = vae_settings(config, defaults) if "vae" in stages else None
    if resumed_stage == "ebm":
        offset = read_state(resume)["step_offset"]
    else:
        offset = stage1.optim.max_train_steps if stage1 is not None else 0
    return RunPlan(config, output_dir, dataset, vae, stage1, stage2, stages, resume, offset)


def make_accelerator(config: TrainingConfig) -> Accelerator:
    """The run's ``Accelerator``; refuses a multi-process launch that Accelerate did not set up as distributed."""
    output_dir = Path(config.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision,
        log_with=None if config.report_to == "none" else config.report_to,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / config.logging_dir)
        ),
    )
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != world_size:
        raise ValueError(
            f"{world_size} processes were launched but Accelerate runs each one alone (no GPU found, so they would "
            "all write the same files). On CPU launch with ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu "
            "--num_processes N ... (gloo backend), or use --cpu with --num_processes 1."
        )
    return accelerator


def clear_previous_run(output_dir: Path) -> None:
    """``--overwrite_output_dir``: remove what an earlier run wrote (only the names this trainer writes)."""
    for path in output_dir.iterdir():
        if path.name.startswith(CHECKPOINT_PREFIX) or path.name in PIPELINE_FILES + RUN_FOLDERS:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def loop_options(plan: RunPlan, step_offset: int) -> LoopOptions:
    c = plan.config
    return LoopOptions(
        output_dir=plan.output_dir,
        seed=c.seed,
        step_offset=step_offset,
        gradient_accumulation_steps=c.gradient_accumulation_steps,
        checkpointing_steps=c.checkpointing_steps,
        checkpoints_total_limit=c.checkpoints_total_limit,
        save_images_steps=c.save_images_steps,
        dataloader_num_workers=c.dataloader_num_workers,
        random_flip=c.random_flip,
        divergence_max_retries=c.divergence_max_retries,
        divergence_lr_factor=c.divergence_lr_factor,
        divergence_threshold=c.divergence_threshold,
    )


def save_pipeline(accelerator: Accelerator, pipe, plan: RunPlan, stages: str) -> None:
    """Main process: ``save_pretrained`` into the output folder plus a model card."""
    if accelerator.is_main_process:
        pipe.save_pretrained(plan.output_dir)
        write_model_card(plan.output_dir, plan.config, stages)
    accelerator.wait_for_everyone()


def execute(plan: RunPlan, accelerator: Accelerator) -> None:
    """Train the planned stages and save the pipeline."""
    c, shape = plan.config, tuple(plan.dataset.sample_shape)
    vae, resume = plan.vae, plan.resume
    channels_last = c.channels_last if c.channels_last is not None else accelerator.device.type == "cpu"
    set_channels_last(vae, channels_last)
    common = dict(seed=c.seed, process_index=accelerator.process_index, num_sample_images=c.num_sample_images)
    if "vae" in plan.stages:
        stage = VAEStage(vae, plan.vae_settings, **common)
        StageRunner(accelerator, stage, plan.dataset, loop_options(plan, 0)).run(resume)
        vae, resume = stage.finished_vae(), None
        placeholder = new_ebm(plan.ebm_settings, shape, c.seed, zero_output=True)
        save_pipeline(accelerator, make_pipeline(vae, placeholder, plan.ebm_settings), plan, "stage 1: VAE only")
        accelerator.free_memory()
    if "ebm" in plan.stages:
        ebm = new_ebm(plan.ebm_settings, shape, c.seed)
        set_channels_last(ebm, channels_last)
        stage = EBMStage(vae, ebm, plan.ebm_settings, device=accelerator.device, **common)
        StageRunner(accelerator, stage, plan.dataset, loop_options(plan, plan.ebm_step_offset)).run(resume)
        save_pipeline(accelerator, stage.pipeline(), plan, "VAE + energy network")
        accelerator.free_memory()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``accelerate launch examples/train.py``."""
    config = parse_args(argv)
    plan = plan_run(config)
    accelerator = make_accelerator(config)
    if accelerator.is_main_process:
        plan.output_dir.mkdir(parents=True, exist_ok=True)
        if config.overwrite_output_dir and plan.resume is None:
            clear_previous_run(plan.output_dir)
        remove_stale_temporaries(plan.output_dir)
    accelerator.wait_for_everyone()
    hparams = {k: v for k, v in dataclasses.asdict(config).items() if isinstance(v, (int, float, str, bool))}
    hparams.pop("hub_token", None)
    accelerator.init_trackers("vaebm_hub", config=hparams)
    execute(plan, accelerator)
    if config.push_to_hub and accelerator.is_main_process:
        push_trained_pipeline(plan.output_dir, config)
    accelerator.end_training()
    accelerator.print(
        f'Saved the pipeline to {plan.output_dir}; load it with VAEBMPipeline.from_pretrained("{plan.output_dir}")'
    )
    return 0
