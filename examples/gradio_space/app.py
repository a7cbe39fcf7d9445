"""VAEBM demo: plain VAE samples beside their Langevin-refined VAEBM versions (same initial noise), the energy
``E(x)`` along each chain, and the chain as an animation.

    python examples/gradio_space/app.py --model PATH_OR_HUB_ID[,PATH_OR_HUB_ID...] --port 7860

The Space serves the models it was started with and nothing else: ``--model`` (or the ``VAEBM_MODEL`` variable, e.g.
a Space setting), a comma-separated list of folders or Hub ids, loaded at start-up; without either it serves the
trained digits pipeline shipped beside this file (``pipeline/``, the embedded demo's). A request names one of them
(``""`` = the first) — never a path. Every input is checked (type, integrality, range), one request may cost at
most ``MAX_COST`` image-steps, and the queue holds ``QUEUE_SIZE`` requests. Serves on 127.0.0.1 unless ``--host`` or
``GRADIO_SERVER_NAME`` (set by Hugging Face Spaces) says otherwise. The generate event is ``/generate`` for API
clients.
"""

from __future__ import annotations

import argparse
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

from vaebm_hub import VAEBMPipeline
from vaebm_hub.figures import image_grid

MAX_IMAGES = 64
MAX_STEPS = 500
MAX_COST = 64 * 100  # images x Langevin steps per request: 64 images at K = 100, or 16 at K = 400
QUEUE_SIZE = 8
STEP_SIZE_RANGE = (1e-7, 0.1)
TEMPERATURE_RANGE = (0.1, 1.5)
MAX_SEED = 2**31 - 1
MAX_FRAMES = 40  # the animation keeps at most this many chain states (evenly strided) besides the start
BUNDLED_PIPELINE = Path(__file__).resolve().parent / "pipeline"  # the embedded demo's trained digits pipeline
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ANIMATIONS = tempfile.TemporaryDirectory(prefix="vaebm_demo_")  # GIFs live here until Gradio has copied them
ANIMATION_TTL_S = 300


def model_names(spec: str) -> list[str]:
    """The allow-list: ``spec`` split at commas, or the bundled pipeline when it is empty."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    return names or [str(BUNDLED_PIPELINE)]


def load_models(names: list[str]) -> dict[str, VAEBMPipeline]:
    """Load every allowed pipeline at start-up (a failure stops the Space with the reason, before it serves)."""
    models = {}
    for name in names:
        pipe = VAEBMPipeline.from_pretrained(name)
        if len(pipe.vae.data_shape) != 3:
            raise SystemExit(f"{name} models vectors, not images; this Space shows image pipelines.")
        pipe.set_progress_bar_config(disable=True)
        models[name] = pipe.to(DEVICE)
    return models


def display_name(name: str) -> str:
    return "the bundled digits pipeline" if Path(name) == BUNDLED_PIPELINE else name


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


def _integer(value, name: str, low: int, high: int) -> int:
    """``value`` as an int in [low, high]; floats must be whole (1.9 is refused, not truncated); NaN is refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise gr.Error(f"{name} must be a whole number in {low}..{high}")
    if isinstance(value, float) and not value.is_integer():
        raise gr.Error(f"{name} must be a whole number in {low}..{high}")
    if not low <= value <= high:
        raise gr.Error(f"{name} must be in {low}..{high}")
    return int(value)


