"""Pre-flight checks of a saved pipeline folder, so that a partial, corrupt or mismatched save fails with a message
that names the file and the problem (diffusers' own errors are terse, or fall back to pickle files)."""

from __future__ import annotations

import importlib
import inspect
import json
import re
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
        value = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); the file is corrupt or partial.") from error
    if not isinstance(value, dict):
        raise ValueError(
            f"{path} holds a JSON {type(value).__name__}, not an object of settings; the file is corrupt or was "
            "replaced (re-save or re-download the pipeline)."
        )
    return value


def _check_config_types(model_class, config: dict, path: Path) -> None:
    """Each setting of ``config`` must have the type of its ``__init__`` default (int, float or bool; numbers may
    be given as ints where a float is expected), so that a hand-edited ``config.json`` fails here, naming the key,
    rather than deep inside the model's constructor."""
    for key, parameter in inspect.signature(model_class.__init__).parameters.items():
        default = parameter.default
        if key not in config or not isinstance(default, (bool, int, float)):
            continue
        value = config[key]
        if value is None and "None" in str(parameter.annotation):
            continue
        integer = isinstance(default, int) and parameter.annotation in (int, "int")
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
        if not ok:
            kind = "true or false" if isinstance(default, bool) else "an integer" if integer else "a number"
            raise ValueError(f"{path}: {key!r} must be {kind}, got {value!r}; fix or re-save the file.")


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


def check_weights_match_config(model_class, folder: Path, variant: str | None = None) -> dict:
    """Build ``model_class`` from ``folder/config.json`` on the meta device and compare its parameter shapes with
    the safetensors files; raise a ``ValueError`` naming the mismatched tensors. Returns the checked config."""
    config = _read_json(folder / "config.json")
    _check_config_types(model_class, config, folder / "config.json")
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
    return config


# What each component of a VAEBM pipeline must be (class names of this package).
COMPONENT_CLASSES = {
    "vae": ("VAEBMVAE", "VAEBMMLPVAE"),
    "ebm": ("VAEBMEnergyModel", "VAEBMEnergyMLP"),
    "scheduler": ("LangevinScheduler",),
}
COMPONENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def remote_code_components(root: str | Path, index: dict | None = None) -> dict[str, str]:
    """``{component: class name}`` of the components a remote-code flavour (``_class_name: [module, class]``, see
    :mod:`vaebm_hub.hub.remote_code`) ships as generated code of this package's classes: entries ``[stem, class]``
    (the code in ``<component>/<stem>.py``) with ``class`` one of :data:`COMPONENT_CLASSES`. With the package
    installed these load as the package's own classes, which the code files were generated from, so the files
    themselves are neither needed nor downloaded."""
    root = Path(root)
    index = _read_json(root / "model_index.json") if index is None else index
    if not isinstance(index.get("_class_name"), list):
        return {}
    return {
        name: entry[1]
        for name, entry in index.items()
        if name in COMPONENT_CLASSES
        and isinstance(entry, list)
        and len(entry) == 2
        and entry[1] in COMPONENT_CLASSES[name]
        and isinstance(entry[0], str)
        and COMPONENT_NAME.fullmatch(entry[0])
    }


def verify_saved_pipeline(root: str | Path, variant: str | None = None) -> None:
    """Check every component of a saved VAEBM pipeline before diffusers loads it: names that are plain identifiers
    (never ``..``), the classes the pipeline needs (a foreign class would load with random weights), configs and
    weights that agree, and a VAE and an energy network for the same image size. Component classes are resolved by
    library name at call time, as diffusers' loader does."""
    package = importlib.import_module(LIBRARY_NAME)
    root = Path(root)
    index = _read_json(root / "model_index.json")
    remote = remote_code_components(root, index)
    configs = {}
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or entry[0] is None:
            continue
        if not COMPONENT_NAME.fullmatch(name):
            raise ValueError(f"{root / 'model_index.json'} names a component {name!r}, which is not a folder name.")
        folder = root / name
        if not folder.is_dir():
            raise ValueError(f"{root / 'model_index.json'} names a component {name!r} but {folder} does not exist.")
        library = LIBRARY_NAME if name in remote else entry[0]
        wanted = COMPONENT_CLASSES.get(name)
        if wanted is not None and (library != LIBRARY_NAME or entry[1] not in wanted):
            raise ValueError(
                f"{root / 'model_index.json'} makes {name!r} a {entry[0]}.{entry[1]}, but a VAEBM pipeline needs "
                f"one of {', '.join(LIBRARY_NAME + '.' + c for c in wanted)} there; fix the file or re-save it."
            )
        cls = getattr(package, entry[1], None)
        if cls is None or library != LIBRARY_NAME:
            continue  # an extra component from another library: diffusers checks it
        if issubclass(cls, SchedulerMixin):
            _read_json(folder / "scheduler_config.json")
        else:
            configs[name] = check_weights_match_config(cls, folder, variant)
    vae, ebm = configs.get("vae", {}), configs.get("ebm", {})
    if "sample_size" in vae and "sample_size" in ebm:
        vae_shape = (vae.get("in_channels"), vae["sample_size"])
        ebm_shape = (ebm.get("in_channels"), ebm["sample_size"])
        if vae_shape != ebm_shape:
            raise ValueError(
                f"{root}: the VAE models {vae_shape[0]}x{vae_shape[1]}x{vae_shape[1]} images but the energy network "
                f"expects {ebm_shape[0]}x{ebm_shape[1]}x{ebm_shape[1]} (their config.json sample_size / in_channels "
                "disagree); re-save the pipeline from matching components."
            )
