"""The trained pipeline's model card and its Hub upload, through :mod:`vaebm_hub.hub` (never checkpoints or logs)."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import HfApi

from ..constants import DEFAULT_MODEL_LICENSE
from ..data import BUILTIN_DATASETS
from ..hub import create_model_card, push_pipeline


def latest_sample_grid(output_dir: Path) -> Path | None:
    """The newest grid the trainer wrote under ``samples/`` (named ``<stage>-<step>.png``), if any."""
    grids = sorted((output_dir / "samples").glob("*.png"), key=lambda path: path.stat().st_mtime)
    return grids[-1] if grids else None


def write_model_card(
    output_dir: str | os.PathLike,
    training_config: dict,
    *,
    dataset_name: str | None = None,
    repo_id: str | None = None,
    license: str = DEFAULT_MODEL_LICENSE,
) -> Path:
    """Write the saved pipeline's ``README.md``: usage, components, the run's settings (``training_config``: the
    rows of the card's "Training configuration" table), its latest samples and ``license``."""
    folder = Path(output_dir)
    hub_dataset = (
        dataset_name if dataset_name and dataset_name not in BUILTIN_DATASETS and "/" in dataset_name else None
    )
    grid = latest_sample_grid(folder)
    card = create_model_card(
        folder,
        repo_id=repo_id,
        kind="trained",
        datasets=[hub_dataset] if hub_dataset else None,
        training_config=training_config,
        sample_grid=str(grid) if grid else None,
        license=license,
    )
    path = folder / "README.md"
    card.save(path)
    return path


def push_trained_pipeline(
    output_dir: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    api: HfApi | None = None,
) -> str:
    """Upload the saved pipeline and its card to ``repo_id``; returns the commit URL.

    :func:`vaebm_hub.hub.push_pipeline` stages only the pipeline's own files, so ``checkpoint-*``, ``logs/`` and
    ``samples/`` never leave the machine. ``api`` is injectable for tests.
    """
    return push_pipeline(
        output_dir,
        repo_id,
        token=token,
        private=private,
        commit_message="Upload VAEBM pipeline trained with vaebm_hub",
        api=api,
    )
