"""Half-precision sampling: does the Langevin chain still move, and are the samples as good?

The chain state, the potential's value and the step arithmetic run in float32 whatever the model dtype
(``vaebm_hub.pipelines.langevin_chain``); the networks run in the pipeline's dtype. For a trained pipeline (default:
the embedded demo's, built by ``examples/demo.py``), from the same initial noise and chain noise per dtype:

* ``eps displacement`` — mean over samples of ``||eps_K - eps_0||`` (the VAE's sample is ``eps_0``; 0 would mean the
  chain froze and VAEBM returned VAE samples);
* ``image change`` — mean absolute pixel difference between the K-step and K = 0 images, and the largest pixel
  difference to the float32 chain's images;
* ``FD_clf`` — Fréchet distance of the K-step samples to the test split in the evaluation classifier's features
  (``vaebm_hub.evaluation``), with the real-vs-real floor beside it.

    python benchmarks/half_precision.py [--model DIR] [--steps 10] [--num_samples 359]

Writes ``benchmarks/results/half_precision.json`` and ``half_precision.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from vaebm_hub import VAEBMPipeline
from vaebm_hub.data import load_array_dataset
from vaebm_hub.evaluation import dataset_classifier, sample_quality

RESULTS = Path(__file__).parent / "results"
DEMO_PIPELINE = Path(__file__).resolve().parents[1] / "examples" / "gradio_space" / "pipeline"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def chain(pipe: VAEBMPipeline, eps0: torch.Tensor, steps: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """The final noise (float32) and the decoded images (N, H, W, C) of a ``steps``-step chain from ``eps0``."""
    generator = torch.Generator().manual_seed(seed)
    out = pipe(latents=eps0, num_inference_steps=steps, output_type="latent", generator=generator)
    eps = out.images.float()
    with torch.no_grad():
        images = pipe.vae.generate(eps.to(pipe.vae.dtype)).float().clamp(0, 1)
    return eps, images.permute(0, 2, 3, 1).numpy()


def measure(model: Path, steps: int, num_samples: int, dataset: str, seed: int = 0) -> dict:
    test_images, _ = load_array_dataset(dataset, "test")
    num_samples = min(num_samples, len(test_images))
    classifier = dataset_classifier(dataset)
    reference = VAEBMPipeline.from_pretrained(model)
    eps0 = reference.vae.sample_noise(num_samples, generator=torch.Generator().manual_seed(seed))
    rows, reference_images = {}, None
    for name, dtype in DTYPES.items():
        pipe = VAEBMPipeline.from_pretrained(model, dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        _, start = chain(pipe, eps0, 0, seed + 1)
        eps, images = chain(pipe, eps0, steps, seed + 1)
        reference_images = images if reference_images is None else reference_images
        quality = sample_quality(images, test_images[:num_samples], dataset, classifier=classifier)
        rows[name] = {
            "eps_displacement": float((eps - eps0).flatten(1).norm(dim=1).mean()),
            "image_change": float(np.abs(images - start).mean()),
            "max_diff_vs_float32": float(np.abs(images - reference_images).max()),
            "fd_clf": quality["fd_clf"],
            "fd_floor": quality["fd_floor"],
            "fd_clf_vae": sample_quality(start, test_images[:num_samples], dataset, classifier=classifier)["fd_clf"],
        }
    return {"model": str(model), "dataset": dataset, "steps": steps, "num_samples": num_samples, "rows": rows}


def markdown(result: dict) -> str:
    lines = [
        f"# Half-precision sampling ({result['dataset']}, K = {result['steps']}, {result['num_samples']} samples)",
        "",
        f"Model: `{result['model']}`. Same initial noise and chain noise for every dtype.",
        "",
        "| dtype | eps displacement | image change vs K=0 | max pixel diff vs float32 | FD_clf (K=0) | FD_clf (K) | "
        "floor |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in result["rows"].items():
        lines.append(
            f"| {name} | {r['eps_displacement']:.4f} | {r['image_change']:.4f} | {r['max_diff_vs_float32']:.4f} | "
            f"{r['fd_clf_vae']:.2f} | "
            f"{r['fd_clf']:.2f} | {r['fd_floor']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEMO_PIPELINE, help="a saved pipeline (default: the demo's)")
    parser.add_argument("--dataset", default="digits", help="the data the pipeline was trained on")
    parser.add_argument("--steps", type=int, default=10, help="Langevin steps")
    parser.add_argument("--num_samples", type=int, default=359, help="samples per dtype (at most the test split)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = measure(args.model, args.steps, args.num_samples, args.dataset)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "half_precision.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "half_precision.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
