"""Which files of a saved pipeline folder go to the Hub, and copying exactly those into a clean staging folder.

The per-folder patterns are those :meth:`VAEBMPipeline.download` fetches (``HUB_ALLOW_PATTERNS``), applied only to the
component folders that ``model_index.json`` names and only one level deep — so trainer leftovers (``checkpoint-*/``,
``logs/``, ``ebm_ema/``, ``*.bin``, optimizer states) never match, even if they hold a ``config.json``.
"""

from __future__ import annotations

import json
import os
import shutil
from fnmatch import fnmatchcase
from pathlib import Path

from ..constants import HUB_ALLOW_PATTERNS

SAMPLE_GRID_NAME = "samples.png"
ROOT_FILES = tuple(p for p in HUB_ALLOW_PATTERNS if "/" not in p) + (SAMPLE_GRID_NAME,)
COMPONENT_PATTERNS = tuple(p.split("/", 1)[1] for p in HUB_ALLOW_PATTERNS if p.startswith("*/"))
CONFIG_NAMES = ("config.json", "scheduler_config.json")


def read_model_index(folder: str | os.PathLike) -> dict:
    """The parsed ``model_index.json`` of a saved pipeline folder."""
    path = Path(folder) / "model_index.json"
    if not path.is_file():
        raise ValueError(
            f"{folder} is not a saved pipeline folder (no model_index.json); save one with `pipe.save_pretrained(dir)`"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def component_entries(index: dict) -> dict[str, list]:
    """``{folder: [library, class]}`` for every component ``model_index.json`` declares (skips ``None`` ones)."""
    return {
        name: value
        for name, value in index.items()
        if not name.startswith("_") and isinstance(value, list) and len(value) == 2 and value[0] is not None
    }


def remote_code_files(index: dict) -> list[str]:
    """The code files a remote-code flavour (``_class_name`` given as ``[module, class]``) names in its index."""
    if not isinstance(index.get("_class_name"), list):
        return []
    components = [f"{name}/{library}.py" for name, (library, _) in component_entries(index).items()]
    return [f"{index['_class_name'][0]}.py", *components]


def pipeline_files(folder: str | os.PathLike, variant: str | None = None) -> list[str]:
    """Relative POSIX paths of the files that make up the saved pipeline in ``folder``, sorted.

    Root: ``model_index.json`` (plus ``README.md`` / ``samples.png`` if present). Each component folder named in
    ``model_index.json``: its config and safetensors weights (only the ``variant``'s weights when one is given), and
    for a remote-code flavour the code files its index names.
    """
    folder = Path(folder)
    index = read_model_index(folder)
    files = [name for name in ROOT_FILES if (folder / name).is_file()]
    files += [path for path in remote_code_files(index) if (folder / path).is_file()]
    for name in component_entries(index):
        sub = folder / name
        if not sub.is_dir():
            raise ValueError(f"model_index.json names component {name!r} but {sub} is not a folder")
        present = sorted(p.name for p in sub.iterdir() if p.is_file())
        chosen = [f for f in present if any(fnmatchcase(f, pattern) for pattern in COMPONENT_PATTERNS)]
        if variant is not None:
            chosen = [f for f in chosen if f in CONFIG_NAMES or f".{variant}." in f]
        if "config.json" in chosen and not any(f.endswith(".safetensors") for f in chosen):
            found = ", ".join(present) or "nothing"
            raise ValueError(
                f"component {name!r} has no safetensors weights{f' for variant {variant!r}' if variant else ''} "
                f"(found: {found}); re-save the pipeline with `save_pretrained(dir, safe_serialization=True)`"
            )
        files += [f"{name}/{f}" for f in chosen]
    return sorted(files)


def stage_pipeline(pipeline_or_dir, dest: str | os.PathLike, variant: str | None = None) -> list[str]:
    """Write the pipeline files into the empty folder ``dest``: save a pipeline object there with safetensors, or copy
    the :func:`pipeline_files` of a saved folder. Returns the staged files (relative POSIX paths)."""
    dest = Path(dest)
    if isinstance(pipeline_or_dir, (str, os.PathLike)):
        source = Path(pipeline_or_dir)
        for rel in pipeline_files(source, variant):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, dest / rel)
    elif hasattr(pipeline_or_dir, "save_pretrained"):
        pipeline_or_dir.save_pretrained(dest, safe_serialization=True, variant=variant)
    else:
        raise ValueError(
            f"expected a VAEBMPipeline or the path of a saved pipeline folder, got {type(pipeline_or_dir).__name__}"
        )
    return pipeline_files(dest, variant)
