"""Claim 5 (our own sanity check, not a paper table): on the 2-D 25-Gaussians toy the EBM pulls the VAE's blurred
samples back onto the modes while keeping all 25 of them.

MLP VAE and MLP energy network at the ``gaussians25`` preset (:mod:`vaebm_hub.presets`): chains on the latent noise
alone, the sample being the decoder mean (``pixel_noise=False``), at K = 10, 30, 100 and the pipeline's own default
chain length.
Metrics on the true mixture (centres {-4,-2,0,2,4}^2, sigma 0.05): the share of samples within 3 sigma of a centre,
modes hit by such a sample, the reverse KL of their histogram to uniform, and the mean log-density of the samples
under the true mixture.
"""

from __future__ import annotations

from . import claim_gain
from .context import Context

TITLE = "25-Gaussians toy: VAE vs VAEBM"
TARGET = "VAEBM: >= 0.5 of samples within 3 sigma of a mode, all 25 modes covered, >= 3x its VAE's share"
TARGET_SHARE, TARGET_RATIO = 0.5, 3.0
DATASET = "gaussians25"
ROW_KEYS = ("langevin_steps", "high_quality_fraction", "modes_covered", "reverse_kl", "mean_log_density",
            "sampling_seconds")  # fmt: skip


def training_runs(ctx: Context) -> tuple[str, ...]:
    """The training runs (:data:`.runs.RUNS`) this claim reads."""
    return (DATASET,)


def run(ctx: Context) -> dict:
    num_samples = ctx.size(full=2500, fast=200)
    # the usual lengths and the pipeline's own default (what a user samples with), as claim 1 scores them
    chain_lengths = ctx.size(full=claim_gain.chain_lengths(ctx.pipeline(DATASET)), fast=(0, 2))
    evaluation = ctx.evaluation(DATASET, DATASET, num_samples, chain_lengths)
    rows = [{key: row[key] for key in ROW_KEYS} for row in evaluation["rows"]]
    true_row = evaluation["rows"][0]
    best = max(rows[1:], key=lambda r: r["high_quality_fraction"])
    return {
        "claim": 5,
        "title": TITLE,
        "target": TARGET,
        "dataset": DATASET,
        "num_samples": num_samples,
        "true_samples": {
            key.removeprefix("reference_"): v for key, v in true_row.items() if key.startswith("reference_")
        },
        "rows": rows,
        "figure": f"figures/{DATASET}/samples.png",
        "target_met": bool(
            best["high_quality_fraction"] >= TARGET_SHARE
            and best["high_quality_fraction"] >= TARGET_RATIO * rows[0]["high_quality_fraction"]
            and best["modes_covered"] == 25
        ),
    }
