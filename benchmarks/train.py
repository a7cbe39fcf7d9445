"""Training speed: optimizer steps per second of each stage, and what removing unneeded work in stage 2 bought.

Both stages run through the real trainer (``StageRunner.optimizer_step``: loss, backward, optimizer step, metric
reduction, divergence check). Stage 2 is also timed in a *baseline* form that does what a direct port of the
official loop does: the frozen VAE keeps ``requires_grad=True`` and every Langevin step back-propagates with
``.backward()`` (so parameter gradients of the VAE and the EBM are computed and then thrown away), reads the chain's
energy with ``.item()`` (a host sync per step), and after the chain evaluates the potential once more (for logging)
before decoding the negatives again with autograd on. Our stage does none of that.

    python benchmarks/train.py [--repeats 5] [--iterations 5] [--threads N]

Writes ``benchmarks/results/train.json`` and ``train.md`` (medians over repeats).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import torch
from accelerate import Accelerator
from torch.utils.data import TensorDataset

from vaebm_hub import VAEBMVAE, VAEBMEnergyModel
from vaebm_hub.data import load_array_dataset
from vaebm_hub.models.layers import frozen, reference_kernels, set_channels_last
from vaebm_hub.pipelines.langevin_chain import ChainOutput
from vaebm_hub.pipelines.potential import vaebm_potential
from vaebm_hub.presets import get_preset, resolve
from vaebm_hub.training import ebm_stage
from vaebm_hub.training.config import TrainingConfig
from vaebm_hub.training.data_stream import BatchStream
from vaebm_hub.training.ebm_stage import EBMStage, negative_images
from vaebm_hub.training.loop import StageRunner
from vaebm_hub.training.run import loop_options
from vaebm_hub.training.vae_stage import VAEStage

RESULTS = Path(__file__).parent / "results"

# Same sizes as benchmarks/sampler.py; the stage-2 settings are the digits preset's (K = 10 Langevin steps).
CONFIGS = {
    "digits 1x8x8 (default models)": dict(vae={}, ebm=dict(layout="digits8", n_channel=32), data="digits"),
    "cifar-size 3x32x32": dict(
        vae=dict(in_channels=3, sample_size=32, num_channels_enc=16, num_channels_dec=16, num_latent_scales=2,
                 num_groups_per_scale=2, num_latent_per_group=8),
        ebm=dict(layout="cifar32", n_channel=32),
        data="random",
    ),
}  # fmt: skip
BATCH_SIZE = {"digits": 64, "random": 32}
EAGER = "trainer, eager kernels (before the fast path)"
CHANNELS_LAST = "trainer + channels_last (the CPU default)"


class _Dataset(TensorDataset):
    """Bare image tensors with the ``sample_shape`` the trainer reads."""

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__(images)
        self.sample_shape = tuple(images.shape[1:])

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.tensors[0][index]


WASTE = ("param_grads", "item_sync", "extra_decoder_pass")


def _trainable(*modules):
    """The eager row's stand-in for ``utils.frozen``: the EBM keeps ``requires_grad`` during its chains, as before
    the frozen fast path."""
    return nullcontext()


class BaselineEBMStage(EBMStage):
    """Stage 2 with the unneeded work in ``waste`` (a subset of ``WASTE``) put back (see the module docstring)."""

    def __init__(self, *args, waste: tuple[str, ...] = WASTE, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.waste = waste
        self.vae.requires_grad_("param_grads" in waste)
        self.energy_log: list[float | torch.Tensor] = []

    def _log(self, energy: torch.Tensor) -> None:
        self.energy_log.append(energy.mean().item() if "item_sync" in self.waste else energy.mean().detach())

    def run_chains(self, eps: torch.Tensor) -> ChainOutput:
        # A deliberate copy of the official loop (the benchmark's reference), not the package's chain.
        for t in self.langevin.timesteps:
            eps = eps.detach().requires_grad_(True)
            out = vaebm_potential(self.vae, self.ebm, eps, 1.0, self.settings.potential)
            if "param_grads" in self.waste:
                out.potential.sum().backward()
                grad = eps.grad
                self.vae.zero_grad(set_to_none=True)
                self.ebm.zero_grad(set_to_none=True)
            else:
                (grad,) = torch.autograd.grad(out.potential.sum(), eps)
            self._log(out.energy)
            eps = self.langevin.step(grad, t, eps.detach(), generator=self.generator).prev_sample
        if "extra_decoder_pass" in self.waste:
            self._log(vaebm_potential(self.vae, self.ebm, eps, 1.0, self.settings.potential).energy)
        return ChainOutput(eps, torch.ones(eps.shape[0], dtype=torch.bool))

    def negatives(self, eps: torch.Tensor) -> torch.Tensor:
        if "extra_decoder_pass" in self.waste:  # with autograd on: the graph is built for nothing
            return negative_images.__wrapped__(self.vae, eps, self.settings.use_mu_cd)
        return super().negatives(eps)


def dataset_for(spec: dict) -> _Dataset:
    if spec["data"] == "digits":
        images, _ = load_array_dataset("digits", "train")
        return _Dataset(torch.from_numpy(images))
    shape = (spec["vae"]["in_channels"], spec["vae"]["sample_size"], spec["vae"]["sample_size"])
    return _Dataset(torch.rand((512, *shape), generator=torch.Generator().manual_seed(0)))


def runner_for(stage, dataset, output_dir: Path) -> StageRunner:
    # The trainer's defaults, with no checkpoint due and the divergence threshold raised (random models).
    config = TrainingConfig(checkpointing_steps=10**9, divergence_threshold=1e9)
    return StageRunner(Accelerator(cpu=True), stage, dataset, loop_options(config, output_dir, 0, epoch=1))


def steps_per_second(runners: dict[str, StageRunner], iterations: int, repeats: int) -> dict[str, float]:
    """Per runner, the median over ``repeats`` of ``iterations / wall time`` of ``iterations`` optimizer steps
    (after a warm-up step). Runners take turns within each repeat, so load changes hit them alike. The frozen
    VAE's ``requires_grad`` is set per runner (the baseline variants toggle it)."""
    streams = {name: BatchStream(r.dataset, r.stage.settings.batch_size, seed=0) for name, r in runners.items()}
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for repeat in range(repeats + 1):
        for name, runner in runners.items():
            stage = runner.stage
            if isinstance(stage, EBMStage):
                stage.vae.requires_grad_("param_grads" in getattr(stage, "waste", ()))
            layout = getattr(stage, "channels_last", False)
            for model in (getattr(stage, "vae", None), getattr(stage, "ebm", None)):
                if model is not None:
                    set_channels_last(model, layout)
            eager = getattr(stage, "eager_kernels", False)
            with reference_kernels(eager), mock.patch.object(ebm_stage, "frozen", _trainable if eager else frozen):
                start = time.perf_counter()
                for _ in range(iterations if repeat else 1):
                    runner.optimizer_step(streams[name])
                elapsed = time.perf_counter() - start
            if repeat:
                rates[name].append(iterations / elapsed)
    return {name: statistics.median(r) for name, r in rates.items()}


