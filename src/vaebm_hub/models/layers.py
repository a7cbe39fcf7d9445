"""Layers shared by the VAE and the energy network.

Conventions follow the NVAE / VAEBM papers so that official checkpoints map onto these modules by name:

* weight normalisation ``w_eff = exp(log_weight_norm) * w / (||w||_out + 1e-5)`` with the norm taken per output
  channel over ``(C_in, kH, kW)``;
* the soft clamp ``softclamp(a) = 5 * tanh(a / 5)`` used on every predicted mean and log-scale;
* Swish ``x * sigmoid(x)`` and LipSwish ``x * sigmoid(x) / 1.1`` (1-Lipschitz, used by the energy network), both
  through torch's fused ``F.silu`` kernel (forward and backward), which equals ``x * sigmoid(x)`` to float32 rounding.

Inside a :func:`frozen` block (the pipeline's sampling call, each Langevin chain of stage 2), kernels derived from
weights that need no gradient — the weight-normalised kernels here, the folded batch norms of ``nvae_cells`` — are
computed once and reused (:class:`FrozenCache`).
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_NORM_EPS = 1e-5


def soft_clamp(x: torch.Tensor, bound: float = 5.0) -> torch.Tensor:
    """``bound * tanh(x / bound)``: a smooth clamp to ``(-bound, bound)`` with slope 1 at the origin."""
    return torch.tanh(x / bound) * bound


_REFERENCE_KERNELS = False


def reference_kernels_enabled() -> bool:
    return _REFERENCE_KERNELS


@contextlib.contextmanager
def reference_kernels(enabled: bool = True) -> Iterator[None]:
    """Inside, the networks run the plain eager formulas this package used before its fast path — Swish as
    ``x * sigmoid(x)`` and eval-mode batch norm as its own op (not folded into the neighbouring convolutions) — so
    that benchmarks can time both in one process. Outputs agree to float32 rounding."""
    global _REFERENCE_KERNELS
    previous, _REFERENCE_KERNELS = _REFERENCE_KERNELS, enabled
    try:
        yield
    finally:
        _REFERENCE_KERNELS = previous


_FROZEN_DEPTH = 0  # how many frozen() blocks are open
_FILLED: list[weakref.ref] = []  # caches filled inside the open blocks, emptied when their block closes


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Inside, the parameters of ``modules`` do not require grad (restored on exit, also after an error) and
    kernels derived from weights that need no gradient are computed once and reused (:class:`FrozenCache`).

    Gradients to the inputs are unchanged; autograd records nothing for the parameters. Reuse is limited to the
    block: on exit every kernel cached inside it is dropped (no memory is held between calls), and inside it any
    tracked change to a weight (in place, ``load_state_dict``, ``.to()``) recomputes its kernel at once."""
    global _FROZEN_DEPTH
    # by name: offloading hooks may swap a parameter object for another while the block runs
    names = [(m, name) for m in modules for name, p in m.named_parameters() if p.requires_grad]
    filled = len(_FILLED)
    _FROZEN_DEPTH += 1
    try:
        for m, name in names:
            m.get_parameter(name).requires_grad_(False)
        yield
    finally:
        _FROZEN_DEPTH -= 1
        for ref in _FILLED[filled:]:
            cache = ref()
            if cache is not None:
                cache.clear()
        del _FILLED[filled:]
        for m, name in names:
            m.get_parameter(name).requires_grad_(True)


class FrozenCache:
    """One value derived from some tensors (e.g. a weight-normalised kernel from ``weight`` and
    ``log_weight_norm``), computed once per :func:`frozen` block and reused inside it.

    The value is reused only inside a ``frozen`` block, while no source needs a gradient (``requires_grad`` off, or
    autograd off), outside :func:`reference_kernels` and outside ``torch.compile`` tracing; otherwise :meth:`get`
    computes afresh, so parameter gradients are always those of the uncached formula. Inside the block, the same
    tensor objects, storage and version counter are required: an in-place update, ``load_state_dict``, ``.to()`` or
    ``extra`` changing recomputes it. (Writes through ``.data``, as diffusers' ``EMAModel.copy_to`` makes, bypass the
    version counter; that is why nothing is reused across blocks.) Nothing is kept in state dicts or pickles."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._sources: tuple[weakref.ref, ...] = ()
        self._key: tuple | None = None
        self._value: Any = None

    def get(self, sources: Sequence[torch.Tensor], compute: Callable[[], Any], *extra: Any) -> Any:
        if torch.compiler.is_compiling():  # traced into the compiled graph, which computes it itself
            return compute()
        if not _reusable(sources):
            if self._value is not None:
                self.clear()
            return compute()
        key = (*((t.data_ptr(), t._version) for t in sources), *extra)
        if key == self._key and all(ref() is t for ref, t in zip(self._sources, sources)):
            return self._value
        self.clear()  # the stale value is freed before the new one is computed
        value = compute()
        self._sources, self._key, self._value = tuple(weakref.ref(t) for t in sources), key, value
        _FILLED.append(weakref.ref(self))
        return value

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.clear()

    def __deepcopy__(self, memo: dict) -> FrozenCache:
        return FrozenCache()


def _reusable(sources: Sequence[torch.Tensor]) -> bool:
    if not _FROZEN_DEPTH or _REFERENCE_KERNELS:
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in sources):
        return False
    return not any(t.is_inference() for t in sources)  # inference tensors have no version counter


def swish(x: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(x)`` (one fused kernel: about 2x faster than the two-op form on CPU, forward and backward)."""
    return x * torch.sigmoid(x) if _REFERENCE_KERNELS else F.silu(x)


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swish(x)


