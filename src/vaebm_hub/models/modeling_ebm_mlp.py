"""VAEBM energy MLP for low-dimensional data (e.g. the 2-D 25-Gaussians toy)."""

from __future__ import annotations

import torch
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from .layers import LipSwish
from .spectral import SpectralRegularizationMixin, check_finite


class VAEBMEnergyMLP(ModelMixin, ConfigMixin, SpectralRegularizationMixin):
    """Energy ``E(x): (B, in_features) -> (B,)``: ``num_layers`` hidden ``Linear -> LipSwish`` layers, then ``linear``.

    It has the same training API as :class:`~vaebm_hub.models.modeling_ebm.VAEBMEnergyModel`: ``data_init_`` (a
    no-op here: the layers are plain ``nn.Linear`` without weight normalisation) and ``spectral_norm_loss`` (power
    iteration over the hidden weight matrices ``(out, in)``; the output ``linear`` is excluded, as in the conv net).
    """

    @register_to_config
    def __init__(self, in_features: int = 2, hidden_dim: int = 128, num_layers: int = 3) -> None:
        super().__init__()
        if min(in_features, hidden_dim, num_layers) < 1:
            raise ValueError(
                f"in_features, hidden_dim and num_layers must be >= 1, got {in_features}, {hidden_dim}, {num_layers}."
            )
        widths = [in_features] + [hidden_dim] * num_layers
        self.layers = nn.ModuleList(nn.Linear(fan_in, fan_out) for fan_in, fan_out in zip(widths[:-1], widths[1:]))
        self.linear = nn.Linear(hidden_dim, 1)
        self.act = LipSwish()

    def _check_input(self, x: torch.Tensor, finite: bool = True) -> None:
        if x.dim() != 2 or x.shape[1] != self.config.in_features:
            raise ValueError(f"Expected points of shape (B, {self.config.in_features}), got {tuple(x.shape)}.")
        if finite:
            check_finite(x)

    def forward(self, x: torch.Tensor, check_finite: bool = True) -> torch.Tensor:
        """Energies ``(B,)`` of points ``x: (B, in_features)``; ``check_finite=False`` skips the NaN/Inf check."""
        self._check_input(x, check_finite)
        for layer in self.layers:
            x = self.act(layer(x))
        return self.linear(x).squeeze(1)

    @torch.no_grad()
    def data_init_(self, x: torch.Tensor) -> None:
        """No-op (there is no weight normalisation to initialise); only checks ``x`` like :meth:`forward`."""
        self._check_input(x)

    def _spectral_matrices(self) -> list[tuple[str, torch.Tensor]]:
        return [(f"layers.{k}", layer.weight) for k, layer in enumerate(self.layers)]
