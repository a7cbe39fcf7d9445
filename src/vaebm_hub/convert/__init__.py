"""Converters from official NVlabs checkpoints to vaebm_hub models."""

from .ebm import load_official_ebm
from .loading import load_official_checkpoint

__all__ = ["load_official_checkpoint", "load_official_ebm"]
