"""Claim 6 measured directly: the README's default MNIST command, timed on its own, and its pipeline scored as claim 1.

    python benchmarks/default_command.py [--output_dir outputs/default_command] [--threads N] [--no-score]

Runs exactly what a user types after ``accelerate config default`` (the README's set-up step) —
``accelerate launch examples/train.py --dataset_name mnist --output_dir <dir>`` — from the repository root, with the
config written to a temporary file (``--config_file``), so the user's own Accelerate config is neither read nor
changed. ``--threads`` (default: the physical cores this process may use, what ``accelerate config default`` gives a
CPU machine) is passed as ``--num_cpu_threads_per_process``. Nothing else may run on the machine meanwhile: the figure
is a wall time.

Stage 1 ends when the trainer first saves the pipeline (``model_index.json`` appears); stage 2 is the rest,
including the final save. The saved pipeline is then scored as claim 1 scores MNIST (``make reproduce``'s
``reproduction.claim_gain``: 500 samples, K = 0 / 10 / 30 / 100 and the pipeline's default, both feature spaces).

Writes ``benchmarks/results/default_command.json`` and ``default_command.md``. Claim 6 of ``make reproduce`` reads
the JSON while it is current (``reproduction.claim_wall_time.direct_result``).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from reproduction import claim_gain
from reproduction.claim_wall_time import COMMAND, DATASET, DIRECT_RESULT
from reproduction.results_doc import minutes
from reproduction.runs import load_pipeline, preset_record

from vaebm_hub.evaluation import evaluate_pipeline
from vaebm_hub.training.run import available_cores

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
ACCELERATE = [sys.executable, "-m", "accelerate.commands.accelerate_cli"]  # this environment's `accelerate`
TRAINER_OUTPUTS = ("model_index.json", "checkpoint-")  # what marks a folder as an earlier run of the trainer


def user_command(output_dir: Path | str, extra_args: tuple[str, ...] = ()) -> list[str]:
    """The README's command with ``--output_dir`` set (plus ``extra_args``: tests only)."""
    command = COMMAND.split()
    command[command.index("--output_dir") + 1] = str(output_dir)
    return [*command, *extra_args]


def clear_output_dir(output_dir: Path) -> None:
    """Remove an earlier run of this benchmark (the command refuses a folder that holds a run); refuse any other
    non-empty folder rather than delete it."""
    if not output_dir.exists():
        return
    entries = list(output_dir.iterdir())
    if entries and not any(e.name.startswith(TRAINER_OUTPUTS) for e in entries):
        raise ValueError(f"--output_dir {str(output_dir)!r} is not empty and holds no training run; pick another.")
    shutil.rmtree(output_dir)


def _watch_first_save(output_dir: Path, start: float, done: threading.Event, seen: dict) -> None:
    """Record the seconds until stage 1's pipeline is saved (the first ``model_index.json``)."""
    marker = output_dir / "model_index.json"
    while "stage_1" not in seen:
        finished = done.wait(0.2)
        if marker.is_file():
            seen["stage_1"] = time.perf_counter() - start
        if finished:
            return


def time_command(output_dir: Path, threads: int, extra_args: tuple[str, ...] = ()) -> dict:
    """Run the default command with an Accelerate default config (``threads`` per process); its wall times.
    ``extra_args`` (trainer flags) make it another command, which claim 6 does not count: for tests."""
    output_dir = output_dir.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "default_config.yaml"
        subprocess.run([*ACCELERATE, "config", "default", "--config_file", str(config)], check=True, cwd=REPO)
        launch = [*ACCELERATE, "launch", "--config_file", str(config), "--num_cpu_threads_per_process", str(threads),
                  *user_command(output_dir, extra_args)[2:]]  # fmt: skip
        done, seen = threading.Event(), {}
        start = time.perf_counter()
        watcher = threading.Thread(target=_watch_first_save, args=(output_dir, start, done, seen), daemon=True)
        watcher.start()
        try:
            subprocess.run(launch, check=True, cwd=REPO)
        finally:
            done.set()
            watcher.join()
        total = time.perf_counter() - start
    stage_1 = seen.get("stage_1")
    return {
        "command": " ".join(user_command("m", extra_args)),
        "launched_as": " ".join(["accelerate", *launch[len(ACCELERATE) :]]),
        "threads": threads,
        "seconds": round(total, 1),
        "stage_1_seconds": None if stage_1 is None else round(stage_1, 1),
        "stage_2_seconds": None if stage_1 is None else round(total - stage_1, 1),
    }


