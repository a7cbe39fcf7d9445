"""Measure the paper's claims at small CPU scale: one module per claim, :func:`run_claims` runs them.

1. :mod:`.claim_gain` — VAEBM improves its own VAE's samples (digits, MNIST);
2. :mod:`.claim_sampling_space` — eps-space Langevin beats an x-space EBM (the paper's ablation);
3. :mod:`.claim_modes` — mode coverage on StackedMNIST (28x28x3) and stacked 8x8 digits;
4. :mod:`.claim_ood` — OOD detection with log h against the VAE's ELBO;
5. :mod:`.claim_toy` — the 2-D 25-Gaussians toy;
6. :mod:`.claim_wall_time` — the default MNIST command trains in 30 minutes and reaches claim 1's MNIST row.

``python benchmarks/reproduce.py`` (``make reproduce``) is the command-line entry point; trained pipelines are
cached in ``outputs/reproduce/`` (:mod:`.runs`), training runs and evaluations run as tasks in worker processes
(:mod:`.schedule`), results go to ``benchmarks/results/reproduce_<claim>.json`` and ``docs/results.md``.
"""

from .runner import CLAIMS, run_claims
from .runs import RUNS, TrainingRun

__all__ = ["CLAIMS", "RUNS", "TrainingRun", "run_claims"]