def _real(value, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
        raise gr.Error(f"{name} must be a number in [{low:g}, {high:g}]")
    return float(value)


def check_request(num_images, steps, step_size, temperature, seed) -> tuple[int, int, float, float, int]:
    """The request's values, checked (the UI bounds them too; API callers may not), and its cost."""
    num_images = _integer(num_images, "number of images", 1, MAX_IMAGES)
    steps = _integer(steps, "Langevin steps", 0, MAX_STEPS)
    step_size = _real(step_size, "step size", *STEP_SIZE_RANGE)
    temperature = _real(temperature, "temperature", *TEMPERATURE_RANGE)
    seed = _integer(seed, "seed", 0, MAX_SEED)
    if num_images * steps > MAX_COST:
        raise gr.Error(f"images x steps must be at most {MAX_COST} per request (asked {num_images} x {steps})")
    return num_images, steps, step_size, temperature, seed


def make_generate(models: dict[str, VAEBMPipeline]):
    """The ``/generate`` handler for the served ``models`` (names are matched exactly; raw input is never echoed)."""
    default = next(iter(models))

    def generate(model: str, num_images, steps, step_size, temperature, seed):
        """VAE samples (K = 0) and VAEBM samples (K Langevin steps) from the same noise, the energy trace and the
        chain animation."""
        if not isinstance(model, str) or (model and model not in models):
            raise gr.Error(
                f"unknown model; this Space serves {len(models)} model(s): " + ", ".join(map(display_name, models))
            )
        pipe = models[model or default]
        num_images, steps, step_size, temperature, seed = check_request(
            num_images, steps, step_size, temperature, seed
        )
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(seed)
        noise = pipe.vae.sample_noise(num_images, generator=generator, pixel_noise=pipe.config.pixel_noise)
        common = {"batch_size": num_images, "temperature": temperature, "output_type": "pt"}
        vae_images = pipe(num_inference_steps=0, latents=noise, **common).images

        stride = max(1, math.ceil(steps / MAX_FRAMES))
        frames = [vae_images]

        def record(pipeline, i, t, tensors):
            if (i + 1) % stride == 0 or i + 1 == steps:
                frames.append(pipeline.decode(tensors["latents"], temperature))  # the images the pipeline returns
            return {}

        out = pipe(
            num_inference_steps=steps, step_size=step_size, generator=generator, latents=noise.clone(),
            return_energy_trace=True, callback_on_step_end=record, **common,
        )  # fmt: skip
        energies = out.energy_trace.float()
        status = (
            f"{num_images} samples · K = {steps} Langevin steps · step size {step_size:g} · temperature "
            f"{temperature:g} · seed {seed}. Mean energy: VAE {energies[0].mean():.4g} → VAEBM "
            f"{energies[-1].mean():.4g} ({time.perf_counter() - start:.1f} s)."
        )
        return (
            image_grid(vae_images, gap=2),
            image_grid(out.images, gap=2),
            energy_plot(energies),
            chain_animation(frames),
            status,
        )

    return generate


def build_demo(models: dict[str, VAEBMPipeline]) -> gr.Blocks:
    """The Blocks UI for the served ``models`` (the first is the default)."""
    names = list(models)
    config = models[names[0]].scheduler.config
    with gr.Blocks(title="VAEBM", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# VAEBM: Langevin refinement of VAE samples\n"
            "Each chain starts from a VAE sample (left) and runs K Langevin steps on "
            "`U(ε) = E(x(ε)) + ½‖ε‖²` in the VAE's noise space (right). Same seed, same starting noise.\n\n"
            f"Serving: **{', '.join(map(display_name, names))}**."
        )
        with gr.Row():
            with gr.Column(scale=1):
                # allow_custom_value: the handler checks the name itself (so "" = the first model, and an unknown
                # name gets its "unknown model" error without Gradio echoing the raw input back).
                model_box = gr.Dropdown(
                    choices=[(display_name(n), n) for n in names], value=names[0], label="Model",
                    interactive=len(names) > 1, allow_custom_value=True,
                )  # fmt: skip
                num_images = gr.Slider(1, MAX_IMAGES, value=16, step=1, label="Number of images")
                steps = gr.Slider(
                    0, MAX_STEPS, value=min(config.default_num_inference_steps, MAX_STEPS), step=1,
                    label=f"Langevin steps K (images × K ≤ {MAX_COST})",
                )  # fmt: skip
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
            make_generate(models),
            inputs=[model_box, num_images, steps, step_size, temperature, seed],
            outputs=[vae_grid, vaebm_grid, plot, animation, status],
            api_name="generate",
            concurrency_limit=1,
        )
    return demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default=os.environ.get("VAEBM_MODEL", ""),
        help="comma-separated pipeline folders or Hub ids to serve (default: $VAEBM_MODEL, else the bundled one)",
    )
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args(argv)
    build_demo(load_models(model_names(args.model))).launch(server_name=args.host, server_port=args.port, share=False)


if __name__ == "__main__":
    main()
