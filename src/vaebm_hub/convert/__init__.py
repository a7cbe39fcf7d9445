"""Converters from official NVlabs checkpoints (NVAE ``.pt``, VAEBM energy ``.pth``) to vaebm_hub models."""

from .ebm import load_official_ebm
from .loading import load_official_checkpoint
from .nvae import load_official_nvae, vae_config_from_nvae_args
from .pipeline import build_pipeline, convert_official, zero_energy_model

__all__ = [
    "build_pipeline",
    "convert_official",
    "load_official_checkpoint",
    "load_official_ebm",
    "load_official_nvae",
    "vae_config_from_nvae_args",
    "zero_energy_model",
]
