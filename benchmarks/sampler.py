"""Langevin step cost, side by side: the eager reference path, the default fast path, channels-last, and the floor.

One Langevin step's work is the potential and its gradient to the noise, ``potential_and_grad`` (decoder forward,
energy forward, backward to eps). Measured per config at batch 64, in one process, the variants alternating within
each of ``--rounds`` rounds (min / median / max reported):

* ``eager`` — the formulas before the fast path (``models.layers.reference_kernels``: Swish as ``x * sigmoid(x)``,
  eval-mode batch norm as its own pass), default memory layout;
* ``default`` — what the pipeline runs: fused SiLU, batch norm folded into the decoder's convolutions;
* ``channels_last`` — ``default`` plus ``pipe.enable_channels_last()``;
* ``conv floor`` — only the convolutions of one ``default`` step, same shapes, forward + backward to their inputs;
* ``pipeline`` — a whole ``pipe(num_inference_steps=K)`` call against ``K`` steps' parts plus the ``K = 0`` call
  (``overhead = pipeline / (K * parts + pipeline(0))``, the work the pipeline adds per call).

Peak memory of a 16-step chain (batch 64, CIFAR-size) is measured in a fresh subprocess per variant (max RSS growth).

    python benchmarks/sampler.py [--threads 1] [--rounds 7] [--configs digits cifar celeba64]

Writes ``benchmarks/results/sampler.json`` and ``sampler.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

from vaebm_hub import VAEBMVAE, LangevinScheduler, VAEBMEnergyModel, VAEBMPipeline
from vaebm_hub.models.layers import reference_kernels, set_channels_last
from vaebm_hub.pipelines.potential import potential_and_grad

RESULTS = Path(__file__).parent / "results"
BATCH_SIZE = 64
PIPELINE_STEPS = 10
MEMORY_STEPS = 16
VARIANTS = ("eager", "default", "channels_last")

CONFIGS = {
    "digits": dict(label="digits 1x8x8 (default models)", vae={}, ebm={}),
    "cifar": dict(
        label="CIFAR-size 3x32x32",
        vae=dict(in_channels=3, sample_size=32, num_channels_enc=16, num_channels_dec=16, num_latent_scales=2,
                 num_groups_per_scale=2, num_latent_per_group=8),
        ebm=dict(in_channels=3, sample_size=32, layout="cifar32", n_channel=32),
    ),
    "celeba64": dict(
        label="64x64 celeba64-size 3x64x64",
        vae=dict(in_channels=3, sample_size=64, num_channels_enc=16, num_channels_dec=16, num_latent_scales=2,
                 num_groups_per_scale=2, num_latent_per_group=8),
        ebm=dict(in_channels=3, sample_size=64, layout="celeba64", n_channel=32),
    ),
}  # fmt: skip


def build(spec: dict) -> VAEBMPipeline:
    torch.manual_seed(0)
    vae = VAEBMVAE(**spec["vae"])
    vae.readjust_batch_norm(2, 16, generator=torch.Generator().manual_seed(0))  # non-trivial BN statistics
    ebm = VAEBMEnergyModel(**spec["ebm"])
    pipe = VAEBMPipeline(vae=vae.eval(), ebm=ebm.eval(), scheduler=LangevinScheduler(step_size=1e-3))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def variant(pipe: VAEBMPipeline, name: str):
    """Context for ``name``: the reference kernels for ``eager``; channels-last switched on or off."""
    set_channels_last(pipe.vae, name == "channels_last")
    set_channels_last(pipe.ebm, name == "channels_last")
    return reference_kernels() if name == "eager" else nullcontext()


def recorded_convolutions(pipe: VAEBMPipeline, eps: torch.Tensor) -> list[tuple]:
    """``(input shape, weight, stride, padding, dilation, groups)`` of every convolution in one default step."""
    calls, original = [], F.conv2d

    def record(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        calls.append((tuple(x.shape), weight.detach().clone(), stride, padding, dilation, groups))
        return original(x, weight, bias, stride, padding, dilation, groups)

    with variant(pipe, "default"), mock.patch("torch.nn.modules.conv.F.conv2d", record):
        potential_and_grad(pipe.vae, pipe.ebm, eps)
    return calls


def conv_floor(calls: list[tuple]):
    """The convolutions alone: each forward on a fresh input, then its backward to that input."""
    inputs = [torch.randn(shape).requires_grad_(True) for shape, *_ in calls]

    def run():
        for x, (_, weight, stride, padding, dilation, groups) in zip(inputs, calls):
            y = F.conv2d(x, weight, None, stride, padding, dilation, groups)
            torch.autograd.grad(y, x, torch.ones_like(y))

    return run


def summary(times: list[float]) -> dict:
    ms = [1e3 * t for t in times]
    return {"min_ms": min(ms), "median_ms": statistics.median(ms), "max_ms": max(ms)}


def measure(key: str, rounds: int) -> dict:
    spec = CONFIGS[key]
    pipe = build(spec)
    eps = pipe.vae.sample_noise(BATCH_SIZE, generator=torch.Generator().manual_seed(0))
    floor = conv_floor(recorded_convolutions(pipe, eps))

    def step():
        potential_and_grad(pipe.vae, pipe.ebm, eps)

    def chain(k: int):
        return lambda: pipe(num_inference_steps=k, latents=eps, generator=torch.Generator().manual_seed(1),
                            output_type="latent")  # fmt: skip

    def timed(fn, repeat: int = 2) -> float:
        """One untimed call (switching variants re-lays memory out), then the mean of ``repeat`` calls."""
        fn()
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        return (time.perf_counter() - start) / repeat

    times: dict[str, list[float]] = {name: [] for name in (*VARIANTS, "conv floor", "pipeline", "pipeline K=0")}
    for _ in range(rounds):
        for name in VARIANTS:
            with variant(pipe, name):
                times[name].append(timed(step))
        with variant(pipe, "default"):
            for name, fn in (("conv floor", floor), ("pipeline", chain(PIPELINE_STEPS)), ("pipeline K=0", chain(0))):
                times[name].append(timed(fn, repeat=1))
    stats = {name: summary(values) for name, values in times.items()}
    med = {name: s["median_ms"] for name, s in stats.items()}
    overheads = [
        p / (PIPELINE_STEPS * d + z) for p, d, z in zip(times["pipeline"], times["default"], times["pipeline K=0"])
    ]
    return {
        "config": spec["label"],
        "batch_size": BATCH_SIZE,
        "vae_parameters": sum(p.numel() for p in pipe.vae.parameters()),
        "ebm_parameters": sum(p.numel() for p in pipe.ebm.parameters()),
        "noise_dim": pipe.vae.noise_dim,
        "rounds": rounds,
        "step": stats,
        "default_over_eager": med["default"] / med["eager"],
        "channels_last_over_eager": med["channels_last"] / med["eager"],
        "best_over_conv_floor": min(med["default"], med["channels_last"]) / med["conv floor"],
        "pipeline_overhead": {
            "min": min(overheads),
            "median": statistics.median(overheads),
            "max": max(overheads),
        },
    }


def memory_probe(name: str) -> None:
    """Subprocess entry: peak RSS growth (MiB) of a 16-step chain, printed as JSON."""
    torch.set_num_threads(1)
    pipe = build(CONFIGS["cifar"])
    eps = pipe.vae.sample_noise(BATCH_SIZE, generator=torch.Generator().manual_seed(0))
    with variant(pipe, name):
        potential_and_grad(pipe.vae, pipe.ebm, eps[:2])  # import-time and first-call allocations
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        pipe(num_inference_steps=MEMORY_STEPS, latents=eps, generator=torch.Generator().manual_seed(1))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"variant": name, "peak_rss_growth_mib": (after - before) / 1024}))


def peak_memory() -> dict[str, float]:
    out = {}
    for name in VARIANTS:
        result = subprocess.run(
            [sys.executable, __file__, "--memory_probe", name], capture_output=True, text=True, check=True
        )
        out[name] = json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_growth_mib"]
    return out


def to_markdown(report: dict) -> str:
    meta = report["meta"]
    lines = [
        f"# Langevin step cost ({meta['machine']}, torch {meta['torch']}, {meta['threads']} thread(s))",
        "",
        f"Batch {BATCH_SIZE}; one step = potential and its gradient to the noise. {report['results'][0]['rounds']} "
        "interleaved rounds, min / median / max in ms. Goals: default-or-channels-last / eager <= 0.70 (CIFAR-size, "
        "64x64), <= 0.85 (digits); best / conv floor <= 1.5.",
        "",
        "| config | eager | default | channels_last | conv floor | best / eager | best / floor | pipeline overhead |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        s = r["step"]
        cell = {name: f"{v['min_ms']:.1f} / **{v['median_ms']:.1f}** / {v['max_ms']:.1f}" for name, v in s.items()}

        best = min(r["default_over_eager"], r["channels_last_over_eager"])
        o = r["pipeline_overhead"]
        lines.append(
            f"| {r['config']} | {cell['eager']} | {cell['default']} | {cell['channels_last']} | {cell['conv floor']} "
            f"| {best:.3f} | {r['best_over_conv_floor']:.2f} | {o['min']:.3f} / **{o['median']:.3f}** / "
            f"{o['max']:.3f} |"
        )
    memory = report.get("peak_memory_mib")
    if memory:
        lines += [
            "",
            f"Peak memory of a {MEMORY_STEPS}-step chain, batch {BATCH_SIZE}, CIFAR-size (RSS growth in a fresh "
            "process): " + ", ".join(f"{k} {v:.0f} MiB" for k, v in memory.items()) + ".",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--no_memory", action="store_true")
    parser.add_argument("--output", default=str(RESULTS / "sampler"))
    parser.add_argument("--memory_probe", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        memory_probe(args.memory_probe)
        return
    torch.set_num_threads(args.threads)
    meta = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": args.threads}
    report = {"meta": meta, "results": [measure(key, args.rounds) for key in args.configs]}
    if not args.no_memory:
        report["peak_memory_mib"] = peak_memory()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(to_markdown(report))
    print(to_markdown(report))


if __name__ == "__main__":
    main()
