"""Checkpoint folders ``<output_dir>/checkpoint-<global step>``: atomic writes, discovery, pruning.

A checkpoint is written into ``.tmp-<name>`` next to its final place and renamed with ``os.replace`` only once every
process has finished writing, with ``training_state.json`` written last. A run killed mid-write (even ``kill -9``)
therefore leaves at most a stale ``.tmp-*`` folder, which is ignored and cleaned up at the next start; the last
complete checkpoint is never touched before the new one is committed.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

CHECKPOINT_PREFIX = "checkpoint-"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
STATE_FILE = "training_state.json"
logger = logging.getLogger(__name__)


def checkpoint_dir(output_dir: str | os.PathLike, global_step: int) -> Path:
    return Path(output_dir) / f"{CHECKPOINT_PREFIX}{global_step}"


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints ``(global step, path)``, oldest first (folders holding ``training_state.json``)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = re.fullmatch(re.escape(CHECKPOINT_PREFIX) + r"(\d+)", path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def read_state(path: str | os.PathLike) -> dict:
    return json.loads((Path(path) / STATE_FILE).read_text())


STATE_KEYS = ("stage", "stage_step", "global_step", "step_offset", "num_processes")
FROZEN_VAE_DIR = "frozen_vae"


def _finite_safetensors(path: Path) -> str | None:
    """Why a safetensors file is unusable (unreadable, truncated, NaN/Inf), or ``None``."""
    try:
        tensors = load_file(path)
    except Exception as error:  # safetensors' own error types for bad headers and short files
        return f"{path.name} cannot be read ({error})"
    bad = [name for name, tensor in tensors.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    return f"{path.name} holds NaN/Inf in {bad[:3]}" if bad else None


def _intact_archive(path: Path) -> str | None:
    """Why a ``torch.save`` file is damaged (its zip CRCs, checked without unpickling anything), or ``None``."""
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError) as error:
        return f"{path.name} is not a readable archive ({error})"
    return f"{path.name} is corrupt (bad CRC in {broken})" if broken else None


def verify_checkpoint(path: str | os.PathLike) -> str | None:
    """Why checkpoint ``path`` cannot be resumed from or rolled back to — a missing or invalid state file, an
    unreadable, truncated or non-finite weights file, a damaged optimizer/RNG/trainer-state archive, a stage-2
    checkpoint without its frozen VAE — or ``None`` when every file checks out."""
    root = Path(path)
    try:
        state = json.loads((root / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError) as error:
        return f"{STATE_FILE} is missing or not valid JSON ({error})"
    if not isinstance(state, dict) or any(key not in state for key in STATE_KEYS):
        return f"{STATE_FILE} lacks {[k for k in STATE_KEYS if k not in (state if isinstance(state, dict) else {})]}"
    if state["stage"] not in ("vae", "ebm"):
        return f"{STATE_FILE} names an unknown stage {state['stage']!r}"
    weights = sorted(root.glob("model*.safetensors"))
    if not weights:
        return "no model*.safetensors"
    for file in weights:
        if reason := _finite_safetensors(file):
            return reason
    for rank in range(int(state["num_processes"])):
        if not (root / f"trainer_state_{rank}.pt").is_file():
            return f"trainer_state_{rank}.pt is missing"
    for file in sorted([*root.glob("*.bin"), *root.glob("*.pt"), *root.glob("*.pkl")]):
        if reason := _intact_archive(file):
            return reason
    if state["stage"] == "ebm":
        frozen = root / FROZEN_VAE_DIR
        if not (frozen / "config.json").is_file():
            return f"{FROZEN_VAE_DIR}/ (the stage-2 checkpoint's VAE) is missing"
        for file in sorted(frozen.glob("*.safetensors")) or [frozen / "diffusion_pytorch_model.safetensors"]:
            if reason := _finite_safetensors(file):
                return f"{FROZEN_VAE_DIR}/{reason}"
    return None


def resolve_resume(
    output_dir: str | os.PathLike, resume_from: str | None, verify: Callable[[Path], str | None] | None = None
) -> Path | None:
    """The checkpoint to resume from: ``None``, ``"latest"`` (the newest complete one; ``None`` if there is none) or
    a folder path. With ``verify`` (the trainer passes :func:`verify_checkpoint`), ``"latest"`` is the newest
    checkpoint that verifies — each one skipped is reported with the reason — and an explicit folder must verify."""
    if resume_from is None:
        return None
    if resume_from == "latest":
        for _, path in reversed(list_checkpoints(output_dir)):
            reason = verify(path) if verify is not None else None
            if reason is None:
                return path
            logger.warning("skipping %s for --resume_from_checkpoint latest: %s", path, reason)
            print(f"[resume] skipping {path.name}: {reason}", file=sys.stderr)
        return None
    path = Path(resume_from)
    if not path.is_absolute() and not path.exists():
        path = Path(output_dir) / resume_from
    if not (path / STATE_FILE).is_file():
        raise ValueError(
            f"--resume_from_checkpoint {resume_from!r} is not a complete checkpoint (no {STATE_FILE} in {path}); "
            f"pass 'latest' or a {CHECKPOINT_PREFIX}N folder of the output directory."
        )
    reason = verify(path) if verify is not None else None
    if reason is not None:
        raise ValueError(
            f"--resume_from_checkpoint {path} cannot be used: {reason}. Pass 'latest' to fall back to the newest "
            "checkpoint that verifies, or an older checkpoint-N."
        )
    return path


def remove_stale_temporaries(output_dir: str | os.PathLike) -> None:
    """Delete leftovers of interrupted writes (``.tmp-*`` and ``.trash-*`` folders)."""
    root = Path(output_dir)
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith((TMP_PREFIX, TRASH_PREFIX)) and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_directory(tmp: Path, final: Path) -> None:
    """Move the finished folder ``tmp`` to ``final``, replacing an existing ``final`` (renames only)."""
    trash = final.with_name(TRASH_PREFIX + final.name)
    if final.exists():
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    shutil.rmtree(trash, ignore_errors=True)


def write_atomically(
    final: Path,
    write_all_ranks: Callable[[Path], None],
    state: dict,
    *,
    is_main_process: bool,
    barrier: Callable[[], None],
) -> None:
    """Every process calls this. ``write_all_ranks(tmp)`` writes the folder's files (collectively); the main process
    then writes ``state`` as ``training_state.json`` and commits ``tmp`` to ``final``."""
    tmp = final.with_name(TMP_PREFIX + final.name)
    try:
        if is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        barrier()
        write_all_ranks(tmp)
        barrier()
        if is_main_process:
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
            commit_directory(tmp, final)
        barrier()
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        kept = list_checkpoints(final.parent)
        last = f"the last complete checkpoint, {kept[-1][1].name}, is intact" if kept else "no earlier checkpoint"
        raise OSError(
            errno.ENOSPC,
            f"disk full while writing {final.name} ({error}); {last}. Free space (or pass --checkpoints_total_limit) "
            "and continue with --resume_from_checkpoint latest.",
        ) from error


def prune_checkpoints(output_dir: str | os.PathLike, total_limit: int | None) -> list[Path]:
    """Keep the newest ``total_limit`` checkpoints; returns the removed folders."""
    if total_limit is None:
        return []
    found = list_checkpoints(output_dir)
    removed = [path for _, path in found[: max(0, len(found) - total_limit)]]
    for path in removed:
        shutil.rmtree(path)
    return removed