def measure(spec: dict, iterations: int, repeats: int, scratch: Path) -> dict:
    dataset = dataset_for(spec)
    batch = BATCH_SIZE[spec["data"]]
    preset = resolve(
        get_preset("digits"),
        vae_training=dict(batch_size=batch),
        ebm_training=dict(batch_size=batch, layout=spec["ebm"]["layout"], n_channel=spec["ebm"]["n_channel"]),
    )
    s1, s2 = preset.vae_training, preset.ebm_training
    torch.manual_seed(0)
    vae = VAEBMVAE(**spec["vae"])
    shape = dataset.sample_shape
    common = dict(seed=0, process_index=0, num_sample_images=4)

    vae_stage = VAEStage(vae, s1, **common)
    vae_runner = runner_for(vae_stage, dataset, scratch)
    vae_runner.stage.prepare(vae_runner.accelerator, dataset, fresh=True)
    vae_rate = steps_per_second({"vae": vae_runner}, iterations, repeats)["vae"]
    frozen_vae = vae_stage.finished_vae()

    variants = {"baseline (all three)": WASTE}
    variants.update({f"baseline without {w}": tuple(x for x in WASTE if x != w) for w in WASTE})
    variants.update({EAGER: None, "trainer": None, CHANNELS_LAST: None})
    runners = {}
    for label, waste in variants.items():
        torch.manual_seed(1)
        ebm = VAEBMEnergyModel(in_channels=shape[0], sample_size=shape[-1], **spec["ebm"])
        if waste is None:
            stage = EBMStage(frozen_vae, ebm, s2, preset.sampling, device=torch.device("cpu"), **common)
            stage.eager_kernels, stage.channels_last = label == EAGER, label == CHANNELS_LAST
        else:
            stage = BaselineEBMStage(
                frozen_vae, ebm, s2, preset.sampling, device=torch.device("cpu"), waste=waste, **common
            )
        runners[label] = runner_for(stage, dataset, scratch)
        stage.prepare(runners[label].accelerator, dataset, fresh=True)
    rates = steps_per_second(runners, iterations, repeats)
    return {
        "batch_size": batch,
        "langevin_steps": s2.langevin_steps,
        "vae_parameters": sum(p.numel() for p in vae.parameters()),
        "ebm_parameters": sum(p.numel() for p in ebm.parameters()),
        "vae_steps_per_second": round(vae_rate, 3),
        "ebm_steps_per_second": {label: round(rate, 3) for label, rate in rates.items()},
        "ebm_speedup": round(rates["trainer"] / rates["baseline (all three)"], 3),
        "fast_path_time_ratio": round(rates[EAGER] / max(rates["trainer"], rates[CHANNELS_LAST]), 3),
    }


