"""Langevin sampler overhead: time per pipeline step vs the time of its parts, measured in the same run.

A step's irreducible work is the decoder forward (``eps -> z -> x``), the energy forward and the backward pass to
``eps``. Everything else the pipeline does per step (scheduler arithmetic, noise draws, NaN bookkeeping) should add
at most 5%: ``ratio = step / (decoder + energy + backward) <= 1.05``.

    python benchmarks/sampler.py [--batch_size 64] [--repeats 7] [--steps 10]

Writes ``benchmarks/results/sampler.json`` and ``sampler.md`` (medians over repeats).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from vaebm_hub import VAEBMVAE, LangevinScheduler, VAEBMEnergyModel, VAEBMPipeline

RESULTS = Path(__file__).parent / "results"

CONFIGS = {
    "digits 1x8x8 (default models)": dict(vae={}, ebm={}),
    "cifar-size 3x32x32": dict(
        vae=dict(in_channels=3, sample_size=32, num_channels_enc=16, num_channels_dec=16, num_latent_scales=2,
                 num_groups_per_scale=2, num_latent_per_group=8),
        ebm=dict(in_channels=3, sample_size=32, layout="cifar32", n_channel=32),
    ),
}  # fmt: skip


def timed(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, spec: dict, batch_size: int, steps: int, repeats: int) -> dict:
    torch.manual_seed(0)
    vae, ebm = VAEBMVAE(**spec["vae"]).eval(), VAEBMEnergyModel(**spec["ebm"]).eval()
    pipe = VAEBMPipeline(vae=vae, ebm=ebm, scheduler=LangevinScheduler(step_size=1e-3))
    pipe.set_progress_bar_config(disable=True)
    eps0 = vae.sample_noise(batch_size, generator=torch.Generator().manual_seed(0))

    def decoder_forward():
        eps_z, eps_x = vae.split_noise(eps0)
        return vae.output_distribution(vae.decode_noise(eps_z).logits).rsample(eps_x)

    def decoder_and_energy():
        return ebm(decoder_forward(), check_finite=False)

    def full_step_parts():
        with torch.enable_grad():
            eps = eps0.detach().requires_grad_(True)
            eps_z, eps_x = vae.split_noise(eps)
            x = vae.output_distribution(vae.decode_noise(eps_z).logits).rsample(eps_x)
            u = ebm(x, check_finite=False) + 0.5 * eps.pow(2).sum(1)
            torch.autograd.grad(u.sum(), eps)

    def chain(k: int):
        return lambda: pipe(batch_size=batch_size, num_inference_steps=k, latents=eps0, output_type="latent")

    with torch.no_grad():
        t_dec = timed(decoder_forward, repeats)
        t_dec_ebm = timed(decoder_and_energy, repeats)
    t_parts = timed(full_step_parts, repeats)
    t_chain = timed(chain(steps), repeats)
    t_zero = timed(chain(0), repeats)
    t_step = (t_chain - t_zero) / steps
    return {
        "config": name,
        "batch_size": batch_size,
        "vae_parameters": sum(p.numel() for p in vae.parameters()),
        "ebm_parameters": sum(p.numel() for p in ebm.parameters()),
        "noise_dim": vae.noise_dim,
        "decoder_forward_ms": 1e3 * t_dec,
        "energy_forward_ms": 1e3 * (t_dec_ebm - t_dec),
        "backward_to_eps_ms": 1e3 * (t_parts - t_dec_ebm),
        "parts_total_ms": 1e3 * t_parts,
        "pipeline_step_ms": 1e3 * t_step,
        "ratio_step_to_parts": t_step / t_parts,
    }


def to_markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"# Langevin sampler overhead ({meta['device']}, torch {meta['torch']}, {meta['threads']} threads)",
        "",
        "Medians over repeats; a step = decoder forward + energy forward + backward to eps (+ scheduler).",
        "",
        "| config | batch | decoder fwd ms | energy fwd ms | backward ms | parts ms | pipeline step ms | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['batch_size']} | {r['decoder_forward_ms']:.1f} | {r['energy_forward_ms']:.1f} | "
            f"{r['backward_to_eps_ms']:.1f} | {r['parts_total_ms']:.1f} | {r['pipeline_step_ms']:.1f} | "
            f"{r['ratio_step_to_parts']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=str(RESULTS / "sampler"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    meta = {"device": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": args.threads}
    rows = [measure(name, spec, args.batch_size, args.steps, args.repeats) for name, spec in CONFIGS.items()]
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    out.with_suffix(".md").write_text(to_markdown(rows, meta))
    print(to_markdown(rows, meta))


if __name__ == "__main__":
    main()
