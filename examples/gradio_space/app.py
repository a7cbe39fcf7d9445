"""VAEBM demo: plain VAE samples beside their Langevin-refined VAEBM versions (same initial noise), the energy
``E(x)`` along each chain, and the chain as an animation.

    python examples/gradio_space/app.py --model PATH_OR_HUB_ID --port 7860

Without ``--model`` (or ``VAEBM_MODEL``, e.g. a Space variable) it loads ``outputs/demo/pipeline`` (relative to the
working directory) if it exists, else an untrained tiny pipeline, so the Space always starts. Serves on 127.0.0.1
unless ``--host`` or ``GRADIO_SERVER_NAME`` (set by Hugging Face Spaces) says otherwise. The generate event is exposed
to API clients as ``/generate``.
"""

from __future__ import annotations

import argparse
import functools
import io
import math
import os
import tempfile
import time
from pathlib import Path

import gradio as gr
import torch
from matplotlib.figure import Figure
from PIL import Image

from vaebm_hub import VAEBMVAE, LangevinScheduler, VAEBMEnergyModel, VAEBMPipeline
from vaebm_hub.figures import image_grid

MAX_IMAGES = 64
MAX_STEPS = 500
STEP_SIZE_RANGE = (1e-7, 0.1)
TEMPERATURE_RANGE = (0.1, 1.5)
MAX_SEED = 2**31 - 1
MAX_FRAMES = 40  # the animation keeps at most this many chain states (evenly strided) besides the start
DEFAULT_PIPELINE = Path("outputs/demo/pipeline")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ANIMATIONS = tempfile.TemporaryDirectory(prefix="vaebm_demo_")  # GIFs live here until Gradio has copied them
ANIMATION_TTL_S = 300


def untrained_pipeline() -> VAEBMPipeline:
    """A seeded tiny pipeline (1x8x8 images) with random weights: it shows the mechanics, not good samples."""
    torch.manual_seed(0)
    vae = VAEBMVAE()
    torch.manual_seed(1)
    ebm = VAEBMEnergyModel()
    return VAEBMPipeline(vae=vae, ebm=ebm, scheduler=LangevinScheduler(default_num_inference_steps=20, step_size=5e-3))


@functools.lru_cache(maxsize=2)
def load_pipeline(model: str) -> VAEBMPipeline:
    """The pipeline for ``model`` (folder or Hub id); ``""`` = ``outputs/demo/pipeline`` or the untrained one."""
    if not model:
        model = str(DEFAULT_PIPELINE) if (DEFAULT_PIPELINE / "model_index.json").is_file() else ""
    try:
        pipe = VAEBMPipeline.from_pretrained(model) if model else untrained_pipeline()
    except Exception as error:  # any loading failure (missing folder, offline Hub id, bad files) is shown in the UI
        raise gr.Error(f"Could not load the pipeline {model!r}: {error}") from error
    if len(pipe.vae.data_shape) != 3:
        raise gr.Error(f"{model!r} models vectors, not images; this demo shows image pipelines.")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(DEVICE)


def energy_plot(trace: torch.Tensor) -> Image.Image:
    """Energies ``(K + 1, B)`` along the chains: one thin line per chain, their mean in bold."""
    trace = trace.float().cpu().numpy()
    fig = Figure(figsize=(6, 4.5), dpi=100)  # no pyplot: handlers run in threads
    ax = fig.subplots()
    ax.plot(trace, color="tab:blue", alpha=0.25, linewidth=0.8)
    ax.plot(trace.mean(axis=1), color="tab:red", linewidth=2, label="mean over chains")
    ax.set(xlabel="Langevin step k", ylabel="energy E(x)  (lower = more data-like)")
    ax.legend(loc="upper right")
    fig.tight_layout(rect=(0, 0, 1, 0.92))  # keep the top free for the component's label
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def chain_animation(frames: list[torch.Tensor]) -> str:
    """A looping GIF of the chain states (grids), holding the last frame; returns its path. GIFs older than
    ``ANIMATION_TTL_S`` (long since copied into Gradio's cache) are deleted so that a long-running Space does not
    fill its disk."""
    folder = Path(ANIMATIONS.name)
    for old in folder.glob("*.gif"):
        if time.time() - old.stat().st_mtime > ANIMATION_TTL_S:
            old.unlink(missing_ok=True)
    grids = [image_grid(frame, gap=2) for frame in frames]
    durations = [120] * (len(grids) - 1) + [1200]
    with tempfile.NamedTemporaryFile(suffix=".gif", prefix="chain_", dir=folder, delete=False) as handle:
        grids[0].save(handle, format="GIF", save_all=True, append_images=grids[1:], duration=durations, loop=0)
    return handle.name