def score(output_dir: Path, threads: int, seed: int = 0) -> dict:
    """Claim 1's MNIST evaluation of the saved pipeline, with claim 1's verdict."""
    torch.set_num_threads(threads)
    pipe = load_pipeline(output_dir)
    evaluation = evaluate_pipeline(
        pipe, DATASET, num_samples=claim_gain.NUM_SAMPLES[DATASET], chain_lengths=claim_gain.chain_lengths(pipe),
        ood_set_names=[], seed=seed, output_dir=output_dir / "evaluation",
    )  # fmt: skip
    rows, check = claim_gain.scored_rows(evaluation)
    return {"rows": rows, "verdict": check}


def markdown(result: dict) -> str:
    lines = [
        f"The default MNIST command on its own ({result['machine']}, {result['threads']} torch thread(s) per process "
        f"after `accelerate config default`, torch {result['torch']}): `{result['command']}`.",
        "",
        "| stage 1 | stage 2 | whole command | target |",
        "|---|---|---|---|",
        f"| {minutes(result['stage_1_seconds'])} | {minutes(result['stage_2_seconds'])} | "
        f"**{minutes(result['seconds'])}** | <= 30 min |",
    ]
    if "verdict" in result:
        verdict, rows = result["verdict"], result["rows"]
        summary = claim_gain.verdict_summary(verdict, rows[-1]["langevin_steps"])
        lines += [
            "",
            f"Its pipeline scored as claim 1 scores MNIST: VAE samples with confidence > 0.9 "
            f"{verdict['vae_confident_fraction']:.2f}; {summary}. Claim 1's MNIST row "
            f"{'met' if verdict['met'] else 'not met'}.",
            "",
            "| K | FD_clf − floor | FD_rand − floor | precision | recall | conf > 0.9 |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['langevin_steps']} | {r['fd_minus_floor']:.2f} | {r['fd_rand_minus_floor']:.3f} | "
            f"{r['precision']:.3f} | {r['recall']:.3f} | {r['confident_fraction']:.3f} |"
            for r in rows
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    cores = available_cores()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", default="outputs/default_command", help="The command's --output_dir.")
    parser.add_argument("--threads", type=int, default=cores, help="Torch threads per process.")
    parser.add_argument("--score", action=argparse.BooleanOptionalAction, default=True, help="Score as claim 1.")
    parser.add_argument("--results", default=str(RESULTS), help="Where default_command.{json,md} go.")
    parser.add_argument(
        "train_args", nargs="*", help="Extra trainer flags after `--` (tests only: claim 6 counts the bare command)."
    )
    args = parser.parse_args(argv)
    output_dir = Path(args.output_dir)
    clear_output_dir(output_dir)
    result = {
        "machine": f"{platform.machine()}, {cores} physical cores",
        "cores": cores,
        "device": "cuda" if torch.cuda.is_available() else "cpu",  # what `accelerate config default` picks
        "torch": torch.__version__,
        "preset": preset_record(DATASET),
        **time_command(output_dir, args.threads, tuple(args.train_args)),
    }
    if args.score:
        result.update(score(output_dir, args.threads))
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / DIRECT_RESULT).write_text(json.dumps(result, indent=2) + "\n")
    (results / "default_command.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
