"""VAEBM energy network ``E_psi(x)`` (Xiao et al., ICLR 2021, §4 of the reference notes).

Architecture (names match the official state-dict keys, so an official checkpoint loads with ``load_state_dict``):

* stem ``conv1``: 3x3 weight-normalised conv ``in_channels -> C`` (with bias), then LipSwish;
* ``blocks.k``: ``conv1`` 3x3 -> LipSwish -> ``conv2`` 3x3 -> ``+ skip(x)`` -> avg-pool 2x if ``down`` -> LipSwish;
  ``skip.0`` is a 1x1 weight-normalised conv without bias when the block changes channels or downsamples, else
  the identity;
* head: sum over spatial positions, then ``linear`` (``C_final -> 1``); the energy has shape ``(B,)``.

Training adds the spectral regularisation ``sum_l sigma_max(W_l)`` over every weight-normalised conv, estimated by
persistent power iteration (:class:`SpectralRegularizationMixin`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from .layers import LipSwish, WNConv2d
from .spectral import SpectralRegularizationMixin, check_finite

BlockSpec = tuple[int, int, bool]
"""``(in_mult, out_mult, down)``: a residual block from ``in_mult * C`` to ``out_mult * C`` channels."""


@dataclass(frozen=True)
class EBMLayout:
    """A named block list (channel multiples of ``n_channel``) and the image size it was designed for."""

    blocks: tuple[BlockSpec, ...]
    sample_size: int


def _chain(stages: str) -> tuple[BlockSpec, ...]:
    """Block list from the notes' notation, e.g. ``"C d, C, 2C d"``: each stage is ``<mult>C`` (its output width),
    ``d`` marks a 2x-downsampling block, and each block's input is the previous output (the stem outputs ``C``)."""
    blocks, in_mult = [], 1
    for stage in stages.split(","):
        width, *flag = stage.split()
        out_mult = int(width.removesuffix("C") or 1)
        blocks.append((in_mult, out_mult, flag == ["d"]))
        in_mult = out_mult
    return tuple(blocks)


# Official VAEBM layouts (EBM_CIFAR32, EBM_CelebA64, EBM_LSUN64, EBM_CelebA256, EBM_MNIST) plus our 8x8 digits net.
EBM_LAYOUTS: dict[str, EBMLayout] = {
    "cifar32": EBMLayout(_chain("C d, C, 2C d, 2C, 2C d, 2C"), sample_size=32),
    "celeba64": EBMLayout(_chain("C d, C, 2C d, 2C, 2C d, 4C, 4C d, 4C"), sample_size=64),
    "lsun64": EBMLayout(_chain("C d, C, 2C d, 2C, 2C, 2C d, 4C, 4C, 4C d, 4C"), sample_size=64),
    "celeba256": EBMLayout(_chain("C d, C, 2C d, 2C, 2C d, 2C, 4C d, 4C, 4C d, 4C, 8C d, 8C"), sample_size=256),
    "mnist": EBMLayout(_chain("C d, C, 2C d, 2C"), sample_size=32),
    "digits8": EBMLayout(_chain("C d, C, 2C d"), sample_size=8),
}
CUSTOM_LAYOUT = "custom"


def resolve_blocks(layout: str, custom_blocks: Sequence[Sequence] | None) -> tuple[BlockSpec, ...]:
    """The block list of ``layout`` (or the validated ``custom_blocks`` when ``layout == "custom"``)."""
    if layout == CUSTOM_LAYOUT:
        if not custom_blocks:
            raise ValueError('layout="custom" needs `custom_blocks`, a list like [[1, 1, true], [1, 2, true], ...].')
        specs = []
        for k, block in enumerate(custom_blocks):
            if len(block) != 3 or int(block[0]) < 1 or int(block[1]) < 1:
                raise ValueError(
                    f"custom_blocks[{k}] = {block!r}: expected [in_mult >= 1, out_mult >= 1, down (bool)]."
                )
            specs.append((int(block[0]), int(block[1]), bool(block[2])))
        expected_in = 1
        for k, (in_mult, out_mult, _) in enumerate(specs):
            if in_mult != expected_in:
                raise ValueError(
                    f"custom_blocks[{k}] has in_mult={in_mult} but the previous stage outputs {expected_in}*n_channel;"
                    " each block's in_mult must equal the previous out_mult (the stem outputs 1*n_channel)."
                )
            expected_in = out_mult
        return tuple(specs)
    if layout not in EBM_LAYOUTS:
        names = ", ".join([*EBM_LAYOUTS, CUSTOM_LAYOUT])
        raise ValueError(f"Unknown EBM layout {layout!r}; choose one of: {names}.")
    if custom_blocks is not None:
        raise ValueError(f'`custom_blocks` is only used with layout="custom", not with the preset {layout!r}.')
    return EBM_LAYOUTS[layout].blocks


