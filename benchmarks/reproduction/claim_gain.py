"""Claim 1: VAEBM improves its own VAE's samples (paper Tables 1-3: NVAE FID 51.67 -> VAEBM 12.19 on CIFAR-10).

At CPU scale: FD_clf minus its real-vs-real floor, precision and recall of the VAE (K = 0) and of VAEBM after K
Langevin steps from the same initial noise, on 8x8 digits and MNIST. ``gap_closed`` is the share of the VAE's gap to
the floor that the best chain length removes: ``1 - min_K>0 (FD_K - floor_K) / (FD_0 - floor_0)``.
"""

from __future__ import annotations

from .context import Context

TITLE = "VAEBM improves its own VAE's samples"
TARGET = "on MNIST, VAEBM closes >= 3/4 of its VAE's FD_clf gap to the floor (gap_closed >= 0.75)"
TARGET_GAP_CLOSED = 0.75
ROW_KEYS = ("langevin_steps", "fd_clf", "fd_floor", "fd_minus_floor", "precision", "recall", "kernel_distance",
            "sampling_seconds")  # fmt: skip


def gap_closed(rows: list[dict]) -> tuple[float, int]:
    """(share of the K = 0 gap to the floor removed by the best K > 0, that K); rows start with K = 0."""
    vae_gap = rows[0]["fd_minus_floor"]
    best = min(rows[1:], key=lambda r: r["fd_minus_floor"])
    return 1.0 - best["fd_minus_floor"] / vae_gap, best["langevin_steps"]


def training_runs(ctx: Context) -> tuple[str, ...]:
    """The training runs (:data:`.runs.RUNS`) this claim reads."""
    return ctx.size(full=("digits", "mnist"), fast=("digits",))


def run(ctx: Context) -> dict:
    datasets = training_runs(ctx)
    chain_lengths = ctx.size(full=(0, 10, 30, 100), fast=(0, 2))
    results = {}
    for dataset in datasets:
        num_samples = ctx.size(full={"digits": 359, "mnist": 500}[dataset], fast=40)
        evaluation = ctx.evaluation(dataset, dataset, num_samples, chain_lengths)
        rows = [{key: row[key] for key in ROW_KEYS} for row in evaluation["rows"]]
        closed, best_k = gap_closed(rows)
        results[dataset] = {
            "num_samples": num_samples,
            "classifier_test_accuracy": evaluation["meta"]["classifier_test_accuracy"],
            "rows": rows,
            "gap_closed": closed,
            "best_langevin_steps": best_k,
            "figure": f"figures/{dataset}/samples.png",
        }
    target_dataset = "mnist" if "mnist" in results else "digits"
    return {
        "claim": 1,
        "title": TITLE,
        "target": TARGET,
        "target_dataset": target_dataset,
        "target_met": bool(results[target_dataset]["gap_closed"] >= TARGET_GAP_CLOSED),
        "datasets": results,
    }
