"""Drawing samples from a pipeline for evaluation: seeded per batch, the same initial noise for every chain length."""

from __future__ import annotations

import time

import numpy as np
import torch

from .inputs import _check_count

# Call arguments that sample_images sets itself.
_OWNED_CALL_KWARGS = ("batch_size", "num_inference_steps", "generator", "output_type", "return_dict", "latents")


def _batch_seed(seed: int, batch: int) -> int:
    """A 64-bit seed per (seed, batch) pair, so that different seeds never share a batch's random stream."""
    return int(np.random.SeedSequence([seed, batch]).generate_state(1, dtype=np.uint64)[0])


def sample_images(
    pipe,
    num_samples: int,
    num_inference_steps: int,
    *,
    batch_size: int = 250,
    seed: int = 0,
    **call_kwargs,
) -> tuple[np.ndarray, float]:
    """Draw ``num_samples`` samples with ``num_inference_steps`` Langevin steps; returns (samples, wall seconds).

    Samples are ``(N, H, W, C)`` floats in [0, 1] for image pipelines and ``(N, D)`` for vector (MLP VAE)
    pipelines, as ``pipe(output_type="np")`` returns them. Batch ``b`` uses its own ``torch.Generator`` seeded from
    ``(seed, b)``, so the result is a function of ``(seed, batch_size)`` only, and the initial noise is the same for
    every chain length: K = 0 (the VAE) and K > 0 rows start from identical ε. ``call_kwargs`` go to the pipeline
    (``step_size``, ``temperature``, ``potential``, ``drop_nonfinite``, ...); with ``drop_nonfinite=True`` fewer
    than ``num_samples`` rows may come back.
    """
    num_samples = _check_count(num_samples, "num_samples", 1)
    num_inference_steps = _check_count(num_inference_steps, "num_inference_steps", 0)
    batch_size = _check_count(batch_size, "batch_size", 1)
    seed = _check_count(seed, "seed", 0)
    owned = sorted(set(call_kwargs) & set(_OWNED_CALL_KWARGS))
    if owned:
        raise ValueError(f"sample_images sets {owned} itself; pass num_samples, num_inference_steps, batch_size, seed")
    sizes = [min(batch_size, num_samples - start) for start in range(0, num_samples, batch_size)]
    start = time.perf_counter()
    batches = []
    for b, size in enumerate(sizes):
        generator = torch.Generator().manual_seed(_batch_seed(seed, b))
        out = pipe(
            batch_size=size,
            num_inference_steps=num_inference_steps,
            generator=generator,
            output_type="np",
            **call_kwargs,
        )
        batches.append(out.images)
    samples = np.concatenate(batches)
    return samples, time.perf_counter() - start