class EnergyResBlock(nn.Module):
    """``LipSwish(pool(conv2(LipSwish(conv1(x))) + skip(x)))`` with optional 2x average pooling."""

    def __init__(self, in_channels: int, out_channels: int, down: bool) -> None:
        super().__init__()
        self.conv1 = WNConv2d(in_channels, out_channels, 3, padding=1, bias=True)
        self.conv2 = WNConv2d(out_channels, out_channels, 3, padding=1, bias=True)
        if in_channels != out_channels or down:
            self.skip = nn.Sequential(WNConv2d(in_channels, out_channels, 1, bias=False))
        else:
            self.skip = nn.Identity()
        self.down = down
        self.act = LipSwish()

    def _merge(self, residual: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        out = residual + shortcut
        if self.down:
            out = F.avg_pool2d(out, 2)
        return self.act(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._merge(self.conv2(self.act(self.conv1(x))), self.skip(x))

    @torch.no_grad()
    def data_init_(self, x: torch.Tensor) -> torch.Tensor:
        """Data-dependent init of ``conv1``, ``conv2`` and the 1x1 skip (fed the block input); returns the output."""
        residual = self.conv2.data_init_(self.act(self.conv1.data_init_(x)))
        shortcut = self.skip[0].data_init_(x) if isinstance(self.skip, nn.Sequential) else x
        return self._merge(residual, shortcut)


class VAEBMEnergyModel(ModelMixin, ConfigMixin, SpectralRegularizationMixin):
    """Energy ``E(x): (B, in_channels, sample_size, sample_size) -> (B,)``; low energy = data-like.

    The block list is the config entry ``custom_blocks`` (not ``blocks``, which is the module list whose name must
    match the official state-dict keys).

    Args:
        in_channels: image channels.
        sample_size: expected height = width of the input.
        layout: a preset from ``EBM_LAYOUTS`` (``cifar32``, ``celeba64``, ``lsun64``, ``celeba256``, ``mnist``,
            ``digits8``) or ``"custom"``.
        n_channel: ``C``, the width of the first stage; stage widths are multiples of it.
        custom_blocks: ``layout="custom"`` only: ``[[in_mult, out_mult, down], ...]`` in multiples of ``n_channel``.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 1,
        sample_size: int = 8,
        layout: str = "digits8",
        n_channel: int = 32,
        custom_blocks: list | None = None,
    ) -> None:
        super().__init__()
        specs = resolve_blocks(layout, custom_blocks)
        if in_channels < 1 or n_channel < 1:
            raise ValueError(f"in_channels and n_channel must be >= 1, got {in_channels} and {n_channel}.")
        num_down = sum(down for _, _, down in specs)
        if sample_size < 1 or sample_size % 2**num_down:
            raise ValueError(
                f"sample_size={sample_size} must be a positive multiple of 2**{num_down} for layout {layout!r}"
                f" ({num_down} downsampling blocks)."
            )
        self.conv1 = WNConv2d(in_channels, n_channel, 3, padding=1, bias=True)
        self.blocks = nn.ModuleList(EnergyResBlock(i * n_channel, o * n_channel, down) for i, o, down in specs)
        self.linear = nn.Linear(specs[-1][1] * n_channel, 1)
        self.act = LipSwish()

    def _check_input(self, x: torch.Tensor, finite: bool = True) -> None:
        size = self.config.sample_size
        expected = (self.config.in_channels, size, size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"Expected images of shape (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}.")
        if finite:
            check_finite(x)

    def forward(self, x: torch.Tensor, check_finite: bool = True) -> torch.Tensor:
        """Energies ``(B,)`` of images ``x: (B, C, H, W)`` (VAEBM feeds images in [0, 1]).

        ``check_finite=False`` skips the NaN/Inf check (a host sync) for callers that track non-finite chains
        themselves, such as the Langevin loop.
        """
        self._check_input(x, check_finite)
        h = self.act(self.conv1(x))
        for block in self.blocks:
            h = block(h)
        return self.linear(h.sum(dim=(2, 3))).squeeze(1)

    @torch.no_grad()
    def data_init_(self, x: torch.Tensor) -> None:
        """Data-dependent weight-norm init (NVAE/VAEBM), layer by layer in forward order on the batch ``x``.

        Each conv gets ``bias = -m / (s + 1e-5)`` and ``log_weight_norm = -log(s + 1e-5)`` from the mean ``m`` and
        ``s = 5 * std`` of its unit-norm output on the activations of the already-initialised earlier layers
        (see :meth:`WNConv2d.data_init_`). The conv weights and the final ``linear`` are unchanged.
        """
        self._check_input(x)
        h = self.act(self.conv1.data_init_(x))
        for block in self.blocks:
            h = block.data_init_(h)

    def _spectral_matrices(self) -> list[tuple[str, torch.Tensor]]:
        return [
            (name, module.effective_weight().flatten(1))
            for name, module in self.named_modules()
            if isinstance(module, WNConv2d)
        ]


@torch.no_grad()
def zero_energy_(ebm: nn.Module) -> nn.Module:
    """Zero an energy network's output layer so that ``E(x) = 0`` everywhere; returns it.

    The placeholder a pipeline ships with before stage 2 has trained an energy network: with the exact potential it
    samples the VAE itself.
    """
    ebm.linear.weight.zero_()
    ebm.linear.bias.zero_()
    return ebm
