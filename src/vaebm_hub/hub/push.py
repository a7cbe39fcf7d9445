"""Publish a VAEBM pipeline to the Hugging Face Hub: safetensors weights, configs and a model card — nothing else."""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, ModelCard
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import OfflineModeIsEnabled

from .cards import create_model_card, validate_model_card
from .files import SAMPLE_GRID_NAME, pipeline_files, stage_pipeline
from .remote_code import add_remote_code

logger = logging.getLogger(__name__)
FROM_PRETRAINED = re.compile(r'(\.from_pretrained\()"[^"]*"')


def check_online() -> None:
    """Fail at once when ``HF_HUB_OFFLINE`` is set, instead of letting the upload retry against a blocked network."""
    if hub_constants.HF_HUB_OFFLINE:
        raise OfflineModeIsEnabled(
            "cannot push to the Hugging Face Hub: HF_HUB_OFFLINE is set. Unset it (or set HF_HUB_OFFLINE=0) in an "
            "environment with network access, or keep the pipeline local with `pipe.save_pretrained(dir)`."
        )


def create_repo_early(repo_id: str, *, token: str | None = None, private: bool = False, api: HfApi | None = None):
    """Create (or find) the Hub repo before any work that ends in an upload, so that a missing token, a taken name or
    offline mode fails at once rather than after hours of training (as diffusers' training scripts do)."""
    check_online()
    api = api if api is not None else HfApi(token=token)
    return api.create_repo(repo_id, private=private, exist_ok=True, token=token)


def existing_card(readme: Path, repo_id: str) -> ModelCard | None:
    """The folder's own ``README.md`` (e.g. the converter's or trainer's card, with its license and metrics) with
    its ``from_pretrained("...")`` calls pointed at ``repo_id``, if it then validates; else ``None``."""
    if not readme.is_file():
        return None
    try:
        card = ModelCard.load(readme)
        card.text = FROM_PRETRAINED.sub(lambda match: f'{match.group(1)}"{repo_id}"', card.text)
        card.data.model_name = repo_id.split("/")[-1]
        validate_model_card(card, repo_id=repo_id, folder=readme.parent)
    except ValueError as error:
        logger.warning("%s is not a valid card (%s); uploading a fresh one", readme, error)
        return None
    return card


def push_pipeline(
    pipeline_or_dir,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    card: ModelCard | None = None,
    api: HfApi | None = None,
    variant: str | None = None,
    remote_code: bool = True,
) -> str:
    """Upload a pipeline (object or saved folder) to ``repo_id``; returns the commit URL.

    With ``remote_code`` (the default) the upload is the published layout (:func:`~.remote_code.add_remote_code`):
    ``VAEBMPipeline.from_pretrained(repo_id)`` loads it with this package installed, and plain diffusers with
    ``DiffusionPipeline.from_pretrained(repo_id, trust_remote_code=True)`` without it.

    The pipeline is staged in a temporary folder — saved with safetensors, or its :func:`~.files.pipeline_files`
    copied — with ``card`` as ``README.md``; only those files are uploaded (``allow_patterns`` lists them). Without
    ``card``, the folder's own README is kept (see :func:`existing_card`), else :func:`create_model_card` makes
    one. ``token`` defaults to huggingface_hub's usual sources (``HF_TOKEN``, the stored login). ``api`` replaces
    ``HfApi(token=token)``, e.g. with a recording fake in tests.
    """
    check_online()
    api = api if api is not None else HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="vaebm_push_") as staging:
        folder = Path(staging)
        stage_pipeline(pipeline_or_dir, folder, variant=variant)
        if remote_code:
            add_remote_code(folder)
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True, token=token)
        repo_id = getattr(repo_url, "repo_id", None) or repo_id
        if card is None:
            card = existing_card(folder / "README.md", repo_id)
        if card is None:
            grid = folder / SAMPLE_GRID_NAME  # staged with the pipeline when the source folder has one
            card = create_model_card(folder, repo_id=repo_id, sample_grid=str(grid) if grid.is_file() else None)
        card.save(folder / "README.md")
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message or "Upload VAEBM pipeline with vaebm_hub",
            token=token,
            allow_patterns=pipeline_files(folder, variant),
        )
    return getattr(commit, "commit_url", None) or str(commit)
