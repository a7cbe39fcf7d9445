"""Build or load what a run trains: the dataset, the VAE and the energy network, with every check on the user's
input done here, before any training starts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data import build_train_dataset, validate_against
from ..models import VAE_PRESETS, VAEBMMLPVAE, VAEBMVAE, VAEBMEnergyMLP, VAEBMEnergyModel
from ..pipelines import VAEBMPipeline
from ..presets import get_preset
from ..schedulers import LangevinScheduler
from .config import TrainingConfig
from .defaults import MLP_LAYOUT, DatasetDefaults
from .settings import EBMSettings

VAE_CLASSES = {"VAEBMVAE": VAEBMVAE, "VAEBMMLPVAE": VAEBMMLPVAE}


def load_training_data(config: TrainingConfig) -> Dataset:
    """The training set for the data flags. Flips are applied by the batch stream (so resumes are exact); the
    dataset itself is built without them."""
    dataset = build_train_dataset(
        config.dataset_name,
        config.train_data_dir,
        resolution=config.resolution,
        channels=config.channels,
        center_crop=config.center_crop,
        random_flip=False,
        dataset_config_name=config.dataset_config_name,
        cache_dir=config.cache_dir,
        seed=config.seed,
    )
    if config.random_flip and len(dataset.sample_shape) != 3:
        raise ValueError(f"--random_flip mirrors images; {config.dataset_name!r} yields vectors. Drop --random_flip.")
    return dataset


def is_vector_data(sample_shape: tuple[int, ...]) -> bool:
    return len(sample_shape) == 1


def _seeded(seed: int, build):
    """``build()`` with the global torch RNG seeded by ``seed`` and restored afterwards (initial weights)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def new_vae(config: TrainingConfig, defaults: DatasetDefaults, sample_shape: tuple[int, ...]) -> nn.Module:
    """An untrained VAE from ``--vae_config`` (JSON), ``--vae_preset``, the ``--preset``'s NVAE or the dataset."""
    if config.vae_config is not None:
        path = Path(config.vae_config)
        if not path.is_file():
            raise ValueError(f"--vae_config {config.vae_config!r} is not a file; pass a JSON file of config values.")
        values = json.loads(path.read_text())
        cls = VAE_CLASSES.get(values.get("_class_name", "VAEBMVAE"))
        if cls is None:
            raise ValueError(f"--vae_config names an unknown class {values['_class_name']!r}; use {list(VAE_CLASSES)}")
        kwargs = {k: v for k, v in values.items() if not k.startswith("_")}
    else:
        name = config.vae_preset
        if name is None and config.preset is not None:
            name = get_preset(config.preset).nvae_preset or None
        if name is not None:
            if name not in VAE_PRESETS:
                raise ValueError(f"unknown --vae_preset {name!r}; choose one of {sorted(VAE_PRESETS)}")
            cls, kwargs = VAEBMVAE, dict(VAE_PRESETS[name])
        elif defaults.vae_class == "mlp":
            cls, kwargs = VAEBMMLPVAE, {**defaults.vae_kwargs, "in_features": sample_shape[0]}
        else:
            cls = VAEBMVAE
            kwargs = {**defaults.vae_kwargs, "in_channels": sample_shape[0], "sample_size": sample_shape[-1]}
    try:
        return _seeded(config.seed, lambda: cls(**kwargs))
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


def new_ebm(settings: EBMSettings, sample_shape: tuple[int, ...], seed: int, zero_output: bool = False) -> nn.Module:
    """An untrained energy network for samples of ``sample_shape``; ``zero_output`` zeroes its last layer so that
    ``E == 0`` (the placeholder a VAE-only pipeline ships with: sampling it gives the VAE's own samples)."""
    if is_vector_data(sample_shape):
        if settings.layout != MLP_LAYOUT:
            raise ValueError(f"vector data needs --ebm_layout {MLP_LAYOUT} (got {settings.layout!r})")
        ebm = _seeded(seed, lambda: VAEBMEnergyMLP(in_features=sample_shape[0], hidden_dim=settings.n_channel))
    else:
        ebm = _seeded(
            seed,
            lambda: VAEBMEnergyModel(
                in_channels=sample_shape[0], sample_size=sample_shape[-1], layout=settings.layout,
                n_channel=settings.n_channel,
            ),
        )  # fmt: skip
    if zero_output:
        with torch.no_grad():
            ebm.linear.weight.zero_()
            ebm.linear.bias.zero_()
    return ebm


def make_pipeline(vae: nn.Module, ebm: nn.Module, settings: EBMSettings) -> VAEBMPipeline:
    """The pipeline a run saves: its scheduler samples with the stage-2 test-time chain length and step size."""
    scheduler = LangevinScheduler(
        num_train_timesteps=settings.sample_langevin_steps,
        step_size=settings.sample_step_size,
        noise_scale=settings.langevin_noise_scale,
        metropolis=settings.metropolis,
    )
    pipe = VAEBMPipeline(
        vae=vae, ebm=ebm, scheduler=scheduler, potential=settings.potential, pixel_noise=settings.pixel_noise
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
