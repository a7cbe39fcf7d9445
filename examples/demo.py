"""The embedded demo (``make demo``): train VAEBM on the bundled 8x8 digits and show that it improves on its VAE.

``python examples/demo.py`` (no downloads, a few minutes on a 2-core CPU) runs the trainer on the ``digits`` preset
(:func:`vaebm_hub.training.train`, stage 1 then stage 2), then samples the saved pipeline with K = 0 Langevin steps
(plain VAE samples) and a few K > 0 from the same initial noise, and writes into ``--output_dir``:

* ``pipeline/`` — the trained pipeline (``VAEBMPipeline.from_pretrained("outputs/demo/pipeline")``);
* ``samples.png`` — VAE samples beside VAEBM samples (same initial noise);
* ``metrics.json`` / ``metrics.md`` — Fréchet distance in the features of a digits classifier (FD_clf, with the
  real-vs-real floor at the same sample size), precision/recall in the same features, and sampling wall times.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from vaebm_hub.data import load_array_dataset
from vaebm_hub.evaluation import dataset_classifier, sample_images, sample_quality, write_sample_grid
from vaebm_hub.pipelines import VAEBMPipeline
from vaebm_hub.training import train

# The demo is the digits preset as it is (vaebm_hub.presets); --fast shrinks it to a seconds-long smoke run.
FAST_OVERRIDES = dict(
    vae_max_train_steps=3, ebm_max_train_steps=2, train_batch_size=16, langevin_steps=2, ebm_n_channel=8,
    num_sample_images=4,
)  # fmt: skip
DEMO_CHAIN_LENGTHS = (0, 10, 30, 100)
FAST_CHAIN_LENGTHS = (0, 2)
GRID_SIZE = 64  # samples per panel of samples.png


def evaluate(pipe: VAEBMPipeline, chain_lengths: Sequence[int], seed: int = 0, cache_dir: str | None = None):
    """One metrics row per chain length K (K = 0: the VAE), with as many samples as the digits test split holds,
    every K starting from the same initial noise (:func:`vaebm_hub.evaluation.sample_images`).

    Returns ``(rows, floor, samples)``: ``floor`` is FD_clf between the test split and as many training images;
    ``samples[K]`` are the generated images ``(N, H, W, C)``.
    """
    test_x, _ = load_array_dataset("digits", "test")
    classifier = dataset_classifier("digits", cache_dir=cache_dir)
    rows, samples = [], {}
    for k in chain_lengths:
        samples[k], seconds = sample_images(pipe, len(test_x), k, seed=seed)
        row = {"model": "VAE" if k == 0 else "VAEBM", "langevin_steps": k}
        row.update(sample_quality(samples[k], test_x, "digits", classifier=classifier))
        row["sampling_seconds"] = round(seconds, 2)
        rows.append(row)
    return rows, rows[0]["fd_floor"], samples


def metrics_markdown(rows: list[dict], floor: float, train_seconds: float) -> str:
    lines = [
        f"Digits 8x8, {rows[0]['num_samples']} samples per row; training took {train_seconds:.0f} s.",
        f"FD_clf real-vs-real floor at this sample size: {floor:.2f}; FD_rand (a fixed random embedding that shares "
        f"nothing with the classifier) floor {rows[0]['fd_rand_floor']:.3f}. Lower FD is better.",
        "",
        "| model | K | FD_clf | FD_rand | precision | recall | conf > 0.9 | sampling s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['langevin_steps']} | {r['fd_clf']:.2f} | {r['fd_rand']:.3f} | "
            f"{r['precision']:.3f} | {r['recall']:.3f} | {r['confident_fraction']:.3f} | {r['sampling_seconds']:.2f} |"
        )
    return "\n".join(lines)


def run_demo(
    output_dir: str | Path = "outputs/demo", fast: bool = False, seed: int = 0, space_pipeline: str | None = None
) -> dict:
    """Train, sample, evaluate and write the demo's files; returns the metrics. ``space_pipeline``: also save the
    trained pipeline there in the package layout (no generated code files), as the Gradio Space bundles it."""
    output_dir = Path(output_dir)
    pipeline_dir = output_dir / "pipeline"
    start = time.perf_counter()
    train(
        pipeline_dir, dataset_name="digits", seed=seed, overwrite_output_dir=True, report_to="none",
        **(FAST_OVERRIDES if fast else {}),
    )  # fmt: skip
    train_seconds = time.perf_counter() - start

    pipe = VAEBMPipeline.from_pretrained(pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    if space_pipeline is not None:
        pipe.save_pretrained(space_pipeline)
    chain_lengths = FAST_CHAIN_LENGTHS if fast else DEMO_CHAIN_LENGTHS
    rows, floor, samples = evaluate(pipe, chain_lengths, seed=seed)
    best = min(rows[1:], key=lambda r: r["fd_clf"])
    panels = {
        "VAE (K=0)": samples[0][:GRID_SIZE],
        f"VAEBM (K={best['langevin_steps']})": samples[best["langevin_steps"]][:GRID_SIZE],
    }
    write_sample_grid(output_dir / "samples.png", panels)

    table = metrics_markdown(rows, floor, train_seconds)
    metrics = {"rows": rows, "fd_classifier_floor": floor, "train_seconds": round(train_seconds, 1)}
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (output_dir / "metrics.md").write_text(table + "\n")
    print(table)
    print(f"\nSample grid (VAE | VAEBM, same initial noise): {output_dir / 'samples.png'}")
    print(f"Saved pipeline: {pipeline_dir}")
    print(f'Load it with: VAEBMPipeline.from_pretrained("{pipeline_dir}")')
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python examples/demo.py", description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="A seconds-long smoke run (tiny steps, for tests).")
    parser.add_argument(
        "--space_pipeline",
        help="Also save the trained pipeline here, as the Gradio Space bundles it (examples/gradio_space/pipeline).",
    )
    parser.add_argument(
        "--num_threads", type=int, default=1, help="torch threads; 8x8 models run fastest on one (measured)."
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.num_threads)
    run_demo(args.output_dir, fast=args.fast, seed=args.seed, space_pipeline=args.space_pipeline)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
