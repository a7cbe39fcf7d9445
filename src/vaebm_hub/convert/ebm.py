"""Import official VAEBM energy-network checkpoints (``EBM_{iter}.pth`` = ``{'model': state_dict, ...}``)."""

from __future__ import annotations

import os

import torch

from ..models.modeling_ebm import EBM_LAYOUTS, VAEBMEnergyModel
from .loading import check_finite_state_dict, load_official_checkpoint

_SHOWN = 6  # mismatches listed per category in error messages


def _shapes(state_dict: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state_dict.items()}


def _expected_shapes(layout: str, in_channels: int, n_channel: int) -> dict[str, tuple[int, ...]]:
    sample_size = EBM_LAYOUTS[layout].sample_size
    with torch.device("meta"):
        model = VAEBMEnergyModel(in_channels, sample_size, layout=layout, n_channel=n_channel)
    return _shapes(model.state_dict())


def _mismatches(found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> dict[str, list[str]]:
    """Differences between two ``key -> shape`` maps, by kind (missing, unexpected, wrong shape)."""
    return {
        "missing": [key for key in expected if key not in found],
        "unexpected": [key for key in found if key not in expected],
        "wrong shape (got vs expected)": [
            f"{key}: {found[key]} vs {shape}"
            for key, shape in expected.items()
            if key in found and found[key] != shape
        ],
    }


def _describe(mismatches: dict[str, list[str]]) -> str:
    parts = []
    for kind, items in mismatches.items():
        if items:
            more = f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
            parts.append(f"{kind}: {', '.join(items[:_SHOWN])}{more}")
    return "; ".join(parts)


def _state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    state_dict = checkpoint.get("model", checkpoint)
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(
            "Expected an official EBM checkpoint {'model': state_dict} (or a bare state_dict of tensors)."
        )
    if "conv1.weight" not in state_dict or state_dict["conv1.weight"].dim() != 4:
        raise ValueError(f"No 4-D stem 'conv1.weight' in the EBM state_dict (keys start {list(state_dict)[:5]}).")
    return state_dict


def load_official_ebm(
    path: str | os.PathLike,
    layout: str | None = None,
    in_channels: int | None = None,
    sample_size: int | None = None,
) -> VAEBMEnergyModel:
    """Build a :class:`VAEBMEnergyModel` from an official VAEBM ``.pth`` and load its weights (``strict=True``).

    ``n_channel`` and ``in_channels`` are read from the stem ``conv1.weight`` ``(C, in_channels, 3, 3)``; the layout
    is the preset whose full ``key -> shape`` map equals the checkpoint's (pass ``layout=`` if several do).
    ``sample_size`` defaults to the layout's design size (cifar32 32, celeba64/lsun64 64, celeba256 256, mnist 32).
    The data-dependent init is not re-run: the checkpoint already holds the initialised weights. Returns the model
    in eval mode.
    """
    try:
        checkpoint = load_official_checkpoint(path)
    except ValueError as error:
        if "argparse.Namespace" not in str(error):
            raise
        raise ValueError(  # only NVAE checkpoints pickle their training args
            f"{os.fspath(path)!r} stores an argparse.Namespace, as NVAE checkpoints do, but was given as the energy "
            "network (EBM_*.pth). Pass it as the NVAE (--nvae) and the EBM file as --ebm."
        ) from error
    state_dict = _state_dict(checkpoint)
    check_finite_state_dict(state_dict, os.fspath(path))
    n_channel, found_in_channels = state_dict["conv1.weight"].shape[:2]
    if in_channels is not None and in_channels != found_in_channels:
        raise ValueError(f"in_channels={in_channels} but the checkpoint's stem takes {found_in_channels} channels.")
    found = _shapes(state_dict)
    if layout is not None:
        if layout not in EBM_LAYOUTS:
            raise ValueError(f"Unknown EBM layout {layout!r}; choose one of: {', '.join(EBM_LAYOUTS)}.")
        candidates = [layout]
    else:
        candidates = list(EBM_LAYOUTS)
    reports = {name: _mismatches(found, _expected_shapes(name, found_in_channels, n_channel)) for name in candidates}
    counts = {name: sum(map(len, report.values())) for name, report in reports.items()}
    matches = [name for name, count in counts.items() if count == 0]
    if not matches:
        closest = min(counts, key=counts.get)
        raise ValueError(
            f"The state_dict in {str(path)!r} ({len(found)} keys, n_channel={n_channel}) fits no EBM layout "
            f"({', '.join(candidates)}); closest is {closest!r}: {_describe(reports[closest])}."
        )
    if len(matches) > 1:
        raise ValueError(f"The state_dict in {str(path)!r} fits several layouts {matches}; pass layout=.")
    layout = matches[0]
    model = VAEBMEnergyModel(
        in_channels=found_in_channels,
        sample_size=sample_size if sample_size is not None else EBM_LAYOUTS[layout].sample_size,
        layout=layout,
        n_channel=n_channel,
    )
    model.load_state_dict(state_dict, strict=True)
    return model.eval()