class LipSwish(nn.Module):
    """``x * sigmoid(x) / 1.1`` — Swish rescaled to be 1-Lipschitz (Chen et al., residual flows)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swish(x) / 1.1


def normalize_weight(weight: torch.Tensor, log_weight_norm: torch.Tensor) -> torch.Tensor:
    """Weight normalisation: ``exp(log_weight_norm) * w / (||w|| + 1e-5)``, norm per output channel."""
    norm = torch.linalg.vector_norm(weight.flatten(1), dim=1).view(-1, *([1] * (weight.dim() - 1)))
    return torch.exp(log_weight_norm) * weight / (norm + WEIGHT_NORM_EPS)


def laid_out(weight: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return weight.contiguous(memory_format=torch.channels_last) if channels_last else weight


def conv2d_forward_with(
    conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``conv``'s convolution (stride, padding, groups) of ``x`` with the given ``weight`` and ``bias``, in
    channels-last memory layout when ``conv.channels_last`` is set (see :func:`set_channels_last`). The parameters
    keep torch's default layout either way (so state dicts and safetensors files are unchanged); only the per-call
    weight copy and the activations are channels-last."""
    if getattr(conv, "channels_last", False):
        weight = laid_out(weight, True)  # a no-op for a cached kernel already laid out
        x = x.contiguous(memory_format=torch.channels_last)
    return conv._conv_forward(x, weight, bias)


def conv2d_forward(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``conv`` applied to ``x`` with ``weight`` and its own bias (see :func:`conv2d_forward_with`)."""
    return conv2d_forward_with(conv, x, weight, conv.bias)


def conv2d_frozen_kernel(conv: nn.Conv2d, x: torch.Tensor, sources: Sequence[torch.Tensor]) -> torch.Tensor:
    """``conv`` applied to ``x`` with ``conv.effective_weight()``, the kernel (in the conv's memory layout) kept in
    ``conv._frozen_weight`` (a :class:`FrozenCache` on ``sources``, the tensors it is computed from)."""
    channels_last = getattr(conv, "channels_last", False)
    weight = conv._frozen_weight.get(sources, lambda: laid_out(conv.effective_weight(), channels_last), channels_last)
    return conv2d_forward(conv, x, weight)


def set_channels_last(module: nn.Module, enabled: bool = True) -> int:
    """Run every convolution of ``module`` (``WNConv2d`` and the flows' masked convs) in channels-last layout, or
    back in the default layout; returns how many convolutions were switched.

    On CPU this speeds up the backward pass of depthwise convolutions (NVAE's decoder cells) about threefold
    (``benchmarks/sampler.py``); outputs agree with the default layout to float32 rounding.
    """
    count = 0
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and hasattr(m, "effective_weight"):
            m.channels_last = bool(enabled)
            count += 1
    return count


class WNConv2d(nn.Conv2d):
    """``nn.Conv2d`` with NVAE's weight normalisation (parameters ``weight``, ``bias``, ``log_weight_norm``).

    With ``weight_norm=False`` it is a plain convolution (NVAE uses those inside its inverted-residual cells).
    ``log_weight_norm`` starts at ``log(||w|| + 1e-2)`` as in NVAE, so a fresh layer is close to the raw conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        weight_norm: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        if weight_norm:
            init = torch.linalg.vector_norm(self.weight.detach().flatten(1), dim=1).view(-1, 1, 1, 1)
            self.log_weight_norm = nn.Parameter(torch.log(init + 1e-2))
        else:
            self.register_parameter("log_weight_norm", None)
        self._frozen_weight = FrozenCache()

    def effective_weight(self) -> torch.Tensor:
        if self.log_weight_norm is None:
            return self.weight
        return normalize_weight(self.weight, self.log_weight_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.log_weight_norm is None:
            return conv2d_forward(self, x, self.weight)
        return conv2d_frozen_kernel(self, x, (self.weight, self.log_weight_norm))

    @torch.no_grad()
    def data_init_(self, x: torch.Tensor) -> torch.Tensor:
        """Data-dependent initialisation (Salimans & Kingma 2016, as in NVAE/VAEBM); returns the new output.

        With ``o = conv(x, w / (||w|| + 1e-5))`` (no bias), ``m = mean(o)`` and ``s = 5 * std(o)`` (unbiased) per
        output channel over ``(N, H, W)``: ``bias = -m / (s + 1e-5)`` and ``log_weight_norm = -log(s + 1e-5)``, so the
        layer's output on ``x`` has per-channel mean 0 and standard deviation 1/5.
        """
        if self.log_weight_norm is None:
            raise ValueError("data_init_ needs a weight-normalised convolution (weight_norm=True).")
        unit_weight = normalize_weight(self.weight, torch.zeros_like(self.log_weight_norm))
        out = self._conv_forward(x, unit_weight, None)
        mean = out.mean(dim=(0, 2, 3))
        scale = 5.0 * out.transpose(0, 1).flatten(1).std(dim=1)
        if self.bias is not None:
            self.bias.copy_(-mean / (scale + WEIGHT_NORM_EPS))
        self.log_weight_norm.copy_(-torch.log(scale + WEIGHT_NORM_EPS).view(-1, 1, 1, 1))
        return self(x)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Element-wise ``log N(x; mean, scale^2)``."""
    z = (x - mean) / scale
    return -0.5 * z * z - 0.5 * math.log(2 * math.pi) - torch.log(scale)


def elu_then(module: nn.Module) -> nn.Sequential:
    """``Sequential(ELU, module)`` — index 1 holds the module, matching NVAE's state-dict keys."""
    return nn.Sequential(nn.ELU(), module)


def upsample_nearest(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")
