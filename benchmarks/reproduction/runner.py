"""Run the reproduction claims, write ``reproduce_<claim>.json`` per claim and the ``docs/results.md`` report."""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from . import claim_gain, claim_modes, claim_ood, claim_sampling_space, claim_toy, claim_wall_time
from .context import Context
from .results_doc import results_markdown

CLAIMS = {1: claim_gain, 2: claim_sampling_space, 3: claim_modes, 4: claim_ood, 5: claim_toy, 6: claim_wall_time}


def _strict_json(value):
    """NaN/Inf → None so that the files are strict JSON."""
    if isinstance(value, dict):
        return {str(k): _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def collect_results(output_dir: Path, fast: bool) -> dict[int, dict]:
    """Every claim's latest result in ``output_dir`` of the same size (full or fast), so that re-running a subset of
    the claims keeps the others in the report."""
    results = {}
    for claim in CLAIMS:
        path = Path(output_dir) / f"reproduce_{claim}.json"
        if path.is_file():
            result = json.loads(path.read_text())
            if result.get("fast") == fast:
                results[claim] = result
    return results


def run_claims(
    claims: Sequence[int] = tuple(CLAIMS),
    *,
    fast: bool = False,
    output_dir: str | Path = "benchmarks/results",
    cache_dir: str | Path = "outputs/reproduce",
    docs_path: str | Path | None = "docs/results.md",
    command: str = "",
    seed: int = 0,
) -> dict[int, dict]:
    """Run each claim in ``claims`` (training what is not cached), write ``<output_dir>/reproduce_<claim>.json``
    and, with ``docs_path``, the markdown report; returns ``{claim: result}``."""
    unknown = sorted(set(claims) - set(CLAIMS))
    if unknown:
        raise ValueError(f"unknown claims {unknown}; choose from {sorted(CLAIMS)}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(fast=fast, cache_dir=Path(cache_dir), output_dir=output_dir, seed=seed)
    start = time.perf_counter()
    ctx.train_runs(run for claim in claims for run in CLAIMS[claim].training_runs(ctx))
    results = {}
    for claim in claims:
        claim_start = time.perf_counter()
        result = CLAIMS[claim].run(ctx)
        result["wall_seconds"] = round(time.perf_counter() - claim_start, 1)
        result["fast"] = fast
        results[claim] = _strict_json(result)
        (output_dir / f"reproduce_{claim}.json").write_text(json.dumps(results[claim], indent=2) + "\n")
    meta = {
        "command": command,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "train_seconds": ctx.train_seconds,
        "fast": fast,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
    }
    (output_dir / "reproduce_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if docs_path is not None:
        write_report(output_dir, docs_path)
    return results


def write_report(output_dir: str | Path, docs_path: str | Path) -> Path:
    """(Re)write the markdown report from the JSON files of the last run in ``output_dir`` (no evaluation)."""
    output_dir, docs_path = Path(output_dir), Path(docs_path)
    meta = json.loads((output_dir / "reproduce_meta.json").read_text())
    docs_path.parent.mkdir(parents=True, exist_ok=True)
    results = collect_results(output_dir, meta["fast"])
    docs_path.write_text(results_markdown(results, meta, output_dir, docs_path.parent))
    return docs_path
