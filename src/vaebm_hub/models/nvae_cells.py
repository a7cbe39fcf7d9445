"""NVAE's residual cells (Vahdat & Kautz, 2020), re-implemented with NVAE's module names.

Attribute names mirror the official state-dict keys (``_ops``, ``bn_act``, ``conv_0``, ``conv.{k}.bn``, ``skip``,
``se.se``), so an official checkpoint loads by key after dropping its ``weight_normalized`` aliases.

Cell types (``res_mbconv`` architecture, the only one VAEBM's NVAEs use):

* encoder / pre-process: two ``BN -> Swish -> 3x3 WN-conv`` ops;
* decoder: inverted residual ``BN -> 1x1 (6x) -> BN-Swish -> depthwise 5x5 -> BN-Swish -> 1x1 -> BN`` (plain convs);
* post-process: the same with 3x expansion.

Every cell returns ``skip(s) + residual_scale * ops(s)`` (NVAE: 0.1), with optional squeeze-excitation on ``ops``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import FrozenCache, WNConv2d, conv2d_forward_with, laid_out, reference_kernels_enabled, swish

BN_EPS = 1e-5
BN_MOMENTUM = 0.05
CHANNEL_MULT = 2

# primitive names per cell type for the ``res_mbconv`` architecture instance
RES_MBCONV = {
    "normal_pre": ("res_bnswish", "res_bnswish"),
    "down_pre": ("res_bnswish", "res_bnswish"),
    "normal_enc": ("res_bnswish", "res_bnswish"),
    "down_enc": ("res_bnswish", "res_bnswish"),
    "normal_dec": ("mconv_e6k5g0",),
    "up_dec": ("mconv_e6k5g0",),
    "normal_post": ("mconv_e3k5g0",),
    "up_post": ("mconv_e3k5g0",),
}
SUPPORTED_ARCH_INSTANCES = {"res_mbconv": RES_MBCONV}


def stride_for(cell_type: str) -> int:
    """1 for ``normal_*``, 2 for ``down_*``, -1 (2x up-sampling) for ``up_*``."""
    if cell_type.startswith("down"):
        return 2
    if cell_type.startswith("up"):
        return -1
    return 1


class BatchNormSwish(nn.BatchNorm2d):
    """Batch norm followed by Swish (NVAE's fused ``SyncBatchNormSwish``; keys ``weight``, ``bias``, ``running_*``)."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swish(super().forward(x))


class BatchNorm(nn.Module):
    """Plain batch norm under a ``bn`` attribute (NVAE's key layout ``....bn.weight``)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)


class BNSwishConv(nn.Module):
    """``BN -> Swish -> [nearest 2x up] -> kxk WN-conv`` (the ``res_bnswish`` primitive)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.upsample = stride == -1
        self.bn_act = BatchNormSwish(in_channels)
        self.conv_0 = WNConv2d(in_channels, out_channels, 3, stride=abs(stride), padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn_act(x)
        if self.upsample:
            out = F.interpolate(out, scale_factor=2, mode="nearest")
        return self.conv_0(out)


class ConvBNSwish(nn.Module):
    """Plain (not weight-normalised, bias-free) conv followed by BN+Swish; keys ``conv.0.*``, ``conv.1.*``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int = 1) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.conv = nn.Sequential(
            WNConv2d(in_channels, out_channels, kernel_size, padding=padding, groups=groups, weight_norm=False),
            BatchNormSwish(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm as the affine map ``x * scale + shift`` per channel."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


class InvertedResidual(nn.Module):
    """The ``mconv_e{ex}k5g0`` primitive: ``[up] BN, 1x1 expand, depthwise 5x5, 1x1 project, BN`` in ``conv``.

    In eval mode every batch norm is folded into the convolution beside it, so the cell runs three convolutions and
    two Swishes and no normalisation pass over the activations: the input BN into the 1x1 expansion (a 1x1
    convolution has no padding, so folding a per-channel affine map in front of it is exact), each BN that follows a
    convolution into that convolution. The folded weights are computed from the parameters and running statistics
    at every call — gradients (to inputs or parameters) are those of the unfolded cell — except while the cell is
    frozen, when they are computed once and reused until a parameter or statistic changes
    (:class:`~vaebm_hub.models.layers.FrozenCache`). The state dict is unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int, kernel_size: int = 5) -> None:
        super().__init__()
        if stride == 2:
            raise ValueError("down-sampling inverted-residual cells are not used by res_mbconv NVAEs")
        hidden = int(round(in_channels * expansion))
        layers: list[nn.Module] = [nn.UpsamplingNearest2d(scale_factor=2)] if stride == -1 else []
        layers += [
            BatchNorm(in_channels),
            ConvBNSwish(in_channels, hidden, 1),
            ConvBNSwish(hidden, hidden, kernel_size, groups=hidden),
            WNConv2d(hidden, out_channels, 1, weight_norm=False),
            BatchNorm(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.upsample = stride == -1
        self._folded = FrozenCache()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or reference_kernels_enabled():
            return self.conv(x)
        return self._folded_forward(x)

    def _parts(self) -> tuple[nn.Module, ...]:
        """``(bn_in, conv1, bn1, conv2, bn2, conv3, bn3)``: the batch norms and convolutions in order."""
        offset = 1 if self.upsample else 0
        bn_in, expand, depthwise, project, bn_out = (self.conv[offset + i] for i in range(5))
        return bn_in.bn, expand.conv[0], expand.conv[1], depthwise.conv[0], depthwise.conv[1], project, bn_out.bn

    def _folded_weights(self) -> tuple[torch.Tensor, ...]:
        """``(w1, b1, w2, b2, w3, b3)``: the three convolutions with every batch norm folded in, each kernel in its
        convolution's memory layout."""
        bn_in, conv1, bn1, conv2, bn2, conv3, bn3 = self._parts()
        scale_in, shift_in = _bn_scale_shift(bn_in)
        # 1x1 expand: conv(x * a + b) = conv'(x) with W' = W diag(a), bias W b; then its BN.
        s1, t1 = _bn_scale_shift(bn1)
        w1 = conv1.weight * scale_in.view(1, -1, 1, 1) * s1.view(-1, 1, 1, 1)
        b1 = (conv1.weight.flatten(1) @ shift_in).view(-1) * s1 + t1
        s2, t2 = _bn_scale_shift(bn2)
        s3, t3 = _bn_scale_shift(bn3)
        w2, w3 = conv2.weight * s2.view(-1, 1, 1, 1), conv3.weight * s3.view(-1, 1, 1, 1)
        laid = [laid_out(w, getattr(c, "channels_last", False)) for w, c in ((w1, conv1), (w2, conv2), (w3, conv3))]
        return laid[0], b1, laid[1], t2, laid[2], t3

    def _folded_forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = self._parts()
        sources = [t for m in parts for t in (m.weight, m.bias, getattr(m, "running_mean", None),
                                                getattr(m, "running_var", None)) if t is not None]  # fmt: skip
        layouts = tuple(getattr(c, "channels_last", False) for c in parts[1::2])
        w1, b1, w2, b2, w3, b3 = self._folded.get(sources, self._folded_weights, layouts)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        _, conv1, _, conv2, _, conv3, _ = parts
        h = swish(conv2d_forward_with(conv1, x, w1, b1))
        h = swish(conv2d_forward_with(conv2, h, w2, b2))
        return conv2d_forward_with(conv3, h, w3, b3)


def make_primitive(name: str, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if name == "res_bnswish":
        return BNSwishConv(in_channels, out_channels, stride)
    if name == "mconv_e6k5g0":
        return InvertedResidual(in_channels, out_channels, stride, expansion=6)
    if name == "mconv_e3k5g0":
        return InvertedResidual(in_channels, out_channels, stride, expansion=3)
    raise ValueError(f"unsupported NVAE primitive {name!r}")


class SqueezeExcitation(nn.Module):
    """Channel gating ``x * sigmoid(W2 relu(W1 mean_hw(x)))`` with ``max(C/16, 4)`` hidden units."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(channels // 16, 4)
        self.se = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.se(x.mean(dim=(2, 3)))
        return x * gate[:, :, None, None]


class FactorizedReduce(nn.Module):
    """Down-sampling skip: Swish, then four stride-2 1x1 WN-convs on shifted inputs, concatenated."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        quarter = out_channels // 4
        self.conv_1 = WNConv2d(in_channels, quarter, 1, stride=2, bias=True)
        self.conv_2 = WNConv2d(in_channels, quarter, 1, stride=2, bias=True)
        self.conv_3 = WNConv2d(in_channels, quarter, 1, stride=2, bias=True)
        self.conv_4 = WNConv2d(in_channels, out_channels - 3 * quarter, 1, stride=2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = swish(x)
        return torch.cat(
            [
                self.conv_1(out),
                self.conv_2(out[:, :, 1:, 1:]),
                self.conv_3(out[:, :, :, 1:]),
                self.conv_4(out[:, :, 1:, :]),
            ],
            dim=1,
        )


class BilinearUpsample(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


def make_skip(channels: int, stride: int) -> nn.Module:
    if stride == 1:
        return nn.Identity()
    if stride == 2:
        return FactorizedReduce(channels, CHANNEL_MULT * channels)
    return nn.Sequential(BilinearUpsample(), WNConv2d(channels, channels // CHANNEL_MULT, 1))


class Cell(nn.Module):
    """Residual cell ``skip(s) + residual_scale * SE(ops(s))``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        cell_type: str,
        primitives: tuple[str, ...],
        use_se: bool,
        residual_scale: float = 0.1,
    ) -> None:
        super().__init__()
        self.cell_type = cell_type
        self.residual_scale = residual_scale
        stride = stride_for(cell_type)
        self.skip = make_skip(in_channels, stride)
        self._ops = nn.ModuleList(
            make_primitive(name, in_channels if i == 0 else out_channels, out_channels, stride if i == 0 else 1)
            for i, name in enumerate(primitives)
        )
        self.se = SqueezeExcitation(out_channels) if use_se else None

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        skip = self.skip(s)
        for op in self._ops:
            s = op(s)
        if self.se is not None:
            s = self.se(s)
        return skip + self.residual_scale * s


class EncCombinerCell(nn.Module):
    """Encoder feature + 1x1 WN-conv of the decoder state: ``x_enc + conv(s_dec)``."""

    cell_type = "combiner_enc"

    def __init__(self, enc_channels: int, dec_channels: int) -> None:
        super().__init__()
        self.conv = WNConv2d(dec_channels, enc_channels, 1, bias=True)

    def forward(self, x_enc: torch.Tensor, s_dec: torch.Tensor) -> torch.Tensor:
        return x_enc + self.conv(s_dec)


class DecCombinerCell(nn.Module):
    """Decoder state and latent concatenated, then a 1x1 WN-conv: ``conv([s, z])``."""

    cell_type = "combiner_dec"

    def __init__(self, channels: int, latent_channels: int) -> None:
        super().__init__()
        self.conv = WNConv2d(channels + latent_channels, channels, 1, bias=True)

    def forward(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([s, z], dim=1))
