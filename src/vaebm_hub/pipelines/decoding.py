"""The images of noise-space states ``eps = (eps_z, eps_x)``: the decoder mean of ``z = T_z(eps_z)`` (VAEBM's), or
the decoder's sample ``T_x(z, eps_x)`` (``decoder_output="sample"``). The pipeline returns them at its chains' final
states, and the x-space ablation starts its chains from them."""

from __future__ import annotations

import torch
from diffusers import ModelMixin

from ..constants import DECODER_OUTPUTS


def check_decoder_output(decoder_output: str, pixel_noise: bool, vae: ModelMixin) -> None:
    """A ``ValueError`` naming the fix unless ``decoder_output`` is one of :data:`DECODER_OUTPUTS` and, for
    ``"sample"``, the chains carry the pixel noise ``eps_x`` that a decoder sample needs."""
    if decoder_output not in DECODER_OUTPUTS:
        raise ValueError(f"decoder_output must be one of {DECODER_OUTPUTS}, got {decoder_output!r}")
    if decoder_output == "sample" and not (pixel_noise and vae.noise_dim > vae.latent_dim):
        why = "this VAE's decoder has no pixel noise" if vae.noise_dim == vae.latent_dim else "pixel_noise=False"
        raise ValueError(
            f"decoder_output='sample' needs chains that move the pixel noise eps_x, but {why}; "
            "use decoder_output='mean' (trainer: --sample_decoder_output mean)"
        )


def pipeline_decoder_output(pipe) -> str:
    """The images ``pipe`` returns unless told otherwise: its ``decoder_output`` setting, or ``"mean"`` (VAEBM's) for a
    pipeline saved before the setting existed."""
    return pipe.config.get("decoder_output", "mean")


def decode_noise(
    vae: ModelMixin, eps: torch.Tensor, decoder_output: str = "mean", temperature: float = 1.0
) -> torch.Tensor:
    """The images of noise ``eps`` (B, D): the decoder mean of ``z``, or with ``decoder_output="sample"`` the decoder's
    sample at ``(z, eps_x)`` (clamped to the data range), which needs ``eps`` to carry ``eps_x``."""
    check_decoder_output(decoder_output, eps.shape[1] == vae.noise_dim, vae)
    eps = eps.to(vae.dtype)
    if decoder_output == "sample":
        return vae.noise_to_data(eps, temperature).x
    return vae.generate(eps, temperature)
