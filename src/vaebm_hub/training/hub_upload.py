"""The trained pipeline's model card and its Hub upload, through :mod:`vaebm_hub.hub` (never checkpoints or logs)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from huggingface_hub import HfApi

from ..data import BUILTIN_DATASETS
from ..hub import create_model_card, push_pipeline
from .config import TrainingConfig

# Flags that describe the run on the card; secrets, paths and bookkeeping stay off it.
CARD_EXCLUDED_FLAGS = {"hub_token", "local_rank", "output_dir", "cache_dir", "logging_dir", "resume_from_checkpoint"}


def card_training_table(config: TrainingConfig, stages: str) -> dict:
    """The card's "Training configuration" rows: the stages trained and every flag that was set."""
    rows = {"stages": stages}
    for key, value in dataclasses.asdict(config).items():
        if key not in CARD_EXCLUDED_FLAGS and value not in (None, False):
            rows[key] = value
    return rows


def latest_sample_grid(output_dir: Path) -> Path | None:
    """The newest grid the trainer wrote under ``samples/`` (named ``<stage>-<step>.png``), if any."""
    grids = sorted((output_dir / "samples").glob("*.png"), key=lambda path: path.stat().st_mtime)
    return grids[-1] if grids else None


def write_model_card(output_dir: str | os.PathLike, config: TrainingConfig, stages: str) -> Path:
    """Write the saved pipeline's ``README.md``: usage, components, the run's flags and its latest samples."""
    folder = Path(output_dir)
    dataset = config.dataset_name
    hub_dataset = dataset if dataset and dataset not in BUILTIN_DATASETS and "/" in dataset else None
    grid = latest_sample_grid(folder)
    card = create_model_card(
        folder,
        repo_id=config.hub_model_id,
        kind="trained",
        datasets=[hub_dataset] if hub_dataset else None,
        training_config=card_training_table(config, stages),
        sample_grid=str(grid) if grid else None,
    )
    path = folder / "README.md"
    card.save(path)
    return path


def push_trained_pipeline(output_dir: str | os.PathLike, config: TrainingConfig, api: HfApi | None = None) -> str:
    """Upload the saved pipeline and its card to ``config.hub_model_id``; returns the commit URL.

    :func:`vaebm_hub.hub.push_pipeline` stages only the pipeline's own files, so ``checkpoint-*``, ``logs/`` and
    ``samples/`` never leave the machine. ``api`` is injectable for tests.
    """
    return push_pipeline(
        output_dir,
        config.hub_model_id,
        token=config.hub_token,
        private=config.hub_private_repo,
        commit_message="Upload VAEBM pipeline trained with vaebm_hub",
        api=api,
    )
