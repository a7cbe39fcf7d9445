"""Stage 2 of the ``mnist`` preset with the chains' energy network in float32 (VAEBM) or bfloat16 autocast
(``EBMTraining.chain_dtype``): iteration time on one and two torch threads, and how far the bfloat16 chains' input
gradient is from float32's.

    python benchmarks/chain_precision.py [--repeats 5] [--iterations 3]

Randomly initialised networks of the preset's sizes (time does not depend on the weights), MNIST-shaped random
images, the trainer's ``StageRunner.optimizer_step`` (channels-last, as the trainer runs on a CPU), timed by
``benchmarks/train.py``'s ``steps_per_second``: within each repeat the variants take turns, so load changes on a
shared machine hit them alike. Writes
``benchmarks/results/chain_precision.{json,md}`` (medians over repeats).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
from pathlib import Path

import torch
from train import RESULTS, _Dataset, runner_for, steps_per_second

from vaebm_hub.pipelines.potential import potential_and_grad
from vaebm_hub.presets import get_preset
from vaebm_hub.training.chain_precision import AutocastEnergy, native_bfloat16
from vaebm_hub.training.components import new_ebm, new_vae
from vaebm_hub.training.ebm_stage import EBMStage

PRESET = "mnist"
DTYPES = ("float32", "bfloat16")


def build_stage(chain_dtype: str, dataset: _Dataset, scratch: Path):
    """A prepared stage-2 runner of the preset with ``chain_dtype``; the same networks for every dtype."""
    preset = get_preset(PRESET)
    settings = dataclasses.replace(preset.ebm_training, chain_dtype=chain_dtype)
    vae = new_vae(preset, dataset.sample_shape, seed=0).eval()
    ebm = new_ebm(settings, dataset.sample_shape, seed=1)
    stage = EBMStage(
        vae, ebm, settings, preset.sampling, seed=0, process_index=0, device=torch.device("cpu"), num_sample_images=4
    )
    stage.channels_last = True  # the trainer's CPU layout (train.steps_per_second sets it per runner)
    runner = runner_for(stage, dataset, scratch)
    stage.prepare(runner.accelerator, dataset, fresh=True)
    return runner


def gradient_error(runner, batch: int = 16) -> dict[str, float]:
    """The chains' potential gradient ``dU/deps`` with the energy network in bfloat16 against float32, at fresh
    noise: the relative error of the whole gradient and of its energy part ``dE/deps`` (the prior part is exact)."""
    stage = runner.stage
    eps = stage.vae.sample_noise(batch, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    grads = {}
    for name, ebm in (("float32", stage.ebm), ("bfloat16", AutocastEnergy(stage.ebm, torch.bfloat16))):
        _, grads[name], _ = potential_and_grad(stage.vae, ebm, eps)
    energy_part = grads["float32"] - eps  # U = E + |eps|^2 / 2
    diff = grads["bfloat16"] - grads["float32"]
    return {
        "relative_error_dU": float(diff.norm() / grads["float32"].norm()),
        "relative_error_dE": float(diff.norm() / energy_part.norm()),
    }


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"Stage 2 of the `{PRESET}` preset (batch {report['batch_size']}, K = {report['langevin_steps']} Langevin "
        f"steps, {report['ebm_parameters']:,}-parameter energy network) on {m['processor']} ({m['cpu']}, native "
        f"bfloat16: {m['native_bfloat16']}), torch {m['torch']}; seconds per optimizer step, medians over "
        f"{report['repeats']} repeats of {report['iterations']} steps.",
        "",
        "| torch threads | float32 chains (VAEBM) | bfloat16 chains | bfloat16 / float32 |",
        "|---|---|---|---|",
    ]
    for threads, r in report["seconds_per_step"].items():
        lines.append(f"| {threads} | {r['float32']:.3f} | {r['bfloat16']:.3f} | {r['ratio']:.3f} |")
    e = report["gradient_error"]
    lines += [
        "",
        f"The chains' gradient with the energy network in bfloat16, against float32 (16 chains at fresh noise): "
        f"relative error {e['relative_error_dU']:.2e} of dU/deps, {e['relative_error_dE']:.2e} of its energy part "
        "dE/deps.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    preset = get_preset(PRESET)
    shape = (1, preset.resolution, preset.resolution)
    dataset = _Dataset(torch.rand((256, *shape), generator=torch.Generator().manual_seed(0)).round())
    seconds = {}
    with tempfile.TemporaryDirectory() as scratch:  # no checkpoint is due: the runners write nothing there
        runners = {dtype: build_stage(dtype, dataset, Path(scratch)) for dtype in DTYPES}
        for threads in args.threads:
            torch.set_num_threads(threads)
            times = {name: 1 / rate for name, rate in steps_per_second(runners, args.iterations, args.repeats).items()}
            seconds[threads] = {**times, "ratio": times["bfloat16"] / times["float32"]}
        error = gradient_error(runners["float32"])
    stage = runners["float32"].stage
    report = {
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpu": torch.cpu.get_capabilities().get("cpu_name", "unknown"),
            "native_bfloat16": native_bfloat16(torch.device("cpu")),
            "torch": torch.__version__,
        },
        "repeats": args.repeats,
        "iterations": args.iterations,
        "batch_size": stage.settings.batch_size,
        "langevin_steps": stage.settings.langevin_steps,
        "ebm_parameters": sum(p.numel() for p in stage.ebm.parameters()),
        "seconds_per_step": seconds,
        "gradient_error": error,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "chain_precision.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "chain_precision.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
