"""Checkpoint folders ``<output_dir>/checkpoint-<global step>``: atomic writes, discovery, pruning.

A checkpoint is written into ``.tmp-<name>`` next to its final place and renamed with ``os.replace`` only once every
process has finished writing, with ``training_state.json`` written last. A run killed mid-write (even ``kill -9``)
therefore leaves at most a stale ``.tmp-*`` folder, which is ignored and cleaned up at the next start; the last
complete checkpoint is never touched before the new one is committed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

CHECKPOINT_PREFIX = "checkpoint-"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
STATE_FILE = "training_state.json"


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


def resolve_resume(output_dir: str | os.PathLike, resume_from: str | None) -> Path | None:
    """The checkpoint to resume from: ``None``, ``"latest"`` (``None`` if there is none yet) or a folder path."""
    if resume_from is None:
        return None
    if resume_from == "latest":
        found = list_checkpoints(output_dir)
        return found[-1][1] if found else None
    path = Path(resume_from)
    if not path.is_absolute() and not path.exists():
        path = Path(output_dir) / resume_from
    if not (path / STATE_FILE).is_file():
        raise ValueError(
            f"--resume_from_checkpoint {resume_from!r} is not a complete checkpoint (no {STATE_FILE} in {path}); "
            f"pass 'latest' or a {CHECKPOINT_PREFIX}N folder of the output directory."
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


def prune_checkpoints(output_dir: str | os.PathLike, total_limit: int | None) -> list[Path]:
    """Keep the newest ``total_limit`` checkpoints; returns the removed folders."""
    if total_limit is None:
        return []
    found = list_checkpoints(output_dir)
    removed = [path for _, path in found[: max(0, len(found) - total_limit)]]
    for path in removed:
        shutil.rmtree(path)
    return removed
