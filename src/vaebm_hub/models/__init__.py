"""Model components: the NVAE-faithful VAE, the energy networks and their shared layers."""

from .modeling_vae import VAE_PRESETS, PriorSample, VAEBMVAE, VAEBMVAEOutput

__all__ = ["VAE_PRESETS", "PriorSample", "VAEBMVAE", "VAEBMVAEOutput"]