def markdown(report: dict) -> str:
    machine = report["machine"]
    lines = [
        f"Training speed on {machine['processor']} ({machine['torch_threads']} torch thread(s), torch "
        f"{machine['torch']}); medians over {report['repeats']} repeats of {report['iterations']} optimizer steps.",
    ]
    for name, r in report["results"].items():
        lines += [
            "",
            f"**{name}** (batch {r['batch_size']}; VAE {r['vae_parameters']:,} / EBM {r['ebm_parameters']:,} "
            f"parameters): stage 1 (VAE) {r['vae_steps_per_second']} steps/s.",
            "",
            f"| stage 2 (EBM, K={r['langevin_steps']}) | steps/s |",
            "|---|---|",
            *(f"| {label} | {rate} |" for label, rate in r["ebm_steps_per_second"].items()),
            f"| speed-up, trainer vs baseline | {r['ebm_speedup']}x |",
            f"| iteration time, best fast path / eager kernels | {r['fast_path_time_ratio']} |",
        ]
    lines += [
        "",
        "Baseline = frozen VAE with `requires_grad` and `.backward()` per Langevin step (param_grads), `.item()` of",
        "the energy per step (item_sync), and a final potential evaluation + a decoder pass with autograd on after",
        "the chain (extra_decoder_pass). Each 'without' row removes one of the three.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:  # the runners write nothing there (no checkpoint is due)
        results = {name: measure(spec, args.iterations, args.repeats, Path(scratch)) for name, spec in CONFIGS.items()}
    report = {
        "machine": {"processor": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "torch_threads": args.threads},
        "repeats": args.repeats,
        "iterations": args.iterations,
        "preset": get_preset("digits").to_dict(),
        "results": results,
    }  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "train.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
