"""Claim 3: VAEBM covers every mode of StackedMNIST (paper Table 5: 1000 modes, reverse KL 0.087).

At CPU scale the stacks are three 8x8 digits (``stacked_digits``, 1000 modes) instead of three 28x28 MNIST digits.
Each channel of a sample is classified by the digits evaluation classifier; a sample counts only if every channel's
top class probability exceeds 0.5 (the gate; ``kept_fraction`` is the share that passes), and its mode is
100 c0 + 10 c1 + c2. The reference is as many test stacks as samples; other test stacks (another draw of the
same test digits) give the ceiling at the same sample size.
"""

from __future__ import annotations

from vaebm_hub.data import load_array_dataset
from vaebm_hub.evaluation import sample_images, sample_quality

from .context import Context

TITLE = "Mode coverage on StackedMNIST (stacked 8x8 digits)"
TARGET = "VAEBM covers all 1000 modes with reverse KL < 0.087 (the paper's StackedMNIST numbers)"
PAPER = {"modes": 1000, "reverse_kl": 0.087}
DATASET = "stacked_digits"
ROW_KEYS = ("langevin_steps", "modes", "reverse_kl", "kept_fraction", "fd_clf", "fd_floor", "fd_minus_floor",
            "precision", "recall", "sampling_seconds")  # fmt: skip


def training_runs(ctx: Context) -> tuple[str, ...]:
    """The training runs (:data:`.runs.RUNS`) this claim reads."""
    return (DATASET,)


def run(ctx: Context) -> dict:
    num_samples = ctx.size(full=10_000, fast=40)
    chain_lengths = ctx.size(full=(0, 30), fast=(0, 2))
    pipe = ctx.pipeline(DATASET)
    reference = load_array_dataset(DATASET, "test", num_samples=num_samples)[0]
    rows = []
    for k in chain_lengths:
        samples, seconds = sample_images(pipe, num_samples, k, seed=ctx.seed)
        quality = sample_quality(samples, reference, DATASET)
        rows.append({"langevin_steps": k, **{key: quality[key] for key in ROW_KEYS if key in quality}})
        rows[-1]["sampling_seconds"] = seconds
    real = load_array_dataset(DATASET, "test", seed=1, num_samples=num_samples)[0]
    ceiling = sample_quality(real, reference, DATASET)
    vaebm = rows[-1]
    return {
        "claim": 3,
        "title": TITLE,
        "target": TARGET,
        "paper": PAPER,
        "dataset": DATASET,
        "num_samples": num_samples,
        "gate": "every channel's top class probability > 0.5",
        "real_stacks": {key: ceiling[key] for key in ROW_KEYS if key in ceiling},
        "rows": rows,
        "target_met": bool(vaebm["modes"] == PAPER["modes"] and vaebm["reverse_kl"] < PAPER["reverse_kl"]),
    }
