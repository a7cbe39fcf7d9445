"""Model components: the NVAE-faithful VAE, the MLP VAE, the energy networks and their shared layers."""

from .modeling_ebm import VAEBMEnergyModel, zero_energy_
from .modeling_ebm_mlp import VAEBMEnergyMLP
from .modeling_vae import VAE_PRESETS, VAEBMVAE, PriorSample, VAEBMVAEOutput
from .modeling_vae_mlp import VAEBMMLPVAE

__all__ = [
    "VAE_PRESETS",
    "PriorSample",
    "VAEBMEnergyMLP",
    "VAEBMEnergyModel",
    "VAEBMMLPVAE",
    "VAEBMVAE",
    "VAEBMVAEOutput",
    "zero_energy_",
]
