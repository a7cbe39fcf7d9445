"""Shared test fixtures: tiny seeded components, paths to the official-format fixtures, an offline Hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

OFFICIAL = Path(__file__).parent / "fixtures" / "official"


@pytest.fixture
def official_dir() -> Path:
    return OFFICIAL


def make_tiny_pipeline(step_size: float = 5e-3, metropolis: bool = False, potential: str = "exact"):
    """The default digits-size VAE and EBM with seeded weights and a short default chain."""
    from vaebm_hub import VAEBMVAE, LangevinScheduler, VAEBMEnergyModel, VAEBMPipeline

    torch.manual_seed(0)
    vae = VAEBMVAE()
    torch.manual_seed(1)
    ebm = VAEBMEnergyModel()
    scheduler = LangevinScheduler(default_num_inference_steps=3, step_size=step_size, metropolis=metropolis)
    pipe = VAEBMPipeline(vae=vae.eval(), ebm=ebm.eval(), scheduler=scheduler, potential=potential)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def tiny_pipeline():
    return make_tiny_pipeline()
