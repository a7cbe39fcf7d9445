"""NVAE's autoregressive posterior flow cells (``num_nf > 0``), with NVAE's key names.

Each ``PairedCellAR`` is two volume-preserving AR shifts ``z <- z - mu(z)``, the second with spatially mirrored
masks; ``mu`` is a masked conv net (3x3 masked conv, ELU, masked depthwise 5x5, ELU, then ELU + masked 1x1 conv).
Masks are rebuilt here (they are not in the state dict). Log-determinants are zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import FrozenCache, conv2d_frozen_kernel, normalize_weight


def channel_mask(in_channels: int, out_channels: int, groups: int, zero_diag: bool) -> torch.Tensor:
    """Autoregressive channel connectivity ``(C_out, C_in / groups)``: output block ``i`` sees inputs ``< i``
    (``<= i`` without ``zero_diag``)."""
    if groups == in_channels:
        return torch.zeros(out_channels, 1) if zero_diag else torch.ones(out_channels, 1)
    if groups != 1:
        raise ValueError("AR convolutions support groups=1 or depthwise only")
    mask = torch.ones(out_channels, in_channels)
    if out_channels >= in_channels:
        ratio = out_channels // in_channels
        for i in range(in_channels):
            mask[i * ratio : (i + 1) * ratio, i + 1 :] = 0
            if zero_diag:
                mask[i * ratio : (i + 1) * ratio, i : i + 1] = 0
    else:
        ratio = in_channels // out_channels
        for i in range(out_channels):
            mask[i : i + 1, (i + 1) * ratio :] = 0
            if zero_diag:
                mask[i : i + 1, i * ratio : (i + 1) * ratio] = 0
    return mask


def conv_mask(
    kernel_size: int, in_channels: int, out_channels: int, groups: int, zero_diag: bool, mirror: bool
) -> torch.Tensor:
    """Raster-order causal spatial mask, with the centre tap given by :func:`channel_mask`."""
    m = (kernel_size - 1) // 2
    mask = torch.ones(out_channels, in_channels // groups, kernel_size, kernel_size)
    mask[:, :, m:, :] = 0
    mask[:, :, m, :m] = 1
    mask[:, :, m, m] = channel_mask(in_channels, out_channels, groups, zero_diag)
    if mirror:
        mask = mask.flip(2, 3)
    return mask


class ARConv2d(nn.Conv2d):
    """Masked, weight-normalised convolution (keys ``weight``, ``log_weight_norm``, optional ``bias``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        padding: int = 0,
        groups: int = 1,
        bias: bool = False,
        zero_diag: bool = False,
        mirror: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=padding, groups=groups, bias=bias)
        mask = conv_mask(kernel_size, in_channels, out_channels, groups, zero_diag, mirror)
        self.register_buffer("mask", mask, persistent=False)  # rebuilt, never saved
        masked = self.weight.detach() * mask.to(self.weight.device)  # the weight is on "meta" under lazy loading
        init = torch.linalg.vector_norm(masked.flatten(1), dim=1).view(-1, 1, 1, 1)
        self.log_weight_norm = nn.Parameter(torch.log(init + 1e-2))
        self._frozen_weight = FrozenCache()

    def effective_weight(self) -> torch.Tensor:
        return normalize_weight(self.weight * self.mask, self.log_weight_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d_frozen_kernel(self, x, (self.weight, self.log_weight_norm, self.mask))


class ARInvertedResidual(nn.Module):
    def __init__(self, latent_channels: int, mirror: bool, expansion: int = 6, kernel_size: int = 5) -> None:
        super().__init__()
        hidden = latent_channels * expansion
        self.hidden_channels = hidden
        self.convz = nn.Sequential(
            ARConv2d(latent_channels, hidden, 3, padding=1, zero_diag=True, mirror=mirror),
            nn.ELU(),
            ARConv2d(hidden, hidden, kernel_size, padding=(kernel_size - 1) // 2, groups=hidden, mirror=mirror),
            nn.ELU(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.convz(z)


class ELUConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, mirror: bool) -> None:
        super().__init__()
        self.conv_0 = ARConv2d(in_channels, out_channels, 1, bias=True, mirror=mirror)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_0(F.elu(x))


class CellAR(nn.Module):
    """``z <- z - mu(z)`` with an autoregressive ``mu``; log-determinant 0."""

    def __init__(self, latent_channels: int, mirror: bool) -> None:
        super().__init__()
        self.conv = ARInvertedResidual(latent_channels, mirror)
        self.mu = ELUConv(self.conv.hidden_channels, latent_channels, mirror)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z - self.mu(self.conv(z))


class PairedCellAR(nn.Module):
    def __init__(self, latent_channels: int) -> None:
        super().__init__()
        self.cell1 = CellAR(latent_channels, mirror=False)
        self.cell2 = CellAR(latent_channels, mirror=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.cell2(self.cell1(z))
