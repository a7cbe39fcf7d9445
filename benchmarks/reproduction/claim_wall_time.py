"""Claim 6 (ours, not the paper's): the first thing a user runs — ``accelerate launch examples/train.py
--dataset_name mnist --output_dir m``, no other flag — trains in at most 30 minutes on 2 CPU cores and gives the
MNIST model of claim 1.

The ``mnist`` run of this reproduction is exactly that command (the ``mnist`` preset without overrides,
:data:`.runs.RUNS`); its training time is measured on one torch thread while another task (a training run or an
evaluation) shares the machine, so it is an upper bound for the command on its own. (On its own the command takes
34.7 min without an Accelerate config, which gives it one thread, and 21.8 min on two threads after
``accelerate config default``: the experiment log.)
"""

from __future__ import annotations

from . import claim_gain
from .context import Context
from .runs import recorded_train_seconds

TITLE = "The default MNIST command trains in 30 minutes and reaches claim 1's MNIST row"
TARGET = (
    "accelerate launch examples/train.py --dataset_name mnist --output_dir m: <= 30 min on 2 cores, and claim 1 is "
    "met on MNIST"
)
TARGET_SECONDS = 30 * 60
DATASET = "mnist"


def training_runs(ctx: Context) -> tuple[str, ...]:
    """The training runs (:data:`.runs.RUNS`) this claim reads: claim 1's, whose verdict it takes."""
    return ctx.size(full=claim_gain.training_runs(ctx), fast=())


def run(ctx: Context) -> dict:
    if ctx.fast:
        return {"claim": 6, "title": TITLE, "target": TARGET, "seconds": None, "target_met": False, "skipped": True}
    seconds = recorded_train_seconds(ctx.run_folder(DATASET))
    gain = claim_gain.run(ctx)["datasets"][DATASET]["verdict"]["met"]  # memoised evaluation
    return {
        "claim": 6,
        "title": TITLE,
        "target": TARGET,
        "seconds": seconds,
        "mnist_row_met": gain,
        "target_met": bool(seconds is not None and seconds <= TARGET_SECONDS and gain),
    }
