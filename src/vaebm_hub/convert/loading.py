"""Safe loading of official NVlabs ``.pt``/``.pth`` checkpoints (never arbitrary unpickling)."""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def load_official_checkpoint(path: str | os.PathLike, *, allow_namespace: bool = False) -> dict:
    """Load a checkpoint dict with ``torch.load(path, map_location="cpu", weights_only=True)``.

    Only tensors and plain containers are unpickled. ``allow_namespace=True`` additionally allow-lists
    ``argparse.Namespace`` (NVAE stores its training ``args`` as one), for this call only.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file is corrupt or partial, needs any other Python global, or does not hold a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint file at {str(path)!r}.")
    check_archive_integrity(path)
    allowed = torch.serialization.safe_globals([argparse.Namespace]) if allow_namespace else contextlib.nullcontext()
    try:
        with allowed:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _REFUSED_GLOBAL.search(str(error))
        if refused is None:
            raise ValueError(
                f"Checkpoint {str(path)!r} is corrupt or partial (unpickling failed: {error})."
            ) from error
        hint = " Pass allow_namespace=True to allow it." if refused.group(1) == "argparse.Namespace" else ""
        raise ValueError(
            f"Checkpoint {str(path)!r} needs the Python global {refused.group(1)!r}, which was refused: vaebm_hub "
            f"loads only tensors and plain containers and never unpickles arbitrary objects.{hint}"
        ) from error
    except PermissionError:
        raise
    except (RuntimeError, EOFError, KeyError, OSError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"Checkpoint {str(path)!r} is corrupt or partial (e.g. an interrupted download); fetch it again. "
            f"torch.load said: {type(error).__name__}: {error}"
        ) from error
    if not isinstance(checkpoint, dict):
        raise ValueError(f"Checkpoint {str(path)!r} holds a {type(checkpoint).__name__}, expected a dict.")
    return checkpoint


def check_archive_integrity(path: Path) -> None:
    """Every member of a ``torch.save`` zip archive against its CRC (torch's reader does not check them, so a few
    flipped bytes would load as a silently wrong weight); legacy non-zip files are left to ``torch.load``."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ValueError(f"Checkpoint {str(path)!r} is a damaged archive ({error}); fetch it again.") from error
    if broken is not None:
        raise ValueError(
            f"Checkpoint {str(path)!r} is corrupt: the CRC of {broken!r} does not match its data (a damaged copy "
            "or download); fetch the file again."
        )


def check_finite_state_dict(state_dict: dict, source: str) -> None:
    """Refuse a state dict holding NaN/Inf, naming the tensors (a converted pipeline would sample garbage)."""
    bad = [
        name
        for name, value in state_dict.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()
    ]
    if bad:
        raise ValueError(f"{source!r} holds NaN/Inf values in {len(bad)} tensor(s), e.g. {bad[:3]}; refusing it.")
