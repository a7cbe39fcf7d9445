"""Evaluate a pipeline against a folder of images (no built-in dataset, so no trained classifier): Fréchet distance
and precision/recall in the fixed random embedding (:mod:`.random_features`), each beside its real-vs-real floor,
and the samples' energies."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .frechet import frechet_distance
from .inputs import MIN_SAMPLES, _check_count, channels_first
from .ood_scores import _energies
from .plots import GRID_SIZE, write_energy_histogram, write_sample_grid
from .precision_recall import precision_recall
from .random_features import random_features
from .sampling import _chain_lengths, sample_images_at


def evaluate_image_folder(
    pipe,
    images: np.ndarray,
    *,
    num_samples: int = 500,
    chain_lengths: Iterable[int] = (0, 10, 30, 100),
    seed: int = 0,
    batch_size: int = 250,
    output_dir: str | os.PathLike | None = None,
) -> dict:
    """``images`` (N, C, H, W) in [0, 1] of the pipeline's size: the first half is the reference, the second half
    the floor (real vs real at the same sample size). Returns ``{"rows": [...], "meta": {...}}``; with
    ``output_dir`` also ``metrics.json``, ``samples.png`` and ``energy_histogram.png``."""
    images = channels_first(images, "images")
    if tuple(images.shape[1:]) != tuple(pipe.vae.data_shape):
        raise ValueError(
            f"the folder's images are {tuple(images.shape[1:])} but the pipeline models {tuple(pipe.vae.data_shape)}; "
            "pass --resolution/--channels that match it."
        )
    if len(images) < 2 * MIN_SAMPLES:
        raise ValueError(f"the folder has {len(images)} images; evaluation needs at least {2 * MIN_SAMPLES}.")
    num_samples = _check_count(num_samples, "num_samples", MIN_SAMPLES)
    half = len(images) // 2
    reference, floor = images[:half], images[half : 2 * half]
    real, floor_features = random_features(reference), random_features(floor)
    fd_floor = frechet_distance(real, floor_features)
    rows, samples, energies = [], {}, {"real": _energies(pipe, reference, batch_size)}
    lengths = _chain_lengths(chain_lengths)
    drawn = sample_images_at(pipe, num_samples, lengths, batch_size=batch_size, seed=seed)
    for k in lengths:
        samples[k], seconds = drawn[k]
        fake = random_features(channels_first(samples[k], "samples"))
        energies[f"K={k}"] = _energies(pipe, channels_first(samples[k], "samples"), batch_size)
        rows.append({
            "langevin_steps": k, "model": "VAE" if k == 0 else "VAEBM",
            "fd_rand": frechet_distance(real, fake), "fd_rand_floor": fd_floor,
            **{f"{key}_rand": v for key, v in precision_recall(real, fake).items()},
            "energy_mean": float(energies[f"K={k}"].mean()), "sampling_seconds": seconds,
        })  # fmt: skip
    result = {"rows": rows, "meta": {"num_images": len(images), "num_samples": num_samples, "seed": seed}}
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
        longest = max(samples)
        write_sample_grid(
            out / "samples.png",
            {"real": reference[:GRID_SIZE], "VAE": samples[0][:GRID_SIZE], "VAEBM": samples[longest][:GRID_SIZE]},
        )
        write_energy_histogram(out / "energy_histogram.png", energies)
    return result
