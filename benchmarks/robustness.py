"""The catalogue of bad inputs ("no silent garbage"): how each one ends, for one source tree of the package.

Every case runs in its own subprocess (a fresh interpreter, ``OMP_NUM_THREADS=1``, offline, an 8 GiB address-space
limit so that a request for a huge model fails instead of swapping the machine, a 120 s timeout) against the
``vaebm_hub`` found in ``--src`` (prepended to ``PYTHONPATH``, so an older checkout's ``src`` runs with this venv).
Each outcome is one of

* ``clear``: refused with an error whose message names the problem: it matches every regex the case lists (the
  flag, the file, the value, the words of the fix); a CLI case must also print no traceback; a trainer flag must be
  refused before anything is trained (no checkpoint, no samples in the output folder);
* ``ok``: the correct behaviour is to accept (numpy counts, numpy latents, PIL images, a resume that falls back past
  a corrupt checkpoint and names it) or the result is right despite the input (a huge step size that still returns
  sane images), and the case's check of the result passed; ``clear`` and ``ok`` together are the handled cases;
* ``unclear``: it failed, but with a raw or unhelpful error (the message does not match), refused a valid input,
  refused a trainer flag only after training had started, or ran into the memory limit (noted in the message);
* ``silent``: no error, but the result is wrong (the case's check decides: NaN or saturated images, a bad flag
  accepted and trained with, a corrupt file loaded);
* ``crash``: killed by a signal, the timeout or the memory limit without a Python error.

Areas: ``pipeline`` (call arguments, scoring), ``loading`` (saved pipeline folders), ``trainer``
(``vaebm_hub.training.main``: flags, corrupt checkpoints on resume), ``converter`` (official checkpoints),
``cli`` (``python -m vaebm_hub``: one line, no traceback) and ``space`` (the Gradio Space's request checks, from the
``examples/`` folder beside ``--src``).

    python benchmarks/robustness.py --label after
    git worktree add /tmp/before <commit> && python benchmarks/robustness.py --src /tmp/before/src --label before
    python benchmarks/robustness.py --cases 'trainer/*,cli/*'      # a subset (fnmatch on area/name)

Writes ``benchmarks/results/robustness_<label>.json`` (per case: area, name, outcome, message excerpt, seconds) and
``robustness_<label>.md`` (counts per outcome and per area, and the table); without ``--label``,
``robustness.{json,md}``. Once both a ``before`` and an ``after`` run exist, ``robustness_comparison.md`` puts their
counts side by side and lists every case with both outcomes, marking those that changed.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import inspect
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FIXTURES = ROOT / "tests" / "fixtures" / "official"  # the same input files for every --src
TIMEOUT_S = 120
MEMORY_LIMIT_BYTES = 8 << 30
OUTCOMES = ("clear", "ok", "unclear", "silent", "crash")
EXCERPT = 300


@dataclass
class Case:
    """One bad input. ``run(tmp)`` executes in the child: it raises (the input was refused), or returns ``None``
    (accepted and the result checked right) or a string saying what is wrong with what it returned."""

    area: str
    name: str
    run: Callable[[Path], str | None] | None = None
    clear: tuple[str, ...] = ()  # regexes a clear message must all match (re.search, DOTALL)
    accept: bool = False  # the correct behaviour is to accept the input
    early: bool = False  # trainer: must be refused before anything is trained
    cli: tuple[str, ...] = ()  # ``python -m vaebm_hub`` arguments ("{tmp}" is the case's folder); run() is the setup

    @property
    def key(self) -> str:
        return f"{self.area}/{self.name}"


class Fine(str):
    """What a case returns for a right result it has something to say about (kept as the outcome's message)."""


CASES: list[Case] = []


def case(area: str, name: str, clear=(), accept: bool = False, early: bool = False, cli=()):
    def register(run):
        CASES.append(Case(area, name, run, tuple(clear), accept, early, tuple(cli)))
        return run

    return register


def cli_case(area: str, name: str, args: tuple[str, ...], clear=(), setup=None) -> None:
    CASES.append(Case(area, name, setup, tuple(clear), cli=tuple(args)))


# ====================================================================================================== child helpers
def tiny_pipeline(potential: str = "exact"):
    """The default digits-size VAE and EBM with seeded weights and a 3-step chain (tests/conftest.py's)."""
    import torch

    from vaebm_hub import VAEBMVAE, LangevinScheduler, VAEBMEnergyModel, VAEBMPipeline

    torch.manual_seed(0)
    vae = VAEBMVAE()
    torch.manual_seed(1)
    ebm = VAEBMEnergyModel()
    # older trees (the "before" catalogue) call the default chain length num_train_timesteps
    length = "default_num_inference_steps" if "default_num_inference_steps" in inspect.signature(
        LangevinScheduler.__init__
    ).parameters else "num_train_timesteps"  # fmt: skip
    scheduler = LangevinScheduler(**{length: 3}, step_size=5e-3)
    pipe = VAEBMPipeline(vae=vae.eval(), ebm=ebm.eval(), scheduler=scheduler, potential=potential)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def seeded(seed: int = 0):
    import torch

    return torch.Generator().manual_seed(seed)


def describe(images) -> str:
    """Shape, non-finite share and saturated (exactly 0 or 1) share of an image batch."""
    import numpy as np

    array = np.asarray(images, dtype=np.float64)
    finite = np.isfinite(array)
    saturated = float(np.mean((array == 0) | (array == 1))) if array.size else 0.0
    return f"shape {array.shape}, {float(np.mean(~finite)):.0%} NaN/Inf, {saturated:.0%} saturated pixels"


def image_problem(images) -> str | None:
    """What is wrong with a returned batch of images in [0, 1]: non-finite or mostly saturated values."""
    import numpy as np

    array = np.asarray(images, dtype=np.float64)
    if not np.isfinite(array).all() or np.mean((array == 0) | (array == 1)) > 0.5:
        return f"returned garbage without an error: {describe(array)}"
    return None


def sample_problem(pipe, **kwargs) -> str:
    """Sample with ``kwargs`` and describe what came back (for inputs that should have been refused)."""
    out = pipe(**{"batch_size": 2, "num_inference_steps": 1, "output_type": "np", **kwargs})
    return f"accepted and sampled: {describe(out.images)}"


def nan_ebm(pipe):
    import torch

    with torch.no_grad():
        pipe.ebm.linear.bias.fill_(float("nan"))
    return pipe


def saved_pipeline(tmp: Path) -> Path:
    tiny_pipeline().save_pretrained(tmp / "pipe")
    return tmp / "pipe"


def edit_json(path: Path, **values) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))


