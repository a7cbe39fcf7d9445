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


def check_finite(x: torch.Tensor, name: str = "input") -> None:
    """Raise a ``ValueError`` if ``x`` holds NaN or Inf (a diverged sampler must not pass silently)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"The energy network got a {name} with NaN or Inf values; check the sampler's step size.")


class SpectralRegularizationMixin:
    """Spectral regularisation ``L_SR = sum_l u_l^T W_l v_l`` by persistent power iteration (VAEBM's SR loss).

    Each matrix ``W_l`` (from :meth:`_spectral_matrices`) is stacked with the matrices of the same shape, in order of
    first appearance, into a group ``(n_j, rows, cols)`` whose vectors ``u (n_j, rows)`` and ``v (n_j, cols)``
    persist between calls. One power iteration is ``v <- normalize(u^T W)`` then ``u <- normalize(W v)`` with
    ``normalize(a) = a / max(||a||, 1e-3)``. The loss keeps the graph through ``W`` and treats ``u, v`` as constants.
    The vectors are non-persistent buffers: they follow ``.to()`` but never enter ``state_dict``/safetensors.
    """

    _SR_EPS = 1e-3
    _SR_WARMUP_FACTOR = 10

    def _spectral_matrices(self) -> list[tuple[str, torch.Tensor]]:
        """``(module name, W (rows, cols))`` for every regularised layer, in module order."""
        raise NotImplementedError

    def _groups(self) -> dict[tuple[int, int], list[tuple[str, torch.Tensor]]]:
        groups: dict[tuple[int, int], list[tuple[str, torch.Tensor]]] = {}
        for name, matrix in self._spectral_matrices():
            groups.setdefault(tuple(matrix.shape), []).append((name, matrix))
        return groups

    def spectral_groups(self) -> list[tuple[tuple[int, int], list[str]]]:
        """``[((rows, cols), [member names]), ...]`` — the power-iteration groups, in order of first appearance."""
        return [(shape, [name for name, _ in members]) for shape, members in self._groups().items()]

    def _grouped_matrices(self) -> list[torch.Tensor]:
        """One ``(n_j, rows, cols)`` stack per group, in the order of :meth:`spectral_groups`."""
        return [torch.stack([matrix for _, matrix in members]) for members in self._groups().values()]

    def power_iteration_vectors(self) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
        """The current ``(u, v)`` per group; ``None`` before the first loss call or a set/reset."""
        if not getattr(self, "_sr_num_groups", 0):
            return None
        count = self._sr_num_groups
        return [getattr(self, f"sr_u_{j}") for j in range(count)], [getattr(self, f"sr_v_{j}") for j in range(count)]

    def set_power_iteration_vectors(self, u: Sequence[torch.Tensor], v: Sequence[torch.Tensor]) -> None:
        """Set the starting vectors (``u[j]: (n_j, rows)``, ``v[j]: (n_j, cols)``); the next call warms up again."""
        matrices = self._grouped_matrices()
        if len(u) != len(matrices) or len(v) != len(matrices):
            raise ValueError(
                f"Expected {len(matrices)} power-iteration groups, got {len(u)} u and {len(v)} v tensors."
            )
        for j, (weight, u_j, v_j) in enumerate(zip(matrices, u, v)):
            n, rows, cols = weight.shape
            if tuple(u_j.shape) != (n, rows) or tuple(v_j.shape) != (n, cols):
                got = (tuple(u_j.shape), tuple(v_j.shape))
                raise ValueError(f"Group {j}: expected u {(n, rows)} and v {(n, cols)}, got {got[0]} and {got[1]}.")
            self.register_buffer(f"sr_u_{j}", u_j.detach().to(weight).clone(), persistent=False)
            self.register_buffer(f"sr_v_{j}", v_j.detach().to(weight).clone(), persistent=False)
        self._sr_num_groups = len(matrices)
        self._sr_warm = False

    def reset_power_iteration(self, generator: torch.Generator | None = None) -> None:
        """Draw fresh random unit starting vectors (seeded by ``generator``); the next call warms up again."""
        matrices = self._grouped_matrices()
        device = generator.device if generator is not None else matrices[0].device

        def draw(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
            sample = torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)
            return F.normalize(sample, dim=1, eps=self._SR_EPS)

        self.set_power_iteration_vectors(
            [draw(w.shape[:2], w) for w in matrices], [draw((w.shape[0], w.shape[2]), w) for w in matrices]
        )

    def spectral_norm_loss(self, num_power_iter: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
        """Scalar ``sum_l u_l^T W_l v_l`` after ``num_power_iter`` iterations (10x as many when warming up).

        Starting vectors are drawn with ``generator`` if none exist yet (see :meth:`reset_power_iteration`).
        """
        if self.power_iteration_vectors() is None:
            self.reset_power_iteration(generator)
        steps = num_power_iter * (1 if self._sr_warm else self._SR_WARMUP_FACTOR)
        loss = 0.0
        for j, weight in enumerate(self._grouped_matrices()):
            u, v = getattr(self, f"sr_u_{j}"), getattr(self, f"sr_v_{j}")
            with torch.no_grad():
                frozen = weight.detach()
                for _ in range(steps):
                    v = F.normalize(torch.einsum("nr,nrc->nc", u, frozen), dim=1, eps=self._SR_EPS)
                    u = F.normalize(torch.einsum("nrc,nc->nr", frozen, v), dim=1, eps=self._SR_EPS)
            setattr(self, f"sr_u_{j}", u)
            setattr(self, f"sr_v_{j}", v)
            loss = loss + torch.einsum("nr,nrc,nc->n", u, weight, v).sum()
        self._sr_warm = True
        return loss


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

    def _check_input(self, x: torch.Tensor) -> None:
        size = self.config.sample_size
        expected = (self.config.in_channels, size, size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"Expected images of shape (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}.")
        check_finite(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Energies ``(B,)`` of images ``x: (B, C, H, W)`` (VAEBM feeds images in [0, 1])."""
        self._check_input(x)
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
