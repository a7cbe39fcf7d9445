"""Drawing samples from a pipeline for evaluation: seeded per batch, the same initial noise for every chain length."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from ..pipelines.pipeline_vaebm import VAEBMPipeline
from .inputs import _check_count

# Call arguments that sample_images sets itself.
_OWNED_CALL_KWARGS = ("batch_size", "num_inference_steps", "generator", "output_type", "return_dict", "latents")


def _batch_seed(seed: int, batch: int) -> int:
    """A 64-bit seed per (seed, batch) pair, so that different seeds never share a batch's random stream."""
    return int(np.random.SeedSequence([seed, batch]).generate_state(1, dtype=np.uint64)[0])


def _unique_lengths(chain_lengths: Iterable[int]) -> list[int]:
    """The chain lengths checked (integers >= 0), each once, in the given order."""
    return list(dict.fromkeys(_check_count(k, "every chain length", 0) for k in chain_lengths))


def _chain_lengths(chain_lengths: Iterable[int]) -> list[int]:
    """Unique chain lengths in the given order, with K = 0 (the VAE baseline) always first."""
    return [0] + [k for k in _unique_lengths(chain_lengths) if k != 0]


def _checked_draw(num_samples, batch_size, seed, call_kwargs: dict, caller: str) -> tuple[int, int, int]:
    """``(num_samples, batch_size, seed)`` checked, and a ``ValueError`` for call arguments the caller sets itself."""
    owned = sorted(set(call_kwargs) & set(_OWNED_CALL_KWARGS))
    if owned:
        raise ValueError(f"{caller} sets {owned} itself; pass num_samples, the chain length(s), batch_size and seed")
    return (
        _check_count(num_samples, "num_samples", 1),
        _check_count(batch_size, "batch_size", 1),
        _check_count(seed, "seed", 0),
    )


def _seeded_batches(num_samples: int, batch_size: int, seed: int) -> Iterator[tuple[int, torch.Generator]]:
    """``(size, generator)`` per batch: ``num_samples`` split into batches of ``batch_size``, batch ``b`` with its
    own generator seeded from ``(seed, b)``."""
    for b, start in enumerate(range(0, num_samples, batch_size)):
        yield min(batch_size, num_samples - start), torch.Generator().manual_seed(_batch_seed(seed, b))


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
    num_inference_steps = _check_count(num_inference_steps, "num_inference_steps", 0)
    num_samples, batch_size, seed = _checked_draw(num_samples, batch_size, seed, call_kwargs, "sample_images")
    start = time.perf_counter()
    batches = []
    for size, generator in _seeded_batches(num_samples, batch_size, seed):
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


def _reads_off_one_chain(pipe, call_kwargs: dict) -> bool:
    """Whether a chain of K steps is exactly the first K steps of a longer one: a :class:`VAEBMPipeline` (its
    ``callback_on_step_end`` shows every state) on a constant step (a schedule is stretched over whatever K a call
    runs), without ``drop_nonfinite`` (which drops chains by their whole run) or a callback of the caller's."""
    return (
        isinstance(pipe, VAEBMPipeline)
        and pipe.scheduler.config.step_size_schedule == "constant"
        and not call_kwargs.get("drop_nonfinite", False)
        and "callback_on_step_end" not in call_kwargs
    )


def _one_chain_batch(pipe, size: int, lengths: list[int], generator: torch.Generator, call_kwargs: dict):
    """One batch's images at every length in ``lengths`` (all > 0) from one chain of the longest, and the seconds
    each length took: the chain's time to reach it plus its decoding."""
    longest = max(lengths)
    states, reached = {}, {}
    start = time.perf_counter()

    def keep(_pipe, step: int, _timestep, tensors: dict) -> dict:
        if step + 1 in lengths and step + 1 < longest:
            states[step + 1], reached[step + 1] = tensors["latents"].clone(), time.perf_counter() - start
        return {}

    out = pipe(
        batch_size=size, num_inference_steps=longest, generator=generator, output_type="np",
        callback_on_step_end=keep, **call_kwargs,
    )  # fmt: skip
    images, seconds = {longest: out.images}, {longest: time.perf_counter() - start}
    for k, state in states.items():
        decode_start = time.perf_counter()
        images[k] = pipe(latents=state, num_inference_steps=0, output_type="np", **call_kwargs).images
        seconds[k] = reached[k] + time.perf_counter() - decode_start
    return images, seconds


def sample_images_at(
    pipe,
    num_samples: int,
    chain_lengths: list[int] | tuple[int, ...],
    *,
    batch_size: int = 250,
    seed: int = 0,
    **call_kwargs,
) -> dict[int, tuple[np.ndarray, float]]:
    """:func:`sample_images` at every length in ``chain_lengths``: ``{K: (samples, seconds)}``, each exactly what
    ``sample_images(pipe, num_samples, K, ...)`` returns.

    Where a chain of K steps is the first K steps of a longer one (a :class:`VAEBMPipeline` on a constant step size,
    without ``drop_nonfinite`` or a callback of the caller's: the same initial noise, the same draws in the same
    order), every K > 0 is read off one chain of the longest per batch through ``callback_on_step_end``, so K = 10,
    30 and 100 cost 100 steps instead of 140; ``seconds`` is then the chain's time to reach K plus decoding.
    Otherwise (a step schedule, an x-space sampler) each length is drawn by its own call.
    """
    lengths = _unique_lengths(chain_lengths)
    num_samples, batch_size, seed = _checked_draw(num_samples, batch_size, seed, call_kwargs, "sample_images_at")
    chained = [k for k in lengths if k > 0]
    if not _reads_off_one_chain(pipe, call_kwargs) or len(chained) < 2:
        return {k: sample_images(pipe, num_samples, k, batch_size=batch_size, seed=seed, **call_kwargs)
                for k in lengths}  # fmt: skip
    images: dict[int, list[np.ndarray]] = {k: [] for k in chained}
    seconds = dict.fromkeys(chained, 0.0)
    for size, generator in _seeded_batches(num_samples, batch_size, seed):
        batch_images, batch_seconds = _one_chain_batch(pipe, size, chained, generator, call_kwargs)
        for k in chained:
            images[k].append(batch_images[k])
            seconds[k] += batch_seconds[k]
    drawn = {k: (np.concatenate(images[k]), seconds[k]) for k in chained}
    if 0 in lengths:
        drawn[0] = sample_images(pipe, num_samples, 0, batch_size=batch_size, seed=seed, **call_kwargs)
    return {k: drawn[k] for k in lengths}
