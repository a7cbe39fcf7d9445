"""Divergence guard: spot a blown-up training step, and decide how to roll back or when to give up.

VAEBM's stage 2 "eventually explodes" (official README). After every optimizer step the loop hands the guard the
step's metrics (reduced over processes, so every process decides alike) and whether all weights are finite. A step
diverged if any metric or weight is NaN/Inf, or a watched metric ``m`` blew up against its *reference*::

    |m| > blowup_factor * max(reference(m), BLOWUP_FLOOR)

The reference is the median of ``|m|`` over the last ``window`` good steps before the last checkpoint, frozen there: a
blow-up is judged against statistics it has not fed; before the stage's first checkpoint it is the median so far (once
``min_history`` steps are in), which catches a sudden spike. For the metrics in ``steady_watch`` (stage 2: the energy
gap) a second test holds for the whole stage: the median of the stage's first ``window`` steps, frozen, catches a run
that grows steadily once ``|m|`` exceeds ``early_factor`` times it. A running median follows such a run until it is
degenerate, and so does the checkpoint reference, which may grow by up to ``blowup_factor`` at each checkpoint (until
2026-12-05 this test stopped at the first checkpoint, and a 25-Gaussians run with the trainer's default checkpoints
every 500 steps grew its loss to -5e5 unflagged). The default 1000 comes from the loss traces of the experiment log:
healthy stage-2 runs ended within 100x of their first steps, the diverged ones (StackedMNIST without the energy term,
25-Gaussians past 11000 iterations) passed 1000x on their way to 1e5-1e9. At a checkpoint the new median must itself
stay within ``blowup_factor`` of the old reference, else the checkpoint is not written and the stretch counts as a
divergence. A spread metric in ``collapse_watch`` (stage 2: the standard deviation of a batch's energies) diverged when
it falls to ``COLLAPSE_TOLERANCE * max(1, |level|)`` or below, ``level`` being the metric paired with it: a learning
rate of 10 kills the energy network in one step, after which every input, data or negative, gets the same energy —
which no magnitude test sees and the loss cannot undo, since it no longer depends on the input. The loop then rolls
back to the last checkpoint that verifies and multiplies the learning rate by ``lr_factor``; after ``max_retries``
rollbacks it raises :class:`TrainingDivergedError`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

BLOWUP_FLOOR = 1.0
COLLAPSE_TOLERANCE = 1e-6  # a spread this small relative to the level is float32 rounding: one value for all inputs


GENERIC_FIX = "lower the learning rate"
EARLY_REASON = "its median over the stage's first steps"
GROWTH_FIX = (
    "; if this growth is healthy for your run (e.g. one far longer than the presets'), raise "
    "--divergence_growth_factor ('inf' turns the growth test off)."
)


class TrainingDivergedError(RuntimeError):
    """Training kept diverging after every allowed rollback."""


@dataclass
class DivergenceGuard:
    """Running state of the guard; ``state_dict`` round-trips it through checkpoints."""

    watch: Sequence[str]
    steady_watch: Sequence[str] = ()
    collapse_watch: Sequence[tuple[str, str]] = ()  # (spread metric, the level metric it is judged against)
    max_retries: int = 3
    lr_factor: float = 0.5
    blowup_factor: float = 50.0
    window: int = 50
    min_history: int = 10
    early_factor: float = 1000.0
    fix: str = GENERIC_FIX  # what the user can change, named by the stage's flags (the give-up message ends with it)
    grew: bool = False  # the last check's reason was the growth test (not checkpointed: read by on_divergence next)
    retries: int = 0
    lr_scale: float = 1.0
    history: dict[str, list[float]] = field(default_factory=dict)
    reference: dict[str, float] = field(default_factory=dict)
    early: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"--divergence_max_retries must be >= 0, got {self.max_retries}")
        if not 0 < self.lr_factor < 1:
            raise ValueError(f"--divergence_lr_factor must be in (0, 1), got {self.lr_factor}")
        if not self.blowup_factor > 1:
            raise ValueError(f"--divergence_threshold must be > 1, got {self.blowup_factor}")
        if not self.early_factor > 1:
            raise ValueError(f"--divergence_growth_factor must be > 1 ('inf' turns it off), got {self.early_factor}")

    def check(self, metrics: Mapping[str, float], weights_finite: bool = True) -> str | None:
        """Why this step diverged (a sentence), or ``None`` — in which case the watched values join the history.
        ``grew`` says whether the reason is the whole-stage growth test."""
        self.grew = False
        for name, value in metrics.items():
            if not math.isfinite(value):
                return f"{name} is {value}"
        if not weights_finite:
            return "a weight became NaN/Inf"
        for name, level in self.collapse_watch:
            if name in metrics and metrics[name] <= COLLAPSE_TOLERANCE * max(abs(metrics.get(level, 0.0)), 1.0):
                return f"{name} = {metrics[name]:.3g}: the model gives every input the same output (collapsed)"
        for name in self.watch:
            past = self.history.get(name, [])
            if name not in metrics or (name not in self.reference and len(past) < self.min_history):
                continue
            value = abs(metrics[name])
            if name in self.reference:  # frozen at the last checkpoint
                limits = [(self.blowup_factor, self.reference[name], "its reference from the last good checkpoint")]
            else:
                limits = [(self.blowup_factor, statistics.median(past), "the median of the steps so far")]
            if name in self.early:  # for the whole stage: a reference that moves at each checkpoint follows growth
                limits.append((self.early_factor, self.early[name], EARLY_REASON))
            for factor, baseline, what in limits:
                limit = factor * max(baseline, BLOWUP_FLOOR)
                if value > limit:
                    self.grew = what == EARLY_REASON
                    return f"|{name}| = {value:.4g} exceeds {factor:g}x {what} ({limit:.4g})"
        for name in self.watch:
            if name in metrics:
                self.history[name] = (self.history.get(name, []) + [abs(metrics[name])])[-self.window :]
                if name in self.steady_watch and name not in self.early and len(self.history[name]) == self.window:
                    self.early[name] = statistics.median(self.history[name])
        return None

    def at_checkpoint(self) -> str | None:
        """Before a checkpoint is written: why the stretch since the last one blew up (its median left the reference
        by more than ``blowup_factor``), or ``None`` — then the reference moves to the new medians."""
        medians = {name: statistics.median(values) for name, values in self.history.items() if values}
        for name, median in medians.items():
            if name in self.reference and median > self.blowup_factor * max(self.reference[name], BLOWUP_FLOOR):
                return (
                    f"the median |{name}| since the last checkpoint ({median:.4g}) exceeds {self.blowup_factor:g}x "
                    f"its reference ({self.reference[name]:.4g})"
                )
        self.reference.update({name: m for name, m in medians.items() if len(self.history[name]) >= self.min_history})
        return None

    def on_divergence(self, reason: str, step: int, rollback_to: str) -> float:
        """Record a rollback and return the new learning-rate scale; raise once the retries are used up."""
        if self.retries >= self.max_retries:
            raise TrainingDivergedError(
                f"Training diverged at step {step} ({reason}) after {self.retries} rollback(s) with the learning rate "
                f"lowered to {self.lr_scale:g}x its setting. Giving up; the last good checkpoint is {rollback_to}. "
                f"Fix: {self.fix}, or allow more rollbacks with --divergence_max_retries"
                + (GROWTH_FIX if self.grew else ".")
            )
        self.retries += 1
        self.lr_scale *= self.lr_factor
        return self.lr_scale

    def state_dict(self) -> dict:
        return {
            "retries": self.retries,
            "lr_scale": self.lr_scale,
            "history": {k: list(v) for k, v in self.history.items()},
            "reference": dict(self.reference),
            "early": dict(self.early),
        }

    def load_state_dict(self, state: Mapping) -> None:
        self.retries = int(state["retries"])
        self.lr_scale = float(state["lr_scale"])
        self.history = {k: list(v) for k, v in state["history"].items()}
        self.reference = {k: float(v) for k, v in state.get("reference", {}).items()}
        self.early = {k: float(v) for k, v in state.get("early", {}).items()}
