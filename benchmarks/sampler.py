"""Langevin step cost, side by side: the eager reference path, the default fast path, channels-last, and the floor.

One Langevin step's work is the potential and its gradient to the noise, ``potential_and_grad`` (decoder forward,
energy forward, backward to eps). Measured per config at batch 64, in one process, the variants alternating within
each of ``--rounds`` rounds (min / median / max reported):

* ``eager`` — the formulas before the fast path (``models.layers.reference_kernels``: Swish as ``x * sigmoid(x)``,
  eval-mode batch norm as its own pass, weight normalisation at every call), default memory layout;
* ``default`` — what the pipeline runs: fused SiLU, batch norm folded into the decoder's convolutions, the networks
  frozen (``utils.frozen``) so that weight-normalised and folded kernels are computed once;
* ``channels_last`` — ``default`` plus ``pipe.enable_channels_last()``;
* ``compiled`` — ``channels_last`` plus ``pipe.enable_torch_compile()`` (inductor; the compile time is reported);
* ``conv floor`` — only the convolutions of one ``default`` step, same shapes, forward + backward to their inputs;
* ``pipeline overhead`` — a whole ``pipe(num_inference_steps=K)`` call against its bare parts, ``K`` steps'
  ``potential_and_grad`` on frozen networks plus the ``K = 0`` call: ``overhead = pipeline / parts``, the work the
  pipeline adds (scheduler arithmetic, NaN bookkeeping, callbacks, progress bar). Timed as ``--overhead_pairs``
  adjacent pairs, the order alternating, for the configs in ``--overhead_configs`` (a 64x64 chain costs minutes);
  the median of the per-pair ratios is reported with the quartiles.

Each timing repeats its call until ``--min_time`` seconds have passed (at least twice), after one untimed call.
Peak memory of a 16-step chain (batch 64, CIFAR-size) is measured in a fresh subprocess per variant: the peak RSS
(``VmHWM``, reset after one small warm-up step) minus the RSS at that point (Linux ``/proc``).

    python benchmarks/sampler.py [--threads 1] [--rounds 7] [--configs digits cifar celeba64]

Writes ``benchmarks/results/sampler.json`` and ``sampler.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

from vaebm_hub import VAEBMVAE, LangevinScheduler, VAEBMEnergyModel, VAEBMPipeline
from vaebm_hub.models.layers import frozen, reference_kernels, set_channels_last
from vaebm_hub.pipelines.potential import potential_and_grad, vaebm_potential

RESULTS = Path(__file__).parent / "results"
BATCH_SIZE = 64
PIPELINE_STEPS = 10
MEMORY_STEPS = 16
VARIANTS = ("eager", "default", "channels_last", "compiled")
MEMORY_VARIANTS = ("eager", "default", "channels_last")

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


def variant(pipe: VAEBMPipeline, name: str) -> ExitStack:
    """Context for ``name``: the reference kernels on trainable networks for ``eager``, else frozen networks;
    channels-last switched on or off."""
    layout = name in ("channels_last", "compiled")
    set_channels_last(pipe.vae, layout)
    set_channels_last(pipe.ebm, layout)
    stack = ExitStack()
    stack.enter_context(reference_kernels() if name == "eager" else frozen(pipe.vae, pipe.ebm))
    return stack


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


def timed(fn, min_time: float) -> float:
    """One untimed call (switching variants re-lays memory out), then the mean over repeated calls that together
    take at least ``min_time`` seconds (at least two)."""
    fn()
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < min_time:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls


def quartiles(values: list[float]) -> dict:
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"q1": q1, "median": median, "q3": q3, "pairs": len(values)}


def pipeline_overhead(pipe: VAEBMPipeline, eps: torch.Tensor, pairs: int) -> dict:
    """Per adjacent pair: ``pipe(K)`` time / (``K`` bare steps in one frozen block + ``pipe(0)``) time."""

    def pipeline():
        pipe(num_inference_steps=PIPELINE_STEPS, latents=eps, generator=torch.Generator().manual_seed(1),
             output_type="latent")  # fmt: skip

    def parts():
        with frozen(pipe.vae, pipe.ebm):
            for _ in range(PIPELINE_STEPS):
                potential_and_grad(pipe.vae, pipe.ebm, eps)
        pipe(num_inference_steps=0, latents=eps, output_type="latent")

    def seconds(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    set_channels_last(pipe.vae, False)
    set_channels_last(pipe.ebm, False)
    pipeline(), parts()  # warm-up
    ratios = []
    for i in range(pairs):
        if i % 2:
            b = seconds(parts)
            a = seconds(pipeline)
        else:
            a = seconds(pipeline)
            b = seconds(parts)
        ratios.append(a / b)
    return quartiles(ratios)


def measure(key: str, rounds: int, min_time: float, overhead_pairs: int) -> dict:
    spec = CONFIGS[key]
    pipe = build(spec)
    eps = pipe.vae.sample_noise(BATCH_SIZE, generator=torch.Generator().manual_seed(0))
    floor = conv_floor(recorded_convolutions(pipe, eps))
    compiled = torch.compile(vaebm_potential, dynamic=False)
    with variant(pipe, "compiled"):
        start = time.perf_counter()
        potential_and_grad(pipe.vae, pipe.ebm, eps, potential_fn=compiled)
        compile_s = time.perf_counter() - start

    def step(name: str):
        fn = compiled if name == "compiled" else vaebm_potential
        return lambda: potential_and_grad(pipe.vae, pipe.ebm, eps, potential_fn=fn)

    times: dict[str, list[float]] = {name: [] for name in (*VARIANTS, "conv floor")}
    for _ in range(rounds):
        for name in VARIANTS:
            with variant(pipe, name):
                times[name].append(timed(step(name), min_time))
        with variant(pipe, "default"):
            times["conv floor"].append(timed(floor, min_time))
    stats = {name: summary(values) for name, values in times.items()}
    med = {name: s["median_ms"] for name, s in stats.items()}
    result = {
        "config": spec["label"],
        "batch_size": BATCH_SIZE,
        "vae_parameters": sum(p.numel() for p in pipe.vae.parameters()),
        "ebm_parameters": sum(p.numel() for p in pipe.ebm.parameters()),
        "noise_dim": pipe.vae.noise_dim,
        "rounds": rounds,
        "compile_s": compile_s,
        "step": stats,
        **{f"{name}_over_eager": med[name] / med["eager"] for name in VARIANTS[1:]},
        "best_over_conv_floor": min(med[name] for name in VARIANTS[1:]) / med["conv floor"],
    }
    if overhead_pairs:
        result["pipeline_overhead"] = pipeline_overhead(pipe, eps, overhead_pairs)
    return result


def _rss_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in KiB, from ``/proc/self/status``. (``ru_maxrss`` will
    not do: Linux carries it over ``fork`` + ``exec``, a probe started by a large parent reads the parent's peak.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_probe(name: str) -> None:
    """Subprocess entry: peak RSS growth (MiB) of a 16-step chain over the state after a small warm-up, as JSON."""
    torch.set_num_threads(1)
    pipe = build(CONFIGS["cifar"])
    eps = pipe.vae.sample_noise(BATCH_SIZE, generator=torch.Generator().manual_seed(0))
    with variant(pipe, name):
        potential_and_grad(pipe.vae, pipe.ebm, eps[:2])  # import-time and first-call allocations
        Path("/proc/self/clear_refs").write_text("5")  # restart the peak (VmHWM) from the current RSS
        before = _rss_kib("VmRSS")
        pipe(num_inference_steps=MEMORY_STEPS, latents=eps, generator=torch.Generator().manual_seed(1))
        after = _rss_kib("VmHWM")
    print(json.dumps({"variant": name, "peak_rss_growth_mib": (after - before) / 1024}))


def peak_memory() -> dict[str, float]:
    out = {}
    for name in MEMORY_VARIANTS:
        result = subprocess.run(
            [sys.executable, __file__, "--memory_probe", name], capture_output=True, text=True, check=True
        )
        out[name] = json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_growth_mib"]
    return out


def to_markdown(report: dict) -> str:
    meta = report["meta"]
    results = report["results"]
    lines = [
        f"# Langevin step cost ({meta['machine']}, torch {meta['torch']}, {meta['threads']} thread(s))",
        "",
        f"Batch {BATCH_SIZE}; one step = potential and its gradient to the noise. {results[0]['rounds']} interleaved "
        "rounds, min / **median** / max in ms. Goals: new / old (eager) <= 0.70 (CIFAR-size, 64x64), <= 0.85 "
        "(digits); best / conv floor <= 1.5.",
        "",
        "| config | eager (old) | default | channels_last | compiled | conv floor |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        cell = {n: f"{v['min_ms']:.1f} / **{v['median_ms']:.1f}** / {v['max_ms']:.1f}" for n, v in r["step"].items()}
        lines.append(f"| {r['config']} | " + " | ".join(cell[n] for n in (*VARIANTS, "conv floor")) + " |")
    lines += [
        "",
        "| config | default / eager | channels_last / eager | compiled / eager | best / conv floor | compile time | "
        "pipeline overhead (quartiles) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        o = r.get("pipeline_overhead")
        overhead = (
            f"{o['q1']:.3f} / **{o['median']:.3f}** / {o['q3']:.3f} ({o['pairs']} pairs)" if o else "not measured"
        )
        lines.append(
            f"| {r['config']} | {r['default_over_eager']:.3f} | {r['channels_last_over_eager']:.3f} | "
            f"{r['compiled_over_eager']:.3f} | {r['best_over_conv_floor']:.2f} | {r['compile_s']:.0f} s | {overhead} |"
        )
    memory = report.get("peak_memory_mib")
    if memory:
        lines += [
            "",
            f"Peak memory of a {MEMORY_STEPS}-step chain, batch {BATCH_SIZE}, CIFAR-size (RSS growth in a fresh "
            "process): " + ", ".join(f"{k} {v:.0f} MiB" for k, v in memory.items()) + ".",
        ]
    return "\n".join(lines) + "\n"


def overhead_pairs(key: str, args: argparse.Namespace) -> int:
    if key not in args.overhead_configs:
        return 0
    return args.overhead_pairs or (60 if key == "digits" else 16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--no_memory", action="store_true")
    parser.add_argument("--output", default=str(RESULTS / "sampler"))
    parser.add_argument("--min_time", type=float, default=0.5, help="seconds of repeated calls per timing")
    parser.add_argument("--overhead_configs", nargs="*", default=["digits", "cifar"], choices=list(CONFIGS))
    parser.add_argument("--overhead_pairs", type=int, default=0, help="pairs per config (default: 60 digits, 16 else)")
    parser.add_argument("--memory_probe", choices=MEMORY_VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        memory_probe(args.memory_probe)
        return
    torch.set_num_threads(args.threads)
    meta = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": args.threads}
    report = {
        "meta": meta,
        "results": [measure(key, args.rounds, args.min_time, overhead_pairs(key, args)) for key in args.configs],
    }
    if not args.no_memory:
        report["peak_memory_mib"] = peak_memory()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(to_markdown(report))
    print(to_markdown(report))


if __name__ == "__main__":
    main()
