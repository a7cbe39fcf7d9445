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
from .results_doc import DEFAULT_COMMAND, results_markdown
from .runs import RUNS, recorded_train_seconds, run_folder, train_key, training_tasks, with_bases
from .schedule import Task, run_tasks

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


# Claims that read one memoised evaluation (Context.evaluation) are evaluated in one process, in this order: 1 and
# 2 share the digits rows, 1 and 6 the MNIST rows.
SHARED_EVALUATIONS = (1, 2, 6)


def _evaluate(claims: tuple[int, ...], part: str | None, context: dict, num_threads: int) -> dict:
    """Task function: run ``claims`` in order in a fresh :class:`Context` (or, with ``part``, that part of the one
    claim); ``{"part": part, "claims": {claim: (result, seconds)}}``."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    ctx, results = Context(**context), {}
    try:
        for claim in claims:
            start = time.perf_counter()
            result = CLAIMS[claim].evaluate(ctx, part) if part is not None else CLAIMS[claim].run(ctx)
            results[claim] = (result, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous_threads)
    return {"part": part, "claims": results}


def _claim_parts(ctx: Context, claim: int) -> dict[str, tuple[str, ...]]:
    """``{part: training runs}`` of a claim evaluated in parts; empty for a claim evaluated whole."""
    parts = getattr(CLAIMS[claim], "parts", None)
    return parts(ctx) if parts is not None else {}


def claim_tasks(claims: Sequence[int], ctx: Context, trained_now: set[str], num_threads: int = 1) -> list[Task]:
    """The evaluation tasks of ``claims``: the claims of :data:`SHARED_EVALUATIONS` together, a claim with parts
    one task per part, every other claim alone; each needs the training tasks of the runs it reads (and the runs
    they build on) that are in ``trained_now``. A claim module with parts has ``parts(ctx)`` (``{part: training
    runs}``), ``evaluate(ctx, part)`` and ``run(ctx, part_results={part: evaluate's result})``."""
    context = dict(fast=ctx.fast, cache_dir=ctx.cache_dir, output_dir=ctx.output_dir, seed=ctx.seed)
    shared = tuple(c for c in SHARED_EVALUATIONS if c in claims)
    units = [(shared, None, {r for c in shared for r in CLAIMS[c].training_runs(ctx)})] if shared else []
    for claim in (c for c in claims if c not in shared):
        parts = _claim_parts(ctx, claim)
        units += [((claim,), part, set(runs)) for part, runs in parts.items()] or [
            ((claim,), None, set(CLAIMS[claim].training_runs(ctx)))
        ]
    return [
        Task(
            f"claim:{','.join(map(str, unit))}" + (f":{part}" if part else ""),
            _evaluate,
            (unit, part, context, num_threads),
            needs=tuple(train_key(r) for r in RUNS if r in with_bases(runs) & trained_now),
        )
        for unit, part, runs in units
    ]


def _write_result(output_dir: Path, claim: int, result: dict, seconds: float, fast: bool, command: str) -> dict:
    """``reproduce_<claim>.json``, with the command that produced it (the report names it when a later command of
    other claims rewrites the report's header)."""
    result = _strict_json({**result, "wall_seconds": round(seconds, 1), "fast": fast, "command": command})
    (output_dir / f"reproduce_{claim}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def run_claims(
    claims: Sequence[int] = tuple(CLAIMS),
    *,
    fast: bool = False,
    output_dir: str | Path = "benchmarks/results",
    cache_dir: str | Path = "outputs/reproduce",
    docs_path: str | Path | None = "docs/results.md",
    command: str = "",
    seed: int = 0,
    max_workers: int = 2,
    num_threads: int = 1,
) -> dict[int, dict]:
    """Run each claim in ``claims`` (training what is not cached), write ``<output_dir>/reproduce_<claim>.json``
    and, with ``docs_path``, the markdown report; returns ``{claim: result}``.

    Training runs and claim evaluations are tasks of :func:`.schedule.run_tasks` in ``max_workers`` processes
    (``1``: this one): a free worker takes a training run first, else an evaluation whose runs are trained. Each
    claim's JSON is written as soon as it is complete, so a failing task loses no other claim's result. A claim
    evaluated in parts reports the sum of its parts' seconds. Evaluations use ``num_threads`` torch threads,
    training one."""
    unknown = sorted(set(claims) - set(CLAIMS))
    if unknown:
        raise ValueError(f"unknown claims {unknown}; choose from {sorted(CLAIMS)}")
    claims, command = sorted(set(claims)), command or DEFAULT_COMMAND
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(fast=fast, cache_dir=Path(cache_dir), output_dir=output_dir, seed=seed)
    start = time.perf_counter()
    runs = with_bases(run for claim in claims for run in CLAIMS[claim].training_runs(ctx))
    training = training_tasks(runs, ctx.cache_dir, fast)
    training_keys = {task.key for task in training}
    trained_now = {run for run in runs if train_key(run) in training_keys}
    results, parts = {}, {}  # {claim: result}, {claim: {part: (result, seconds)}}
    ended = {}  # {task key: seconds from the command's start to the task's end}

    def collect(key: str, outcome) -> None:
        ended[key] = time.perf_counter() - start
        if not key.startswith("claim:"):
            return
        for claim, (result, seconds) in outcome["claims"].items():
            if outcome["part"] is None:
                results[claim] = _write_result(output_dir, claim, result, seconds, fast, command)
                continue
            parts.setdefault(claim, {})[outcome["part"]] = (result, seconds)
            if set(parts[claim]) == set(_claim_parts(ctx, claim)):  # the last part: the claim is complete
                part_results = {part: r for part, (r, _) in parts[claim].items()}
                claim_result = CLAIMS[claim].run(ctx, part_results=part_results)
                seconds = sum(s for _, s in parts[claim].values())
                results[claim] = _write_result(output_dir, claim, claim_result, seconds, fast, command)

    tasks = training + claim_tasks(claims, ctx, trained_now, num_threads)
    done = run_tasks(tasks, max_workers, on_finish=collect, desc="reproduce")
    train_seconds = {}
    for run in (r for r in RUNS if r in runs):
        if train_key(run) in done:
            train_seconds[run] = {"seconds": round(done[train_key(run)][0], 1), "from_cache": False}
        else:
            recorded = recorded_train_seconds(run_folder(ctx.cache_dir, run, fast))
            train_seconds[run] = {"seconds": recorded, "from_cache": True}
    started = {key: ended[key] - seconds for key, (_, seconds) in done.items()}
    meta = {
        "command": command,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "train_seconds": train_seconds,
        "workers": max_workers,
        # when each task ran, in minutes from the command's start: where the wall time goes
        "timeline_minutes": {
            key: [round(started[key] / 60, 1), round(ended[key] / 60, 1)] for key in sorted(started, key=started.get)
        },
        "fast": fast,
        "machine": f"{platform.machine()}, {num_threads} torch threads, torch {torch.__version__}",
    }
    (output_dir / "reproduce_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if docs_path is not None:
        write_report(output_dir, docs_path)
    return {claim: results[claim] for claim in claims}


def write_report(output_dir: str | Path, docs_path: str | Path) -> Path:
    """(Re)write the markdown report from the JSON files of the last run in ``output_dir`` (no evaluation)."""
    output_dir, docs_path = Path(output_dir), Path(docs_path)
    meta = json.loads((output_dir / "reproduce_meta.json").read_text())
    docs_path.parent.mkdir(parents=True, exist_ok=True)
    results = collect_results(output_dir, meta["fast"])
    docs_path.write_text(results_markdown(results, meta, output_dir, docs_path.parent))
    return docs_path
