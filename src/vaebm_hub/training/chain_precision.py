"""The precision the energy network runs in inside stage 2's Langevin chains.

VAEBM runs its chains in float32. Most of a stage-2 iteration is the energy network's forward pass and input
gradient inside the K chain steps (70% of an ``mnist`` iteration is its convolutions), so on hardware with native
bfloat16 the chains' energy network can run under ``torch.autocast(dtype=torch.bfloat16)``: the VAE, the potential
``U``, the chain state and the training loss stay float32, and the network's weights stay float32 (autocast casts
them per call). Only the chains' gradient ``dE/dx`` is computed in bfloat16, a deviation from VAEBM named by
``EBMTraining.chain_dtype`` (``"float32"``, the paper's, is the default). With MALA training chains
(``--langevin_metropolis``) the Metropolis test then sees energies rounded to bfloat16 (about 3 significant digits;
the ``mnist`` preset trains with plain Langevin). The saved pipeline samples in its networks' own dtype either way;
``"auto"`` is saved as ``"auto"`` in the run's settings, not as the dtype it resolved to on the training machine.
"""

from __future__ import annotations

import torch
from torch import nn

from ..constants import CHAIN_DTYPES


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 convolutions natively: a CUDA GPU that supports it, or a CPU with AVX-512
    BF16 or AMX-BF16 instructions. Elsewhere bfloat16 is emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        capabilities = torch.cpu.get_capabilities()
        return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    return False


def chain_dtype(setting: str, device: torch.device) -> torch.dtype:
    """The dtype of the chains' energy network for ``EBMTraining.chain_dtype`` on ``device``: ``"auto"`` is bfloat16
    where :func:`native_bfloat16` holds, else float32."""
    if setting not in CHAIN_DTYPES:
        raise ValueError(f"chain_dtype must be one of {CHAIN_DTYPES}, got {setting!r} (--langevin_dtype / preset).")
    if setting == "auto":
        return torch.bfloat16 if native_bfloat16(device) else torch.float32
    if setting == "bfloat16" and device.type == "cuda" and not native_bfloat16(device):
        raise ValueError("--langevin_dtype bfloat16 needs a GPU with bfloat16 support; use float32 or auto.")
    return getattr(torch, setting)


class AutocastEnergy(nn.Module):
    """``energy`` run under ``torch.autocast`` in ``dtype``, its energies returned in float32.

    The wrapped network is a submodule, so the wrapper's parameters are its (float32) parameters and the chains'
    potential keeps float32 inputs (:func:`~vaebm_hub.pipelines.potential.vaebm_potential`).
    """

    def __init__(self, energy: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.energy, self.dtype = energy, dtype

    def forward(self, x: torch.Tensor, check_finite: bool = True) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.dtype):
            return self.energy(x, check_finite=check_finite).float()


def chain_energy(energy: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``energy`` itself for float32 chains, else wrapped in :class:`AutocastEnergy`."""
    return energy if dtype == torch.float32 else AutocastEnergy(energy, dtype)