def check_bounds(num_images: int, steps: int, step_size: float, temperature: float, seed: int) -> None:
    """Reject requests outside the demo's limits (the UI enforces them too; API callers may not)."""
    limits = [
        (1 <= num_images <= MAX_IMAGES, f"number of images must be 1..{MAX_IMAGES}"),
        (0 <= steps <= MAX_STEPS, f"Langevin steps must be 0..{MAX_STEPS}"),
        (STEP_SIZE_RANGE[0] <= step_size <= STEP_SIZE_RANGE[1], f"step size must be in {STEP_SIZE_RANGE}"),
        (TEMPERATURE_RANGE[0] <= temperature <= TEMPERATURE_RANGE[1], f"temperature must be in {TEMPERATURE_RANGE}"),
        (0 <= seed <= MAX_SEED, f"seed must be 0..{MAX_SEED}"),
    ]
    problems = [message for ok, message in limits if not ok]
    if problems:
        raise gr.Error("; ".join(problems))


def generate(model: str, num_images: float, steps: float, step_size: float, temperature: float, seed: float):
    """VAE samples (K = 0) and VAEBM samples (K Langevin steps) from the same noise, the energy trace and the
    chain animation."""
    num_images, steps, seed = int(num_images), int(steps), int(seed)
    step_size, temperature = float(step_size), float(temperature)
    check_bounds(num_images, steps, step_size, temperature, seed)
    pipe = load_pipeline((model or "").strip())
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    noise = pipe.vae.sample_noise(num_images, generator=generator)
    common = {"batch_size": num_images, "temperature": temperature, "output_type": "pt"}
    vae_images = pipe(num_inference_steps=0, latents=noise, **common).images

    stride = max(1, math.ceil(steps / MAX_FRAMES))
    frames = [vae_images]

    def record(pipeline, i, t, tensors):
        if (i + 1) % stride == 0 or i + 1 == steps:
            frames.append(pipeline.vae.generate(tensors["latents"], temperature))
        return {}

    out = pipe(
        num_inference_steps=steps, step_size=step_size, generator=generator, latents=noise.clone(),
        return_energy_trace=True, callback_on_step_end=record, **common,
    )  # fmt: skip
    energies = out.energy_trace.float()
    status = (
        f"{num_images} samples · K = {steps} Langevin steps · step size {step_size:g} · temperature {temperature:g} · "
        f"seed {seed}. Mean energy: VAE {energies[0].mean():.4g} → VAEBM {energies[-1].mean():.4g} "
        f"({time.perf_counter() - start:.1f} s)."
    )
    return (
        image_grid(vae_images, gap=2),
        image_grid(out.images, gap=2),
        energy_plot(energies),
        chain_animation(frames),
        status,
    )


def build_demo(model: str = "") -> gr.Blocks:
    """The Blocks UI; ``model`` is the default of the model box (empty = the default pipeline)."""
    config = load_pipeline(model).scheduler.config
    with gr.Blocks(title="VAEBM", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# VAEBM: Langevin refinement of VAE samples\n"
            "Each chain starts from a VAE sample (left) and runs K Langevin steps on "
            "`U(ε) = E(x(ε)) + ½‖ε‖²` in the VAE's noise space (right). Same seed, same starting noise."
        )
        with gr.Row():
            with gr.Column(scale=1):
                model_box = gr.Textbox(value=model, label="Model (local folder or Hub id; empty = default)")
                num_images = gr.Slider(1, MAX_IMAGES, value=16, step=1, label="Number of images")
                steps = gr.Slider(
                    0,
                    MAX_STEPS,
                    value=min(config.default_num_inference_steps, MAX_STEPS),
                    step=1,
                    label="Langevin steps K",
                )
                step_size = gr.Number(
                    value=config.step_size, minimum=STEP_SIZE_RANGE[0], maximum=STEP_SIZE_RANGE[1],
                    label="Step size η",
                )  # fmt: skip
                temperature = gr.Slider(*TEMPERATURE_RANGE, value=1.0, step=0.05, label="Temperature")
                seed = gr.Number(value=0, minimum=0, maximum=MAX_SEED, precision=0, label="Seed")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column(scale=2):
                with gr.Row():
                    vae_grid = gr.Image(label="VAE samples (K = 0)", type="pil", format="png", elem_id="vae_samples")
                    vaebm_grid = gr.Image(label="VAEBM samples", type="pil", format="png", elem_id="vaebm_samples")
                with gr.Row():
                    plot = gr.Image(label="Energy along the chain", type="pil", format="png", elem_id="energy_plot")
                    animation = gr.Image(label="The chain", type="filepath", elem_id="chain_animation")
                status = gr.Markdown(elem_id="status")
        button.click(
            generate,
            inputs=[model_box, num_images, steps, step_size, temperature, seed],
            outputs=[vae_grid, vaebm_grid, plot, animation, status],
            api_name="generate",
        )
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default=os.environ.get("VAEBM_MODEL", ""), help="pipeline folder or Hub id (default: $VAEBM_MODEL)"
    )
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args(argv)
    build_demo(args.model).launch(server_name=args.host, server_port=args.port, share=False)


if __name__ == "__main__":
    main()
