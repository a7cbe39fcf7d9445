"""Assemble a :class:`VAEBMPipeline` from official checkpoints with the paper's per-dataset sampler settings."""

from __future__ import annotations

import os
from pathlib import Path

from ..models import VAEBMVAE, VAEBMEnergyModel, zero_energy_
from ..models.modeling_ebm import EBM_LAYOUTS
from ..pipelines import VAEBMPipeline
from ..presets import NVAE_DATASET_TO_PRESET, ebm_layout_for_size, get_preset, scheduler_settings
from ..schedulers import LangevinScheduler
from .ebm import load_official_ebm
from .loading import load_official_checkpoint
from .nvae import vae_from_checkpoint

NVIDIA_LICENSE_NOTE = (
    "Converted from NVIDIA's official NVAE/VAEBM checkpoints, which are covered by the NVIDIA Source Code License "
    "(non-commercial: research and evaluation only). vaebm_hub's converter reads the files you supply and never "
    "redistributes them; check the license before sharing converted weights."
)


def zero_energy_model(vae: VAEBMVAE, layout: str | None = None, n_channel: int = 32) -> VAEBMEnergyModel:
    """An energy network whose output layer is zero, so ``E(x) = 0``: with the exact potential the pipeline then
    samples the VAE itself, until a trained EBM replaces it (``--stage ebm``)."""
    channels, size, _ = vae.data_shape
    layout = layout or ebm_layout_for_size(size)
    return zero_energy_(
        VAEBMEnergyModel(in_channels=channels, sample_size=size, layout=layout, n_channel=n_channel)
    ).eval()


def build_pipeline(
    vae: VAEBMVAE,
    ebm: VAEBMEnergyModel | None = None,
    *,
    dataset: str | None = None,
    potential: str | None = None,
) -> VAEBMPipeline:
    """A pipeline around ``vae`` and ``ebm`` (a zero-energy EBM if ``None``), with the Langevin settings of the
    ``dataset`` preset (test-time chain length, step size, noise scale and MALA setting) when given.

    ``potential`` defaults to ``"official"`` with an imported EBM (it was trained against that potential) and to
    ``"exact"`` otherwise (with ``E = 0`` the exact potential samples the VAE exactly).
    """
    preset = get_preset(dataset) if dataset else None
    settings = scheduler_settings(preset.ebm_training, preset.sampling) if preset else {}
    scheduler = LangevinScheduler(**settings)
    if potential is None:
        potential = "exact" if ebm is None else "official"
    if ebm is None:
        ebm = zero_energy_model(vae, preset.ebm_training.layout if preset else None)
    if tuple(vae.data_shape) != (ebm.config.in_channels, ebm.config.sample_size, ebm.config.sample_size):
        raise ValueError(
            f"the VAE models images of shape {vae.data_shape} but the energy network expects "
            f"({ebm.config.in_channels}, {ebm.config.sample_size}, {ebm.config.sample_size})"
        )
    return VAEBMPipeline(vae=vae.eval(), ebm=ebm.eval(), scheduler=scheduler, potential=potential)


def convert_official(
    nvae_checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    ebm_checkpoint: str | os.PathLike | None = None,
    ebm_layout: str | None = None,
    dataset: str | None = None,
    potential: str | None = None,
) -> VAEBMPipeline:
    """Convert official checkpoints and write a loadable pipeline (safetensors + configs + model card) to
    ``output_dir``. ``dataset`` defaults to the NVAE checkpoint's own ``args.dataset`` when that has a preset."""
    checkpoint = load_official_checkpoint(nvae_checkpoint, allow_namespace=True)
    vae = vae_from_checkpoint(checkpoint, os.fspath(nvae_checkpoint))
    ebm = None
    if ebm_checkpoint is not None:
        ebm = load_official_ebm(
            ebm_checkpoint, layout=ebm_layout, in_channels=vae.data_shape[0], sample_size=vae.data_shape[1]
        )
        design = EBM_LAYOUTS[ebm.config.layout].sample_size
        if design != vae.data_shape[1]:
            raise ValueError(
                f"{Path(nvae_checkpoint).name} models images of shape {tuple(vae.data_shape)} but "
                f"{Path(ebm_checkpoint).name} is a {ebm.config.layout} energy network for "
                f"({vae.data_shape[0]}, {design}, {design}) images; pair checkpoints of the same dataset."
            )
    if dataset is None:  # the paper's setting for the checkpoint's own dataset, if it has one
        dataset = NVAE_DATASET_TO_PRESET.get(getattr(checkpoint["args"], "dataset", None))
    pipe = build_pipeline(vae, ebm, dataset=dataset, potential=potential)
    output_dir = Path(output_dir)
    pipe.save_pretrained(output_dir)
    from ..hub import create_model_card

    sources = [Path(nvae_checkpoint).name] + ([Path(ebm_checkpoint).name] if ebm_checkpoint else [])
    card = create_model_card(
        output_dir,
        kind="converted",
        datasets=[dataset] if dataset else None,
        provenance=f"{NVIDIA_LICENSE_NOTE} Source files: {', '.join(sources)}.",
    )
    card.save(output_dir / "README.md")
    return pipe