def load_and_sample(folder: Path) -> str | None:
    """Load a saved pipeline, sample it, and say what came back (a bad folder should not load)."""
    from vaebm_hub import VAEBMPipeline

    pipe = VAEBMPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(batch_size=2, num_inference_steps=1, output_type="np", generator=seeded()).images
    kinds = f"vae {type(pipe.vae).__name__}, ebm {type(pipe.ebm).__name__}"
    return f"loaded ({kinds}) and sampled: {describe(images)}"


def weights_problem(folder: Path) -> str | None:
    """Non-finite tensors in the safetensors files of a trained pipeline folder."""
    import torch
    from safetensors.torch import load_file

    bad = [
        f"{file.parent.name}/{key}"
        for file in sorted(folder.glob("*/*.safetensors"))
        for key, value in load_file(file).items()
        if value.is_floating_point() and not torch.isfinite(value).all()
    ]
    return f"NaN/Inf weights in {bad[:3]}" if bad else None


@contextlib.contextmanager
def captured_output(path: Path):
    """Send this process's stdout and stderr (file descriptors 1 and 2, so also C-level and logging output) to
    ``path`` for the duration of the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "w") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def official(name: str) -> Path:
    return FIXTURES / name / ("checkpoint.pt" if name.startswith("nvae") else "checkpoint.pth")


def corrupt_middle(source: Path, target: Path) -> None:
    """Copy ``source`` with 64 bytes flipped in the middle of its largest archive member (a damaged download)."""
    import zipfile

    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    middle = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    target.write_bytes(bytes(data))


def parameters_differ(a, b) -> bool:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() != sb.keys() or any(not torch.equal(sa[k], sb[k]) for k in sa)


def nonfinite_parameters(model) -> list[str]:
    import torch

    return [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]


# ====================================================================================================== pipeline
@case("pipeline", "step_size='0.01' (a string)", clear=[r"step_size", r"number"])
def _(tmp):
    return sample_problem(tiny_pipeline(), step_size="0.01")


@case("pipeline", "num_inference_steps=True", clear=[r"num_inference_steps", r"integer"])
def _(tmp):
    return sample_problem(tiny_pipeline(), num_inference_steps=True)


@case("pipeline", "num_inference_steps=1.9", clear=[r"num_inference_steps", r"integer"])
def _(tmp):
    return sample_problem(tiny_pipeline(), num_inference_steps=1.9)


@case("pipeline", "num_inference_steps=-1", clear=[r"num_inference_steps", r">= ?0|non-negative"])
def _(tmp):
    return sample_problem(tiny_pipeline(), num_inference_steps=-1)


@case("pipeline", "batch_size='4' (a string)", clear=[r"batch_size", r"integer"])
def _(tmp):
    return sample_problem(tiny_pipeline(), batch_size="4")


@case("pipeline", "batch_size=0", clear=[r"batch_size", r"positive|>= ?1"])
def _(tmp):
    return sample_problem(tiny_pipeline(), batch_size=0)


@case("pipeline", "numpy counts (np.int64 steps, np.int32 batch)", accept=True)
def _(tmp):
    import numpy as np

    pipe = tiny_pipeline()
    got = pipe(batch_size=np.int32(2), num_inference_steps=np.int64(2), output_type="np", generator=seeded()).images
    want = pipe(batch_size=2, num_inference_steps=2, output_type="np", generator=seeded()).images
    if got.shape != want.shape or not np.array_equal(got, want):
        return f"numpy counts gave other samples than Python ints: {describe(got)}"
    return image_problem(got)


@case("pipeline", "numpy latents", accept=True)
def _(tmp):
    import numpy as np

    pipe = tiny_pipeline()
    eps = pipe.vae.sample_noise(3, generator=seeded(0))
    got = pipe(latents=eps.numpy(), num_inference_steps=2, output_type="np", generator=seeded(1)).images
    want = pipe(latents=eps, num_inference_steps=2, output_type="np", generator=seeded(1)).images
    if got.shape != want.shape or not np.array_equal(got, want):
        return f"numpy latents gave other samples than the same tensor: {describe(got)}"
    return None


@case("pipeline", "latents of the wrong shape", clear=[r"latents", r"shape"])
def _(tmp):
    import torch

    return sample_problem(tiny_pipeline(), latents=torch.zeros(2, 3))


@case("pipeline", "latents holding NaN", clear=[r"latents", r"NaN"])
def _(tmp):
    pipe = tiny_pipeline()
    eps = pipe.vae.sample_noise(2, generator=seeded())
    eps[0, 0] = float("nan")
    return sample_problem(pipe, latents=eps)


@case("pipeline", "generator=0 (a seed, not a Generator)", clear=[r"generator", r"torch\.Generator"])
def _(tmp):
    return sample_problem(tiny_pipeline(), generator=0)


@case("pipeline", "3 generators for batch_size=2", clear=[r"generator", r"batch_size"])
def _(tmp):
    return sample_problem(tiny_pipeline(), generator=[seeded(i) for i in range(3)])


@case("pipeline", "temperature=1e6", clear=[r"temperature", r"\(0, ?10\]|range|at most"])
def _(tmp):
    return sample_problem(tiny_pipeline(), temperature=1e6)


@case("pipeline", "temperature=nan", clear=[r"temperature"])
def _(tmp):
    return sample_problem(tiny_pipeline(), temperature=float("nan"))


@case("pipeline", "potential=''", clear=[r"potential", r"exact"])
def _(tmp):
    return sample_problem(tiny_pipeline(), potential="")


@case("pipeline", "output_type='numpy'", clear=[r"output_type", r"'np'"])
def _(tmp):
    return sample_problem(tiny_pipeline(), output_type="numpy")


@case("pipeline", "step_size=inf", clear=[r"step_size", r"finite"])
def _(tmp):
    return sample_problem(tiny_pipeline(), step_size=float("inf"))


@case("pipeline", "step_size=-0.01", clear=[r"step_size", r"> ?0|positive"])
def _(tmp):
    return sample_problem(tiny_pipeline(), step_size=-0.01)


@case("pipeline", "step_size=1e6 with K=3 (diverging chain)", clear=[r"diverged|NaN|non-finite", r"step"])
def _(tmp):
    out = tiny_pipeline()(batch_size=2, num_inference_steps=3, step_size=1e6, output_type="np", generator=seeded())
    return image_problem(out.images)  # images that are still sane would be fine


@case("pipeline", "callback returning latents of the wrong shape", clear=[r"callback_on_step_end", r"shape"])
def _(tmp):
    pipe = tiny_pipeline()
    out = pipe(
        batch_size=2,
        num_inference_steps=2,
        output_type="np",
        callback_on_step_end=lambda p, i, t, d: {"latents": d["latents"][:1]},
    )
    return f"accepted a 1-row chain state for 2 chains: {describe(out.images)}"


@case("pipeline", "NaN weights: sampling", clear=[r"NaN|non-finite"])
def _(tmp):
    return sample_problem(nan_ebm(tiny_pipeline()), num_inference_steps=2)


@case("pipeline", "NaN weights: pipe.energy", clear=[r"energ", r"NaN"])
def _(tmp):
    import torch

    scores = nan_ebm(tiny_pipeline()).energy(torch.rand(3, 1, 8, 8))
    return f"returned energies {scores.tolist()}"


@case("pipeline", "NaN weights: pipe.log_density", clear=[r"log-densit|log_density", r"NaN"])
def _(tmp):
    import torch

    scores = nan_ebm(tiny_pipeline()).log_density(torch.rand(3, 1, 8, 8))
    return f"returned log-densities {scores.tolist()}"


@case("pipeline", "empty batch to pipe.energy", clear=[r"no images|empty"])
def _(tmp):
    import torch

    scores = tiny_pipeline().energy(torch.empty(0, 1, 8, 8))
    return f"returned {tuple(scores.shape)} energies for an empty batch"


@case("pipeline", "PIL images to pipe.energy", accept=True)
def _(tmp):
    import numpy as np
    import torch
    from PIL import Image

    pipe = tiny_pipeline()
    images = [Image.fromarray((np.random.default_rng(i).random((8, 8)) * 255).astype(np.uint8)) for i in range(2)]
    got = pipe.energy(images)
    want = pipe.energy(torch.from_numpy(np.stack([np.asarray(i, np.float32)[None] / 255 for i in images])))
    if not torch.allclose(got, want):
        return f"PIL energies {got.tolist()} differ from the tensor's {want.tolist()}"
    return None


@case("pipeline", "16x16 images to an 8x8 pipe.energy", clear=[r"shape", r"8, 8"])
def _(tmp):
    import torch

    scores = tiny_pipeline().energy(torch.rand(2, 1, 16, 16))
    return f"scored 16x16 images with an 8x8 model: {scores.tolist()}"


@case("pipeline", "uint8-range images (0..255) to pipe.energy", clear=[r"\[0, ?1\]", r"255"])
def _(tmp):
    import torch

    scores = tiny_pipeline().energy(torch.rand(2, 1, 8, 8) * 255)
    return f"scored 0..255 images as if in [0, 1]: {scores.tolist()}"


@case("pipeline", "log_density(method='bogus')", clear=[r"method", r"elbo"])
def _(tmp):
    import torch

    scores = tiny_pipeline().log_density(torch.rand(2, 1, 8, 8), method="bogus")
    return f"returned {scores.tolist()}"


@case("pipeline", "VAEBMPipeline(8x8 VAE, 16x16 EBM) then sample", clear=[r"16", r"8"])
def _(tmp):
    from vaebm_hub import VAEBMVAE, LangevinScheduler, VAEBMEnergyModel, VAEBMPipeline

    pipe = VAEBMPipeline(
        vae=VAEBMVAE().eval(), ebm=VAEBMEnergyModel(sample_size=16).eval(), scheduler=LangevinScheduler()
    )
    pipe.set_progress_bar_config(disable=True)
    return sample_problem(pipe)


@case("pipeline", "drop_nonfinite=True when every chain diverges", clear=[r"diverged|NaN|non-finite"])
def _(tmp):
    log = tmp / "warnings.log"
    with captured_output(log):
        out = tiny_pipeline()(
            batch_size=2, num_inference_steps=3, step_size=1e6, drop_nonfinite=True, output_type="np",
            generator=seeded(),
        )  # fmt: skip
    said = log.read_text().strip()
    if len(out.images) == 0 and not said:
        return "returned 0 of 2 images (every chain diverged) with no error and no warning"
    return image_problem(out.images) if len(out.images) else Fine(f"0 images, with a warning: {said[-200:]}")


@case("pipeline", "step_size=np.float32(0.01)", accept=True)
def _(tmp):
    import numpy as np

    pipe = tiny_pipeline()
    got = pipe(batch_size=2, num_inference_steps=2, step_size=np.float32(0.01), output_type="np", generator=seeded())
    want = pipe(batch_size=2, num_inference_steps=2, step_size=float(np.float32(0.01)), output_type="np",
                generator=seeded())  # fmt: skip
    return None if np.array_equal(got.images, want.images) else "np.float32 step size gave other samples"


@case("pipeline", "a list of (1, 8, 8) tensors to pipe.energy", accept=True)
def _(tmp):
    import torch

    pipe = tiny_pipeline()
    images = torch.rand(2, 1, 8, 8, generator=seeded())
    got, want = pipe.energy(list(images)), pipe.energy(images)
    return None if torch.allclose(got, want) else f"energies {got.tolist()} differ from {want.tolist()}"


@case("pipeline", "NaN images to pipe.energy", clear=[r"images", r"NaN"])
def _(tmp):
    import torch

    scores = tiny_pipeline().energy(torch.full((2, 1, 8, 8), float("nan")))
    return f"returned energies {scores.tolist()}"


# ====================================================================================================== loading
@case("loading", "truncated ebm weights", clear=[r"diffusion_pytorch_model\.safetensors", r"corrupt|partial|truncat"])
def _(tmp):
    weights = saved_pipeline(tmp) / "ebm" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return load_and_sample(tmp / "pipe")


@case("loading", "missing vae weights", clear=[r"vae", r"no safetensors weights|missing|not found"])
def _(tmp):
    (saved_pipeline(tmp) / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    return load_and_sample(tmp / "pipe")


@case("loading", "corrupt vae/config.json", clear=[r"config\.json", r"JSON|corrupt"])
def _(tmp):
    (saved_pipeline(tmp) / "vae" / "config.json").write_text("{not json")
    return load_and_sample(tmp / "pipe")


@case("loading", "corrupt scheduler_config.json", clear=[r"scheduler_config\.json", r"JSON|corrupt"])
def _(tmp):
    (saved_pipeline(tmp) / "scheduler" / "scheduler_config.json").write_text("{not json")
    return load_and_sample(tmp / "pipe")


@case("loading", "corrupt model_index.json", clear=[r"model_index\.json", r"JSON|corrupt"])
def _(tmp):
    (saved_pipeline(tmp) / "model_index.json").write_text('{"_class_name": "VAEBMPipeline", ')
    return load_and_sample(tmp / "pipe")


@case("loading", "scheduler folder deleted", clear=[r"scheduler", r"does not exist|missing"])
def _(tmp):
    shutil.rmtree(saved_pipeline(tmp) / "scheduler")
    return load_and_sample(tmp / "pipe")


@case("loading", "vae config num_latent_per_group not matching the weights", clear=[r"config\.json", r"match"])
def _(tmp):
    edit_json(saved_pipeline(tmp) / "vae" / "config.json", num_latent_per_group=8)
    return load_and_sample(tmp / "pipe")


@case("loading", "vae config sample_size=16 (weights for 8)", clear=[r"vae", r"config\.json", r"match"])
def _(tmp):
    edit_json(saved_pipeline(tmp) / "vae" / "config.json", sample_size=16)
    return load_and_sample(tmp / "pipe")


@case("loading", "ebm config sample_size=16 (vae for 8)", clear=[r"16", r"8", r"sample_size|expects"])
def _(tmp):
    edit_json(saved_pipeline(tmp) / "ebm" / "config.json", sample_size=16)
    return load_and_sample(tmp / "pipe")


@case("loading", "vae declared as ['diffusers', 'AutoencoderKL']", clear=[r"vae", r"VAEBMVAE", r"AutoencoderKL"])
def _(tmp):
    edit_json(saved_pipeline(tmp) / "model_index.json", vae=["diffusers", "AutoencoderKL"])
    return load_and_sample(tmp / "pipe")


@case("loading", "a component named '..'", clear=[r"'\.\.'", r"folder|name"])
def _(tmp):
    edit_json(saved_pipeline(tmp) / "model_index.json", **{"..": ["vaebm_hub", "VAEBMVAE"]})
    return load_and_sample(tmp / "pipe")


@case("loading", "a 16x16 EBM saved beside an 8x8 VAE", clear=[r"16", r"8", r"energy network|ebm"])
def _(tmp):
    from vaebm_hub import VAEBMEnergyModel

    folder = saved_pipeline(tmp)
    shutil.rmtree(folder / "ebm")
    VAEBMEnergyModel(sample_size=16).save_pretrained(folder / "ebm")
    return load_and_sample(folder)


@case("loading", "NaN weights in a saved ebm, then sampled", clear=[r"NaN|non-finite"])
def _(tmp):
    pipe = nan_ebm(tiny_pipeline())
    pipe.save_pretrained(tmp / "pipe")
    return load_and_sample(tmp / "pipe")


@case("loading", "folder that does not exist", clear=[r"does-not-exist"])
def _(tmp):
    return load_and_sample(tmp / "does-not-exist")


@case("loading", "scheduler_config default_num_inference_steps='ten'", clear=[r"default_num_inference_steps"])
def _(tmp):
    edit_json(saved_pipeline(tmp) / "scheduler" / "scheduler_config.json", default_num_inference_steps="ten")
    return load_and_sample(tmp / "pipe")


@case("loading", "scheduler_config step_size='0.01' (a string)", clear=[r"step_size", r"number"])
def _(tmp):
    edit_json(saved_pipeline(tmp) / "scheduler" / "scheduler_config.json", step_size="0.01")
    return load_and_sample(tmp / "pipe")


@case("loading", "scheduler_config step_size=-1", clear=[r"step_size", r"> ?0"])
def _(tmp):
    edit_json(saved_pipeline(tmp) / "scheduler" / "scheduler_config.json", step_size=-1)
    return load_and_sample(tmp / "pipe")


@case("loading", "vae config num_latent_per_group='eight'", clear=[r"num_latent_per_group"])
def _(tmp):
    edit_json(saved_pipeline(tmp) / "vae" / "config.json", num_latent_per_group="eight")
    return load_and_sample(tmp / "pipe")


@case("loading", "vae/config.json holding a JSON list", clear=[r"config\.json", r"object|dict|mapping|not a"])
def _(tmp):
    (saved_pipeline(tmp) / "vae" / "config.json").write_text("[1, 2]")
    return load_and_sample(tmp / "pipe")


@case("loading", "model_index.json potential='bogus'", clear=[r"potential", r"exact"])
def _(tmp):
    edit_json(saved_pipeline(tmp) / "model_index.json", potential="bogus")
    return load_and_sample(tmp / "pipe")


@case("loading", "variant='fp16' that was never saved", clear=[r"fp16", r"variant"])
def _(tmp):
    from vaebm_hub import VAEBMPipeline

    VAEBMPipeline.from_pretrained(saved_pipeline(tmp), variant="fp16")
    return "loaded a variant that does not exist"


# ====================================================================================================== trainer
TINY_RUN = [
    "--dataset_name", "digits", "--train_batch_size", "8", "--ebm_n_channel", "4", "--langevin_steps", "2",
    "--sample_langevin_steps", "2", "--num_sample_images", "4", "--data_init_batches", "1", "--report_to", "none",
    "--readjust_bn_batches", "2", "--no-channels_last", "--vae_max_train_steps", "2",
]  # fmt: skip


def train(out: Path, *flags: str, ebm_steps: int = 2) -> None:
    from vaebm_hub.training import main

    main([*TINY_RUN, "--ebm_max_train_steps", str(ebm_steps), "--output_dir", str(out), *flags])


def trained_with(tmp: Path, *flags: str) -> str:
    """Train the tiny run with ``flags`` (which should have been refused) and say how it ended."""
    train(tmp / "out", *flags)
    problem = weights_problem(tmp / "out")
    return f"accepted {' '.join(flags)} and trained to the end" + (f" ({problem})" if problem else "")


def flag_case(flag: str, value: str, clear: tuple[str, ...]) -> None:
    case("trainer", f"{flag} {value}", clear=clear, early=True)(lambda tmp: trained_with(tmp, flag, value))


flag_case("--lr_scheduler", "bogus", (r"--lr_scheduler", r"cosine"))
flag_case("--resolution", "-8", (r"--resolution", r"positive|>= ?1"))
flag_case("--learning_rate", "0", (r"--learning_rate", r"> ?0|positive"))
flag_case("--ebm_learning_rate", "inf", (r"--ebm_learning_rate", r"finite"))
flag_case("--spectral_reg_coeff", "nan", (r"--spectral_reg_coeff", r"finite"))
flag_case("--buffer_size", "0", (r"--buffer_size", r">= ?1|positive"))
flag_case("--data_init_batches", "0", (r"--data_init_batches", r">= ?1|positive|--no_data_init"))
flag_case("--langevin_step_size", "nan", (r"--langevin_step_size", r"finite"))
flag_case("--langevin_steps", "0", (r"--langevin_steps", r">= ?1|positive"))
flag_case("--adam_beta1", "1.5", (r"--adam_beta1", r"1"))
flag_case("--train_batch_size", "0", (r"--train_batch_size", r">= ?1|positive"))


flag_case("--num_sample_images", "0", (r"--num_sample_images", r">= ?1|positive"))
flag_case("--eval_batch_size", "0", (r"--eval_batch_size|--num_sample_images", r">= ?1|positive"))
flag_case("--dataloader_num_workers", "-1", (r"--dataloader_num_workers", r">= ?0|non-negative"))
flag_case("--mixed_precision", "fp8", (r"--mixed_precision", r"fp8"))
flag_case("--ebm_layout", "bogus", (r"layout", r"bogus"))
flag_case("--resume_from_checkpoint", "checkpoint-99", (r"checkpoint-99", r"latest"))


@case("trainer", "--use_ema --ema_inv_gamma nan", clear=[r"--ema_inv_gamma"], early=True)
def _(tmp):
    return trained_with(tmp, "--use_ema", "--ema_inv_gamma", "nan")


@case("trainer", "--vae_config holding invalid JSON", clear=[r"--vae_config|bad\.json", r"JSON"], early=True)
def _(tmp):
    (tmp / "bad.json").write_text("{not json")
    return trained_with(tmp, "--vae_config", str(tmp / "bad.json"))


@case("trainer", "--vae_config with num_latent_per_group -4", clear=[r"num_latent_per_group"], early=True)
def _(tmp):
    (tmp / "vae.json").write_text(json.dumps({"num_latent_per_group": -4}))
    return trained_with(tmp, "--vae_config", str(tmp / "vae.json"))


@case("trainer", "--dataset_name digitz", clear=[r"digitz", r"digits"], early=True)
def _(tmp):
    from vaebm_hub.training import main

    main([*TINY_RUN[2:], "--dataset_name", "digitz", "--ebm_max_train_steps", "2", "--output_dir", str(tmp / "out")])
    return "trained on something called digitz"


@case("trainer", "--output_dir that is a file", clear=[r"--output_dir", r"file"], early=True)
def _(tmp):
    (tmp / "out").write_text("a file")
    train(tmp / "out")
    return "trained into a file path"


def resume_past(tmp: Path, corrupt: Callable[[Path], None]) -> str | None:
    """Train the tiny run with a checkpoint per step, corrupt the newest checkpoint, resume with ``latest`` and one
    more step: right is a run that falls back to the previous checkpoint, says which one it skipped, and ends with
    finite weights."""
    out = tmp / "out"
    train(out, "--checkpointing_steps", "1")
    latest = max(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    corrupt(latest)
    log = tmp / "resume.log"
    try:
        with captured_output(log):
            train(out, "--checkpointing_steps", "1", "--resume_from_checkpoint", "latest", ebm_steps=3)
    except BaseException as error:  # noqa: B036 - keep what the trainer printed about the checkpoints
        error.args = (f"{error} [resume log: ...{' '.join(log.read_text()[-400:].split())}]",)
        raise
    text = log.read_text()
    problem = weights_problem(out)
    if problem:
        return f"resumed and saved {problem}"
    if latest.name not in text:
        return f"resumed without saying that {latest.name} was skipped (or resumed from the corrupt one)"
    if not (out / "checkpoint-5").is_dir():
        return "the resumed run did not reach step 5"
    said = [line.strip() for line in text.splitlines() if latest.name in line]
    said.sort(key=lambda line: not line.startswith("[resume]"))
    return Fine(f"fell back past {latest.name} and trained on to step 5; said: {said[0]}")


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def nan_safetensors(path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in tensors.items()}, path)


@case("trainer", "resume latest: truncated model.safetensors", accept=True)
def _(tmp):
    return resume_past(tmp, lambda c: truncate(c / "model.safetensors"))


@case("trainer", "resume latest: invalid training_state.json", accept=True)
def _(tmp):
    return resume_past(tmp, lambda c: (c / "training_state.json").write_text("{not json"))


@case("trainer", "resume latest: NaN-filled model.safetensors", accept=True)
def _(tmp):
    return resume_past(tmp, lambda c: nan_safetensors(c / "model.safetensors"))


@case("trainer", "resume from an explicit truncated checkpoint", clear=[r"checkpoint-4", r"model\.safetensors"])
def _(tmp):
    out = tmp / "out"
    train(out, "--checkpointing_steps", "1")
    truncate(out / "checkpoint-4" / "model.safetensors")
    train(out, "--checkpointing_steps", "1", "--resume_from_checkpoint", str(out / "checkpoint-4"), ebm_steps=3)
    return weights_problem(out) or "resumed from a truncated checkpoint without an error"


# ====================================================================================================== converter
@case("converter", "NVAE checkpoint with corrupted bytes in the middle", clear=[r"checkpoint\.pt", r"CRC|corrupt"])
def _(tmp):
    from vaebm_hub.convert import load_official_nvae

    corrupt_middle(official("nvae_A_cifar10_normal"), tmp / "checkpoint.pt")
    vae = load_official_nvae(tmp / "checkpoint.pt")
    if parameters_differ(vae, load_official_nvae(official("nvae_A_cifar10_normal"))):
        return "loaded a damaged checkpoint: the weights silently differ from the original's"
    return "loaded a damaged checkpoint (the damage missed the weights)"


@case("converter", "truncated NVAE checkpoint", clear=[r"checkpoint\.pt", r"corrupt|partial"])
def _(tmp):
    from vaebm_hub.convert import load_official_nvae

    data = official("nvae_A_cifar10_normal").read_bytes()
    (tmp / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    load_official_nvae(tmp / "checkpoint.pt")
    return "loaded half a checkpoint"


@case("converter", "NVAE checkpoint with NaN weights", clear=[r"NaN", r"nan\.pt"])
def _(tmp):
    import torch

    from vaebm_hub.convert import load_official_nvae

    checkpoint = torch.load(official("nvae_A_cifar10_normal"), weights_only=False)
    key = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][key] = torch.full_like(checkpoint["state_dict"][key], float("nan"))
    torch.save(checkpoint, tmp / "nan.pt")
    vae = load_official_nvae(tmp / "nan.pt")
    return f"converted NaN weights: {nonfinite_parameters(vae)[:3]}"


@case("converter", "EBM checkpoint with NaN weights", clear=[r"NaN", r"nan\.pth"])
def _(tmp):
    import torch

    from vaebm_hub.convert import load_official_ebm

    checkpoint = torch.load(official("ebm_cifar32"), weights_only=False)
    key = next(k for k, v in checkpoint["model"].items() if v.is_floating_point())
    checkpoint["model"][key] = torch.full_like(checkpoint["model"][key], float("nan"))
    torch.save(checkpoint, tmp / "nan.pth")
    ebm = load_official_ebm(tmp / "nan.pth")
    return f"converted NaN weights: {nonfinite_parameters(ebm)[:3]}"


@case("converter", "32x32 NVAE + 64x64 celeba64 EBM", clear=[r"32", r"64", r"celeba64|pair|same"])
def _(tmp):
    from vaebm_hub.convert import convert_official

    pipe = convert_official(
        official("nvae_A_cifar10_normal"), tmp / "out", ebm_checkpoint=official("ebm_celeba64")
    )  # fmt: skip
    return f"converted a 64-pixel energy network into a {pipe.vae.data_shape} pipeline ({pipe.ebm.config.layout})"


@case("converter", "NVAE args asking for 40000 channels", clear=[r"architecture|channels|shape"])
def _(tmp):
    import argparse

    import torch

    from vaebm_hub.convert import load_official_nvae

    huge = torch.load(official("nvae_A_cifar10_normal"), weights_only=False)
    huge["args"] = argparse.Namespace(**{**vars(huge["args"]), "num_channels_enc": 40000, "num_channels_dec": 40000})
    torch.save(huge, tmp / "huge.pt")
    load_official_nvae(tmp / "huge.pt")
    return "built a 40000-channel model"


@case("converter", "--ebm_layout imagenet", clear=[r"imagenet", r"layout"])
def _(tmp):
    from vaebm_hub.convert import convert_official

    convert_official(
        official("nvae_A_cifar10_normal"), tmp / "out", ebm_checkpoint=official("ebm_cifar32"), ebm_layout="imagenet"
    )
    return "converted with an unknown layout"


@case("converter", "missing checkpoint file", clear=[r"nowhere\.pt"])
def _(tmp):
    from vaebm_hub.convert import load_official_nvae

    load_official_nvae(tmp / "nowhere.pt")
    return "loaded a file that does not exist"


@case("converter", "an NVAE checkpoint passed as the EBM", clear=[r"EBM|energy", r"NVAE|--nvae"])
def _(tmp):
    from vaebm_hub.convert import convert_official

    nvae = official("nvae_A_cifar10_normal")
    pipe = convert_official(nvae, tmp / "out", ebm_checkpoint=nvae)
    return f"converted an NVAE file as the energy network ({pipe.ebm.config.layout})"


@case("converter", "an EBM checkpoint passed as the NVAE", clear=[r"NVAE", r"state_dict|args"])
def _(tmp):
    from vaebm_hub.convert import load_official_nvae

    vae = load_official_nvae(official("ebm_cifar32"))
    return f"converted an EBM file as a VAE ({vae.data_shape})"


@case("converter", "--dataset bogus", clear=[r"bogus", r"cifar10"])
def _(tmp):
    from vaebm_hub.convert import convert_official

    convert_official(official("nvae_A_cifar10_normal"), tmp / "out", dataset="bogus")
    return "converted with an unknown dataset preset"


@case("converter", "a checkpoint of random bytes", clear=[r"rand\.pt", r"corrupt|partial"])
def _(tmp):
    from vaebm_hub.convert import load_official_nvae

    (tmp / "rand.pt").write_bytes(__import__("random").Random(0).randbytes(5000))
    load_official_nvae(tmp / "rand.pt")
    return "loaded random bytes"


def damaged_nvae(tmp: Path) -> None:
    corrupt_middle(official("nvae_A_cifar10_normal"), tmp / "damaged.pt")


cli_case(
    "converter",
    "vaebm-hub convert of a damaged checkpoint",
    ("convert", "--nvae", "{tmp}/damaged.pt", "--output", "{tmp}/out"),
    clear=[r"damaged\.pt", r"CRC|corrupt"],
    setup=damaged_nvae,
)


# ====================================================================================================== cli
def truncated_pipeline(tmp: Path) -> None:
    weights = saved_pipeline(tmp) / "ebm" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


cli_case("cli", "sample /nonexistent", ("sample", "{tmp}/nonexistent"), clear=[r"nonexistent"])
cli_case(
    "cli",
    "sample a pipeline with truncated weights",
    ("sample", "{tmp}/pipe", "--output", "{tmp}/grid.png"),
    clear=[r"diffusion_pytorch_model\.safetensors", r"corrupt|partial"],
    setup=truncated_pipeline,
)
cli_case(
    "cli",
    "sample --steps -1",
    ("sample", "{tmp}/pipe", "--steps", "-1", "--output", "{tmp}/grid.png"),
    clear=[r"num_inference_steps|--steps", r">= ?0"],
    setup=saved_pipeline,
)
cli_case(
    "cli",
    "sample --temperature 1e6",
    ("sample", "{tmp}/pipe", "--temperature", "1e6", "--output", "{tmp}/grid.png"),
    clear=[r"temperature"],
    setup=saved_pipeline,
)
cli_case(
    "cli",
    "sample --num_images 0",
    ("sample", "{tmp}/pipe", "--num_images", "0", "--output", "{tmp}/grid.png"),
    clear=[r"batch_size|--num_images", r"positive|>= ?1"],
    setup=saved_pipeline,
)
cli_case(
    "cli",
    "evaluate with neither --dataset nor --train_data_dir",
    ("evaluate", "{tmp}/pipe", "--output_dir", "{tmp}/eval"),
    clear=[r"--dataset", r"--train_data_dir"],
    setup=saved_pipeline,
)
cli_case(
    "cli",
    "convert --nvae missing.pt",
    ("convert", "--nvae", "{tmp}/missing.pt", "--output", "{tmp}/out"),
    clear=[r"missing\.pt"],
)
cli_case(
    "cli",
    "train --dataset_name digitz",
    ("train", "--dataset_name", "digitz", "--report_to", "none", "--output_dir", "{tmp}/out"),
    clear=[r"digitz"],
)
cli_case(
    "cli",
    "train --learning_rate 0",
    ("train", "--dataset_name", "digits", "--learning_rate", "0", "--report_to", "none", "--output_dir", "{tmp}/o"),
    clear=[r"--learning_rate"],
)


cli_case(
    "cli",
    "sample --device cuda (torch without CUDA)",
    ("sample", "{tmp}/pipe", "--device", "cuda", "--output", "{tmp}/grid.png"),
    clear=[r"(?i)cuda"],
    setup=saved_pipeline,
)
cli_case(
    "cli",
    "sample --num_threads -1",
    ("sample", "{tmp}/pipe", "--num_threads", "-1", "--output", "{tmp}/grid.png"),
    clear=[r"num_threads|threads", r"positive|>= ?1"],
    setup=saved_pipeline,
)
cli_case(
    "cli",
    "sample --upscale -2",
    ("sample", "{tmp}/pipe", "--upscale", "-2", "--output", "{tmp}/grid.png"),
    clear=[r"upscale|scale", r"positive|>= ?1"],
    setup=saved_pipeline,
)
cli_case(
    "cli",
    "push while HF_HUB_OFFLINE=1",
    ("push", "{tmp}/pipe", "--repo_id", "someone/x"),
    clear=[r"HF_HUB_OFFLINE"],
    setup=saved_pipeline,
)
cli_case(
    "cli",
    "export-remote-code of a folder that is not a pipeline",
    ("export-remote-code", "{tmp}/nothing", "{tmp}/out"),
    clear=[r"nothing", r"model_index\.json|pipeline"],
)
cli_case(
    "cli",
    "evaluate --dataset bogus",
    ("evaluate", "{tmp}/pipe", "--dataset", "bogus", "--output_dir", "{tmp}/eval"),
    clear=[r"bogus", r"digits"],
    setup=saved_pipeline,
)


# ====================================================================================================== space
def space_app():
    import importlib.util

    import vaebm_hub

    app = Path(vaebm_hub.__file__).resolve().parents[2] / "examples" / "gradio_space" / "app.py"
    spec = importlib.util.spec_from_file_location("vaebm_space_app", app)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@case("space", "request with 1.9 Langevin steps", clear=[r"steps", r"whole number"])
def _(tmp):
    return f"accepted, as {space_app().check_request(4, 1.9, 1e-3, 1.0, 0)}"


@case("space", "request with NaN step size", clear=[r"step"])
def _(tmp):
    return f"accepted, as {space_app().check_request(4, 3, float('nan'), 1.0, 0)}"


@case("space", "request of 64 images x 200 steps", clear=[r"at most"])
def _(tmp):
    return f"accepted, as {space_app().check_request(64, 200, 1e-3, 1.0, 0)}"


@case("space", "a model path that is not served", clear=[r"unknown model"])
def _(tmp):
    grids = space_app().make_generate({"tiny": tiny_pipeline()})("/etc/passwd", 4, 3, 5e-2, 1.0, 0)
    return f"served a model it was not started with: {grids[-1]}"


# ====================================================================================================== child
def run_child(index: int, tmp: Path, result_file: Path) -> None:
    """Run case ``index`` (its setup only, for a CLI case) and write what happened to ``result_file``."""
    item = CASES[index]
    result: dict = {"status": "returned", "problem": None}
    try:
        import vaebm_hub

        result["module"] = vaebm_hub.__file__
        problem = item.run(tmp) if item.run is not None else None
        if isinstance(problem, Fine):
            result["note"], problem = str(problem), None
        result["problem"] = None if item.cli else problem  # a CLI case's run() is its setup
    except SystemExit as error:
        result.update(status="raised", type="SystemExit", message=f"SystemExit({error.code})")
    except BaseException as error:  # noqa: B036 - every way the case can end is what this benchmark records
        result.update(status="raised", type=type(error).__name__, message=f"{type(error).__name__}: {error}")
        result["traceback"] = traceback.format_exc()[-2000:]
    result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result_file.write_text(json.dumps(result))


# ====================================================================================================== parent
def child_env(src: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("VAEBM_HUB_DEBUG")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(src), *filter(None, [os.environ.get("PYTHONPATH")])]),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        GRADIO_ANALYTICS_ENABLED="False",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def run_process(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> tuple[int | None, float]:
    """Run ``cmd`` with stdout and stderr to ``log``; ``(returncode, seconds)``, returncode ``None`` on timeout (the
    whole process group is killed)."""
    start = time.monotonic()
    with log.open("w") as handle:
        process = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=limit_memory,
        )  # fmt: skip
        try:
            returncode = process.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            returncode = None
    return returncode, time.monotonic() - start


def excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT else text[: EXCERPT - 3] + "..."


def matches(patterns: tuple[str, ...], message: str) -> bool:
    return all(re.search(pattern, message, re.S) for pattern in patterns)


def killed(returncode: int | None, seconds: float) -> str | None:
    if returncode is None:
        return f"timed out after {TIMEOUT_S} s"
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return None


def trained_anything(out: Path) -> list[str]:
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir() if p.name.startswith(("checkpoint-", ".tmp-checkpoint-", "samples")))


def classify_python(item: Case, result: dict | None, returncode, seconds, log: Path, tmp: Path) -> tuple[str, str]:
    crash = killed(returncode, seconds)
    if crash is not None or result is None:
        tail = log.read_text(errors="replace")[-400:] if log.exists() else ""
        if crash is None and returncode not in (0, None):
            return "unclear", f"the case process failed (exit {returncode}) before reporting: {tail}"
        return "crash", f"{crash or 'no result'}: {tail}"
    if result["status"] == "raised":
        message = result["message"]
        if result["type"] == "SystemExit":  # argparse: the message is on stderr
            lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            message = f"{message}: {' | '.join(lines[-2:])}"
        if result["type"] == "MemoryError" or "can't allocate memory" in message:
            message = f"[hit the {MEMORY_LIMIT_BYTES >> 30} GiB memory limit] {message}"
        if item.accept:
            return "unclear", f"refused a valid input: {message}"
        trained = trained_anything(tmp / "out") if item.early else []
        if not matches(item.clear, message):
            return "unclear", f"{message} (after training started: {trained})" if trained else message
        if trained:
            return "unclear", f"refused only after training started ({trained}): {message}"
        return "clear", message
    if result["problem"]:
        return "silent", result["problem"]
    return "ok", result.get("note") or "accepted; the result checked right"


def classify_cli(item: Case, returncode, seconds, log: Path) -> tuple[str, str]:
    output = log.read_text(errors="replace")
    lines = [line for line in output.splitlines() if line.strip()]
    crash = killed(returncode, seconds)
    if crash is not None:
        return "crash", f"{crash}: {' | '.join(lines[-3:])}"
    if returncode == 0:
        return "silent", f"exit 0: {' | '.join(lines[-2:])}"
    errors = [line for line in lines if "error" in line.lower()] or lines[-1:]
    message = f"exit {returncode}, {len(lines)} line(s): {' | '.join(errors[-2:])}"
    if "Traceback (most recent call last)" in output:
        return "unclear", f"traceback printed; {message}"
    return ("clear" if matches(item.clear, output) else "unclear"), message


def run_case(index: int, src: Path, work: Path) -> dict:
    item = CASES[index]
    tmp = work / f"case-{index:03d}"
    tmp.mkdir(parents=True)
    env = child_env(src)
    result_file, log = tmp / "result.json", tmp / "child.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(index), "--tmp", str(tmp)]
    returncode, seconds = run_process([*cmd, "--result", str(result_file)], env, tmp, log)
    result = json.loads(result_file.read_text()) if result_file.is_file() else None
    module = (result or {}).get("module")
    if item.cli:
        if result is not None and result["status"] == "raised":
            outcome, message = "unclear", f"the case's setup failed: {result['message']}"
        elif result is None:
            outcome, message = classify_python(item, None, returncode, seconds, log, tmp)
        else:
            args = [a.replace("{tmp}", str(tmp)) for a in item.cli]
            cli_log = tmp / "cli.log"
            returncode, cli_seconds = run_process([sys.executable, "-m", "vaebm_hub", *args], env, tmp, cli_log)
            seconds += cli_seconds
            outcome, message = classify_cli(item, returncode, cli_seconds, cli_log)
    else:
        outcome, message = classify_python(item, result, returncode, seconds, log, tmp)
    message = message.replace(str(tmp), "<tmp>")
    record = {"area": item.area, "name": item.name, "outcome": outcome, "message": excerpt(message)}
    record.update(seconds=round(seconds, 1), maxrss_mb=round((result or {}).get("maxrss_mb", math.nan), 0))
    if module:
        record["module"] = module
    return record


def counts(records: list[dict]) -> dict[str, int]:
    return {outcome: sum(r["outcome"] == outcome for r in records) for outcome in OUTCOMES}


def markdown(run: dict) -> str:
    records = run["cases"]
    total = counts(records)
    lines = [
        f"# Bad-input catalogue: {run['label']}",
        "",
        f"Source: `{run['src']}` (commit `{run['commit']}`), {len(records)} cases, {run['seconds']:.0f} s. "
        "Outcomes: clear = refused with a message naming the problem; ok = accepted and right; unclear = a raw "
        "error (or a valid input refused, or a flag refused only after training); silent = no error, wrong result; "
        "crash = killed (signal, timeout, memory limit). Written by `benchmarks/robustness.py`.",
        "",
        "| outcome | cases |",
        "| --- | ---: |",
        *(f"| {outcome} | {total[outcome]} |" for outcome in OUTCOMES),
        f"| handled (clear + ok) | {total['clear'] + total['ok']} |",
        "",
        "| area | " + " | ".join(OUTCOMES) + " |",
        "| --- | " + " | ".join("---:" for _ in OUTCOMES) + " |",
    ]
    for area in dict.fromkeys(r["area"] for r in records):
        row = counts([r for r in records if r["area"] == area])
        lines.append(f"| {area} | " + " | ".join(str(row[o]) for o in OUTCOMES) + " |")
    lines += ["", "| area | case | outcome | message |", "| --- | --- | --- | --- |"]
    for r in records:
        message = r["message"].replace("|", "\\|")
        lines.append(f"| {r['area']} | {r['name'].replace('|', '/')} | **{r['outcome']}** | {message} |")
    return "\n".join(lines) + "\n"


def comparison(before: dict, after: dict) -> str:
    b, a = counts(before["cases"]), counts(after["cases"])
    lines = [
        "# Bad-input catalogue: before and after",
        "",
        f"before: `{before['src']}` (commit `{before['commit']}`); after: `{after['src']}` (commit "
        f"`{after['commit']}`{', with uncommitted changes' if after.get('dirty') else ''}). "
        "Written by `benchmarks/robustness.py`.",
        "",
        "| outcome | before | after |",
        "| --- | ---: | ---: |",
        *(f"| {o} | {b[o]} | {a[o]} |" for o in OUTCOMES),
        f"| handled (clear + ok) | {b['clear'] + b['ok']} | {a['clear'] + a['ok']} |",
        "",
        "| area | case | before | after |",
        "| --- | --- | --- | --- |",
    ]
    old = {(r["area"], r["name"]): r["outcome"] for r in before["cases"]}
    for r in after["cases"]:
        was = old.get((r["area"], r["name"]), "-")
        mark = "" if was == r["outcome"] else " (changed)"
        lines.append(f"| {r['area']} | {r['name'].replace('|', '/')} | {was} | {r['outcome']}{mark} |")
    return "\n".join(lines) + "\n"


def git(src: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="folder holding the vaebm_hub package")
    parser.add_argument("--label", default=None, help="names the run: results/robustness_<label>.{json,md}")
    parser.add_argument("--cases", default="*", help="fnmatch patterns on area/name, comma-separated (default: all)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        run_child(args.child, args.tmp, args.result)
        return
    src = args.src.resolve()
    if not (src / "vaebm_hub" / "__init__.py").is_file():
        parser.error(f"--src {src} holds no vaebm_hub package")
    patterns = args.cases.split(",")
    selected = [i for i, c in enumerate(CASES) if any(fnmatch.fnmatch(c.key, p) for p in patterns)]
    start, records = time.monotonic(), []
    with tempfile.TemporaryDirectory(prefix="vaebm-robustness-") as work:
        for n, index in enumerate(selected, 1):
            record = run_case(index, src, Path(work))
            records.append(record)
            print(f"[{n}/{len(selected)}] {record['outcome']:>7}  {CASES[index].key}  ({record['seconds']} s)")
            print(f"          {record['message'][:160]}", flush=True)
    wrong = [r["module"] for r in records if "module" in r and not Path(r["module"]).is_relative_to(src)]
    if wrong:
        raise SystemExit(f"the cases imported vaebm_hub from {wrong[0]}, not from --src {src}")
    run = {
        "label": args.label or "",
        "src": str(src),
        "commit": git(src, "rev-parse", "--short", "HEAD").strip(),
        "dirty": bool(git(src, "status", "--porcelain", "--", ".").strip()),
        "seconds": time.monotonic() - start,
        "counts": counts(records),
        "cases": records,
    }
    stem = f"robustness_{args.label}" if args.label else "robustness"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(run, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(run))
    print(f"{run['counts']} -> {RESULTS / stem}.{{json,md}}")
    before, after = RESULTS / "robustness_before.json", RESULTS / "robustness_after.json"
    if before.is_file() and after.is_file():
        text = comparison(json.loads(before.read_text()), json.loads(after.read_text()))
        (RESULTS / "robustness_comparison.md").write_text(text)


if __name__ == "__main__":
    main()
