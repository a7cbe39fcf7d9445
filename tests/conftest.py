"""Shared test fixtures: tiny seeded components, paths to the official-format fixtures, an offline Hub."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
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


PLAIN_DIFFUSERS_LOADER = textwrap.dedent(
    """
    import sys

    class BlockVaebmHub:  # the exported code must not need the package
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "vaebm_hub":
                raise ModuleNotFoundError(f"vaebm_hub is blocked in this test: {name}")

    sys.meta_path.insert(0, BlockVaebmHub())
    import torch
    from diffusers import DiffusionPipeline

    results = {}
    for name, folder in zip(sys.argv[2::2], sys.argv[3::2]):
        pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
        pipe.set_progress_bar_config(disable=True)
        assert type(pipe).__module__.startswith("diffusers_modules.local."), type(pipe)
        for step_size in (None, 2e-2):
            out = pipe(batch_size=2, num_inference_steps=2, step_size=step_size, output_type="pt",
                       generator=torch.Generator().manual_seed(7), return_energy_trace=True)
            results[f"{name}/{step_size}"] = (out.images, out.energy_trace)
        try:
            pipe.push_to_hub("someone/x")
        except ImportError as error:
            results[f"{name}/push_error"] = str(error)
    assert not [m for m in sys.modules if m.split(".")[0] == "vaebm_hub"]
    torch.save(results, sys.argv[1])
    """
)


def sample_without_the_package(folders: dict[str, Path], tmp_path: Path) -> dict:
    """Load each folder with plain ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` in a
    subprocess where ``vaebm_hub`` cannot be imported; ``{"<name>/<step size>": (images, energy trace)}`` of a
    seeded 2-step chain (step sizes None and 2e-2), plus ``"<name>/push_error"``."""
    env = {"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PATH": "/usr/bin:/bin"}
    result_file = tmp_path / "results.pt"
    args = [str(a) for item in folders.items() for a in item]
    proc = subprocess.run(
        [sys.executable, "-c", PLAIN_DIFFUSERS_LOADER, str(result_file), *args],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Expected types" not in proc.stderr and "might require" not in proc.stderr, proc.stderr
    return torch.load(result_file)
