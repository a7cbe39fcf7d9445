"""Drawing an evaluation's samples at several chain lengths: one call per length (``sample_images``) against every
length read off one chain of the longest (``sample_images_at``, what ``evaluate_pipeline`` runs).

    python benchmarks/evaluation_sampling.py [--presets mnist digits] [--num_samples 250] [--repeats 3]

Per preset: randomly initialised networks of its sizes (the cost of a step does not depend on the weights) in the
pipeline the trainer saves (``make_pipeline``: the preset's step size and MALA setting), ``--num_samples`` samples at
claim 1's chain lengths K = 0, 10, 30 and 100, on one torch thread. Within each repeat the two ways take turns, so
load changes on a shared machine hit them alike; medians over repeats. Both must return the same samples, bitwise
(checked every repeat). Writes ``benchmarks/results/evaluation_sampling.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from vaebm_hub.evaluation import sample_images, sample_images_at
from vaebm_hub.presets import get_preset
from vaebm_hub.training.components import make_pipeline, new_ebm, new_vae

RESULTS = Path(__file__).parent / "results"
CHAIN_LENGTHS = (0, 10, 30, 100)
SAMPLE_SHAPES = {"mnist": (1, 32, 32), "digits": (1, 8, 8)}


def build(preset_name: str):
    preset = get_preset(preset_name)
    shape = SAMPLE_SHAPES[preset_name]
    vae = new_vae(preset, shape, seed=0).eval()
    ebm = new_ebm(preset.ebm_training, shape, seed=1).eval()
    return make_pipeline(vae, ebm, preset.ebm_training, preset.sampling)


def separate_calls(pipe, num_samples: int, lengths: tuple[int, ...]) -> dict[int, np.ndarray]:
    return {k: sample_images(pipe, num_samples, k)[0] for k in lengths}


def one_chain(pipe, num_samples: int, lengths: tuple[int, ...]) -> dict[int, np.ndarray]:
    return {k: samples for k, (samples, _) in sample_images_at(pipe, num_samples, lengths).items()}


def measure(preset_name: str, num_samples: int, lengths: tuple[int, ...], repeats: int) -> dict:
    pipe = build(preset_name)
    ways = {"one call per length": separate_calls, "one chain (sample_images_at)": one_chain}
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    identical = True
    for _ in range(repeats):
        drawn = {}
        for name, draw in ways.items():
            start = time.perf_counter()
            drawn[name] = draw(pipe, num_samples, lengths)
            seconds[name].append(time.perf_counter() - start)
        first, second = drawn.values()
        identical &= all(np.array_equal(first[k], second[k]) for k in lengths)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    separate, chained = medians.values()
    return {
        "scheduler": {k: v for k, v in pipe.scheduler.config.items() if not k.startswith("_")},
        "seconds": seconds,
        "median_seconds": medians,
        "ratio": chained / separate,
        "chain_steps": {"one call per length": sum(lengths), "one chain (sample_images_at)": max(lengths)},
        "identical_samples": bool(identical),
    }


def markdown(report: dict) -> str:
    lines = [
        f"{report['num_samples']} samples at K = {', '.join(map(str, report['chain_lengths']))} from randomly "
        f"initialised networks of each preset's sizes, one torch thread, {report['machine']}; medians over "
        f"{report['repeats']} repeats, the two ways taking turns.",
        "",
        "| preset | sampler | one call per length | one chain (`sample_images_at`) | ratio | steps | same samples |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in report["presets"].items():
        s, m = r["scheduler"], list(r["median_seconds"].values())
        sampler = f"{'MALA' if s['metropolis'] else 'Langevin'} at {s['step_size']:g}"
        steps = " → ".join(map(str, r["chain_steps"].values()))
        lines.append(
            f"| {name} | {sampler} | {m[0]:.1f} s | {m[1]:.1f} s | {r['ratio']:.2f} | {steps} | "
            f"{'yes' if r['identical_samples'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(SAMPLE_SHAPES), choices=list(SAMPLE_SHAPES))
    parser.add_argument("--num_samples", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chain_lengths", type=int, nargs="+", default=list(CHAIN_LENGTHS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    lengths = tuple(args.chain_lengths)
    report = {
        "num_samples": args.num_samples,
        "chain_lengths": list(lengths),
        "repeats": args.repeats,
        "machine": f"{platform.machine()}, torch {torch.__version__}",
        "presets": {name: measure(name, args.num_samples, lengths, args.repeats) for name in args.presets},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "evaluation_sampling.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "evaluation_sampling.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
