"""Pre-flight checks of a saved pipeline folder, so that a partial, corrupt or mismatched save fails with a message
that names the file and the problem (diffusers' own errors are terse, or fall back to pickle files)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import torch
from diffusers import SchedulerMixin
from safetensors import safe_open

from ..constants import LIBRARY_NAME

WEIGHTS_NAME = "diffusion_pytorch_model"


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"{path} is missing; the pipeline folder is incomplete (re-save or re-download it).")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); the file is corrupt or partial.") from error


def _weight_files(folder: Path, variant: str | None) -> list[Path]:
    stem = WEIGHTS_NAME + (f".{variant}" if variant else "")
    single = folder / f"{stem}.safetensors"
    if single.is_file():
        return [single]
    index = folder / (
        f"{WEIGHTS_NAME}.safetensors.index.{variant}.json" if variant else f"{stem}.safetensors.index.json"
    )
    if index.is_file():
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise ValueError(f"{index} lists shards that are missing: {missing}; the download or save was partial.")
        return [folder / s for s in shards]
    pickled = folder / f"{stem}.bin"
    if pickled.is_file():  # saved with safe_serialization=False; read (by us and diffusers) with weights_only=True
        return [pickled]
    hint = f" (variant {variant!r})" if variant else ""
    raise ValueError(
        f"no safetensors weights{hint} in {folder}: expected {single.name}. The save was partial or the variant is "
        "wrong; re-save the pipeline, or pass the `variant` it was saved with."
    )


def read_weight_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from safetensors headers (no data is read), or of a ``.bin`` state dict loaded with
    ``weights_only=True`` onto the meta device; a truncated or corrupt file raises ``ValueError``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        if file.suffix == ".bin":
            try:
                state = torch.load(file, map_location="meta", weights_only=True)
            except Exception as error:  # unpickling refused (not plain tensors) or a corrupt file
                raise ValueError(f"{file} is not a plain tensor state dict (or is corrupt): {error}") from error
            shapes.update({key: tuple(value.shape) for key, value in state.items()})
            continue
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    shapes[key] = tuple(handle.get_slice(key).get_shape())
        except Exception as error:  # safetensors raises its own error types for bad headers and short files
            raise ValueError(f"{file} is corrupt or partial (e.g. an interrupted download): {error}") from error
    return shapes


def check_weights_match_config(model_class, folder: Path, variant: str | None = None) -> None:
    """Build ``model_class`` from ``folder/config.json`` on the meta device and compare its parameter shapes with
    the safetensors files; raise a ``ValueError`` naming the mismatched tensors."""
    config = _read_json(folder / "config.json")
    files = _weight_files(folder, variant)
    found = read_weight_shapes(files)
    try:
        with torch.device("meta"):
            model = model_class.from_config(config)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{folder / 'config.json'} does not describe a valid {model_class.__name__}: {error}"
        ) from error
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [
        f"{k}: config {expected[k]} vs file {found[k]}" for k in expected if k in found and expected[k] != found[k]
    ]
    if missing or unexpected or wrong:
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:4]}" if missing else "",
                f"unexpected {unexpected[:4]}" if unexpected else "",
                f"shape mismatch {wrong[:3]}" if wrong else "",
            )
            if part
        )
        raise ValueError(
            f"the weights in {files[0].parent} do not match its config.json ({model_class.__name__}): {details}. "
            "Were config.json and the weights saved from different models?"
        )


def verify_saved_pipeline(root: str | Path, variant: str | None = None) -> None:
    """Check every component of a saved VAEBM pipeline before diffusers loads it. Component classes are resolved by
    library name at call time, as diffusers' loader does."""
    package = importlib.import_module(LIBRARY_NAME)
    root = Path(root)
    index = _read_json(root / "model_index.json")
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or entry[0] is None:
            continue
        folder = root / name
        if not folder.is_dir():
            raise ValueError(f"{root / 'model_index.json'} names a component {name!r} but {folder} does not exist.")
        cls = getattr(package, entry[1], None)
        if cls is None or entry[0] != LIBRARY_NAME:
            continue  # a component from another library: diffusers checks it
        if issubclass(cls, SchedulerMixin):
            _read_json(folder / "scheduler_config.json")
        else:
            check_weights_match_config(cls, folder, variant)
