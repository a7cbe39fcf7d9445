"""Import official NVAE checkpoints (``.pt`` with ``state_dict`` and a pickled ``argparse.Namespace``) as
:class:`~vaebm_hub.models.VAEBMVAE`.

``VAEBMVAE`` mirrors NVAE's module names, so conversion is: read the args into a config, drop the
``weight_normalized`` alias keys (NVAE registers the raw weight of its non-weight-normalised convs twice) after
checking they equal ``weight``, and ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

import os
from argparse import Namespace
from typing import Any

import torch

from ..models.modeling_vae import VAEBMVAE
from .loading import check_finite_state_dict, load_official_checkpoint

ALIAS_SUFFIX = ".weight_normalized"

# What the official loader fills in for checkpoints older than these options (vaebm_reference.md §5).
LEGACY_ARG_DEFAULTS = {"ada_groups": False, "min_groups_per_scale": 1, "num_x_bits": 8, "num_nf": 0}

COPIED_ARGS = (
    "num_channels_enc", "num_channels_dec", "num_latent_scales", "num_groups_per_scale", "num_latent_per_group",
    "ada_groups", "min_groups_per_scale", "num_preprocess_blocks", "num_preprocess_cells", "num_postprocess_blocks",
    "num_postprocess_cells", "num_cell_per_cond_enc", "num_cell_per_cond_dec", "num_mixture_dec", "num_x_bits",
    "num_nf", "use_se", "res_dist", "arch_instance",
)  # fmt: skip

FIXED_SIZES = {"mnist": 32, "omniglot": 32, "stacked_mnist": 32, "cifar10": 32, "imagenet_32": 32,
               "imagenet_64": 64, "celeba_64": 64, "celeba_256": 256, "ffhq": 256}  # fmt: skip
GREY_DATASETS = {"mnist", "omniglot"}


def image_size_for(dataset: str) -> int:
    """NVAE's input size for a dataset name (``lsun_*_N`` carries its size as a suffix; MNIST is padded to 32)."""
    if dataset in FIXED_SIZES:
        return FIXED_SIZES[dataset]
    suffix = dataset.rsplit("_", 1)[-1]
    if dataset.startswith("lsun") and suffix.isdigit():
        return int(suffix)
    raise ValueError(f"unsupported NVAE dataset {dataset!r}; supported: {sorted(FIXED_SIZES)} and lsun_*_<size>")


def vae_config_from_nvae_args(args: Namespace | dict[str, Any]) -> dict[str, Any]:
    """``VAEBMVAE`` keyword arguments equivalent to an NVAE training ``args`` namespace."""
    args = dict(vars(args) if isinstance(args, Namespace) else args)
    for key, value in LEGACY_ARG_DEFAULTS.items():
        args.setdefault(key, value)
    missing = [k for k in (*COPIED_ARGS, "dataset") if k not in args]
    if missing:
        raise ValueError(f"the checkpoint's args lack {missing}; is this an NVAE training checkpoint?")
    if args["arch_instance"] != "res_mbconv":
        raise ValueError(
            f"unsupported NVAE option arch_instance={args['arch_instance']!r}; only 'res_mbconv' is supported"
        )
    dataset = args["dataset"]
    if dataset in GREY_DATASETS:
        decoder = "bernoulli"
    elif args["num_mixture_dec"] == 1:
        decoder = "normal"
    else:
        decoder = "discretized_logistic_mixture"
    config = {key: args[key] for key in COPIED_ARGS}
    config.update(
        in_channels=1 if dataset in GREY_DATASETS else 3,
        sample_size=image_size_for(dataset),
        decoder_distribution=decoder,
    )
    return config


def strip_alias_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop ``*.weight_normalized`` aliases after checking each equals its ``*.weight``."""
    out = {}
    for key, value in state_dict.items():
        if key.endswith(ALIAS_SUFFIX):
            base = key[: -len(ALIAS_SUFFIX)] + ".weight"
            if base not in state_dict or not torch.equal(state_dict[base], value):
                raise ValueError(f"alias key {key!r} does not match {base!r}; the checkpoint is inconsistent")
            continue
        out[key] = value
    return out


def load_official_nvae(path: str | os.PathLike) -> VAEBMVAE:
    """Build a ``VAEBMVAE`` from an official NVAE checkpoint, in eval mode (batch norm uses running statistics).

    Raises ``ValueError`` for unsupported options, corrupt files or state dicts that do not fit the args.
    """
    return vae_from_checkpoint(load_official_checkpoint(path, allow_namespace=True), os.fspath(path))


def vae_from_checkpoint(checkpoint: dict, source: str = "checkpoint") -> VAEBMVAE:
    """``VAEBMVAE`` from an already loaded NVAE checkpoint dict (``state_dict`` + ``args``)."""
    if "state_dict" not in checkpoint or "args" not in checkpoint:
        raise ValueError(f"{source!r} is not an NVAE checkpoint: expected the keys 'state_dict' and 'args'")
    config = vae_config_from_nvae_args(checkpoint["args"])
    state_dict = strip_alias_keys(checkpoint["state_dict"])
    check_finite_state_dict(state_dict, source)
    with torch.device("meta"):  # shapes first: absurd args must not allocate gigabytes before they are refused
        expected = VAEBMVAE(**config).state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = [k for k in expected if k in state_dict and expected[k].shape != state_dict[k].shape]
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"{source!r} does not match the architecture its args describe: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, wrong shapes {wrong_shape[:5]}"
        )
    vae = VAEBMVAE(**config)
    vae.load_state_dict(state_dict, strict=True)
    return vae.eval()
