"""Build or load what a run trains: the dataset, the VAE and the energy network, each from explicit values, with every
check on the user's input done before any training starts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data import build_train_dataset, validate_against
from ..models import VAEBMMLPVAE, VAEBMVAE, VAEBMEnergyMLP, VAEBMEnergyModel
from ..pipelines import VAEBMPipeline
from ..presets import MLP_LAYOUT, EBMTraining, Preset, Sampling, scheduler_settings
from ..schedulers import LangevinScheduler

VAE_CLASSES = {"VAEBMVAE": VAEBMVAE, "VAEBMMLPVAE": VAEBMMLPVAE}


def load_training_data(
    dataset_name: str | None,
    train_data_dir: str | None,
    *,
    resolution: int | None = None,
    channels: int | None = None,
    center_crop: bool = False,
    random_flip: bool = False,
    dataset_config_name: str | None = None,
    cache_dir: str | None = None,
    seed: int = 0,
) -> Dataset:
    """The training set for the data flags. Flips are applied by the batch stream (so resumes are exact); the
    dataset itself is built without them."""
    dataset = build_train_dataset(
        dataset_name,
        train_data_dir,
        resolution=resolution,
        channels=channels,
        center_crop=center_crop,
        random_flip=False,
        dataset_config_name=dataset_config_name,
        cache_dir=cache_dir,
        seed=seed,
    )
    if random_flip and len(dataset.sample_shape) != 3:
        raise ValueError(f"--random_flip mirrors images; {dataset_name!r} yields vectors. Drop --random_flip.")
    return dataset


def is_vector_data(sample_shape: tuple[int, ...]) -> bool:
    return len(sample_shape) == 1


def _seeded(seed: int, build):
    """``build()`` with the global torch RNG seeded by ``seed`` and restored afterwards (initial weights)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def new_vae(preset: Preset, sample_shape: tuple[int, ...], seed: int, sizes_from_data: bool = True) -> nn.Module:
    """An untrained VAE of the preset's class and architecture. With ``sizes_from_data`` its input size
    (``in_channels``/``sample_size``, or ``in_features``) is that of ``sample_shape``; otherwise the architecture is
    taken as given (``--vae_preset``/``--vae_config``) and a mismatch with the data is reported before training."""
    cls = VAE_CLASSES[preset.vae_class]
    if cls is VAEBMMLPVAE:
        if not is_vector_data(sample_shape):
            raise ValueError(f"the {preset.name!r} preset's MLP VAE models vectors, but the data are {sample_shape}")
        sizes = {"in_features": sample_shape[0]}
    else:
        if is_vector_data(sample_shape):
            raise ValueError(f"the {preset.name!r} preset's NVAE models images, but the data are {sample_shape}")
        sizes = {"in_channels": sample_shape[0], "sample_size": sample_shape[-1]}
    kwargs = {**preset.vae, **sizes} if sizes_from_data else {**sizes, **preset.vae}
    try:
        return _seeded(seed, lambda: cls(**kwargs))
    except TypeError as error:
        raise ValueError(f"invalid VAE config values for {cls.__name__}: {error}") from error


def load_vae(path: str | os.PathLike) -> nn.Module:
    """A trained VAE from a saved pipeline folder (its ``vae/``) or a saved VAE folder."""
    root = Path(path)
    if (root / "model_index.json").is_file():
        root = root / "vae"
    config_file = root / "config.json"
    if not config_file.is_file():
        raise ValueError(
            f"--vae_name_or_path {str(path)!r} is neither a saved pipeline (model_index.json + vae/) nor a saved "
            "VAE folder (config.json + weights); train one with --stage vae first."
        )
    class_name = json.loads(config_file.read_text()).get("_class_name")
    if class_name not in VAE_CLASSES:
        raise ValueError(
            f"{config_file} describes a {class_name!r}, not a VAE class of vaebm_hub ({list(VAE_CLASSES)})"
        )
    return VAE_CLASSES[class_name].from_pretrained(root)


def check_vae_fits_data(vae: nn.Module, dataset: Dataset) -> None:
    """``ValueError`` unless the dataset's samples have the VAE's shape."""
    if isinstance(vae, VAEBMMLPVAE):
        validate_against(dataset, vae.config.in_features, None)
    else:
        validate_against(dataset, vae.config.in_channels, vae.config.sample_size)


def new_ebm(settings: EBMTraining, sample_shape: tuple[int, ...], seed: int) -> nn.Module:
    """An untrained energy network of the stage-2 ``settings`` for samples of ``sample_shape``."""
    if is_vector_data(sample_shape):
        if settings.layout != MLP_LAYOUT:
            raise ValueError(f"vector data needs --ebm_layout {MLP_LAYOUT} (got {settings.layout!r})")
        return _seeded(seed, lambda: VAEBMEnergyMLP(in_features=sample_shape[0], hidden_dim=settings.n_channel))
    return _seeded(
        seed,
        lambda: VAEBMEnergyModel(
            in_channels=sample_shape[0], sample_size=sample_shape[-1], layout=settings.layout,
            n_channel=settings.n_channel,
        ),
    )  # fmt: skip


def make_pipeline(vae: nn.Module, ebm: nn.Module, settings: EBMTraining, sampling: Sampling) -> VAEBMPipeline:
    """The pipeline a run saves: its scheduler samples with the preset's test-time chain length, step size and MALA
    setting (by default the stage-2 chains'), its images (decoder means or samples), and the stage-2 chains' noise
    scale, potential and pixel-noise choice."""
    scheduler = LangevinScheduler(**scheduler_settings(settings, sampling))
    pipe = VAEBMPipeline(
        vae=vae, ebm=ebm, scheduler=scheduler, potential=settings.potential, pixel_noise=settings.pixel_noise,
        decoder_output=sampling.decoder_output,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe
