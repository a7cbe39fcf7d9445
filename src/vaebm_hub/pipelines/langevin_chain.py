r"""The one Langevin chain loop. The pipeline, the trainer's negatives and the x-space ablation all run it.

In the spirit of k-diffusion's samplers: a pure function of a potential callable, a start state and a
:class:`LangevinScheduler`, owning the loop and nothing else. Per step ``t`` (``scheduler.timesteps``)::

    U, dU, E = potential_fn(state)                  # U(state), its gradient, and the energy E(x) to record
    proposal = scheduler.step(dU, t, state).prev_sample   # state - (eta_t / 2) dU + s sqrt(eta_t) xi
    state    = proposal            (ULA)   or   MH-accepted proposal (MALA, ``scheduler.config.metropolis``)

What the function returns beside the final state is the evidence callers act on, so that there is one NaN policy:
a per-chain ``finite`` mask (a chain whose proposal or potential leaves the finite numbers — or, with ``max_abs``,
whose state leaves ``[-max_abs, max_abs]`` — is marked and keeps its last good state), the energy trace and the MALA
acceptance rate. :func:`finite_chain_indices` turns the mask into the pipeline's policy (raise
:class:`NonFiniteChainError`, or drop those chains); the trainer turns it into a NaN loss for its divergence guard.
No host synchronisation happens inside the loop.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from ..schedulers.scheduling_langevin import LangevinScheduler

Evaluation = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
PotentialFn = Callable[[torch.Tensor], Evaluation]
"""``state (B, ...) -> (U (B,), dU/dstate (B, ...), E (B,))``, all detached."""


class NonFiniteChainError(FloatingPointError):
    """A Langevin chain reached NaN/Inf (or left its bound); raised instead of returning garbage samples."""


@dataclass
class ChainOutput:
    """``state`` (B, ...): the final states; ``finite`` (B,): chains that never left the finite numbers (or the
    bound); ``energy_trace`` (K' + 1, B): ``E`` at every state when requested (``K'`` = the steps run);
    ``acceptance_rate`` (0-d): the MALA acceptance rate, ``None`` for ULA."""

    state: torch.Tensor
    finite: torch.Tensor
    energy_trace: torch.Tensor | None = None
    acceptance_rate: torch.Tensor | None = None


def _rows_ok(x: torch.Tensor, max_abs: float | None) -> torch.Tensor:
    flat = x.flatten(1)
    ok = torch.isfinite(flat).all(dim=1)
    if max_abs is not None:
        ok &= flat.abs().amax(dim=1) <= max_abs
    return ok


def _select(mask: torch.Tensor, new: Evaluation, old: Evaluation) -> Evaluation:
    u, grad, energy = (torch.where(mask.view(-1, *[1] * (a.dim() - 1)), a, b) for a, b in zip(new, old))
    return u, grad, energy


def langevin_chain(
    potential_fn: PotentialFn,
    state: torch.Tensor,
    scheduler: LangevinScheduler,
    *,
    generator: torch.Generator | list[torch.Generator] | None = None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor | None] | None = None,
    clip_range: tuple[float, float] | None = None,
    max_abs: float | None = None,
    return_energy_trace: bool = False,
    progress_bar: Callable[[Iterable], Iterable] | None = None,
    interrupted: Callable[[], bool] | None = None,
) -> ChainOutput:
    """Run one Langevin step per ``scheduler.timesteps`` from ``state`` (B, ...) on ``potential_fn``.

    Args:
        potential_fn: ``state -> (U, dU/dstate, E)`` (see :data:`PotentialFn`); rows are independent chains.
        state: the start, e.g. noise ``eps`` (B, D) or images (B, C, H, W).
        scheduler: step sizes, noise scale and whether to apply the MALA correction; ``set_timesteps`` first.
        generator: the ``torch.Generator`` (or one per chain) of every draw.
        callback: ``fn(step_index, timestep, state)`` after each step; a returned tensor replaces the state.
        clip_range: clamp every proposal to ``[low, high]`` (x-space chains keep images in ``[0, 1]``); not with
            MALA, whose acceptance test assumes the unclamped proposal.
        max_abs: a chain whose state leaves ``[-max_abs, max_abs]`` counts as diverged (like NaN/Inf).
        return_energy_trace: record ``E`` at every state, the final one included.
        progress_bar: wraps the timesteps (e.g. ``pipeline.progress_bar``).
        interrupted: polled before each step; when it returns True the chain stops where it is.

    Returns:
        :class:`ChainOutput`. ULA evaluates ``potential_fn`` once per step (plus once at the end for the trace);
        MALA once per step plus once at the start, reusing an accepted proposal's evaluation.
    """
    metropolis = scheduler.config.metropolis
    if metropolis and clip_range is not None:
        raise ValueError("clip_range cannot be combined with MALA (metropolis=True): the clamp breaks the MH test.")
    finite = torch.ones(state.shape[0], dtype=torch.bool, device=state.device)
    trace: list[torch.Tensor] = []
    evaluation: Evaluation | None = None
    timesteps = scheduler.timesteps if progress_bar is None else progress_bar(scheduler.timesteps)
    for i, t in enumerate(timesteps):
        if interrupted is not None and interrupted():
            break
        if evaluation is None:
            evaluation = potential_fn(state)
        u, grad, energy = evaluation
        finite &= torch.isfinite(u)
        if return_energy_trace:
            trace.append(energy)
        step = scheduler.step(grad, t, state, generator=generator)
        proposal = step.prev_sample if clip_range is None else step.prev_sample.clamp(*clip_range)
        ok = _rows_ok(proposal, max_abs)
        if metropolis:
            candidate = potential_fn(proposal)
            state, accepted = scheduler.metropolis_accept(
                state, proposal, u, candidate[0], grad, candidate[1], step.step_size, generator
            )
            accepted &= ok
            state = torch.where(accepted.view(-1, *[1] * (state.dim() - 1)), proposal, state)
            evaluation = _select(accepted, candidate, evaluation)
        else:
            state = torch.where(ok.view(-1, *[1] * (state.dim() - 1)), proposal, state)
            evaluation = None
        finite &= ok
        if callback is not None:
            replaced = callback(i, t, state)
            if replaced is not None:
                state, evaluation = replaced, None
    if return_energy_trace:
        if evaluation is None:
            evaluation = potential_fn(state)
        trace.append(evaluation[2])
    finite &= _rows_ok(state, max_abs)
    return ChainOutput(
        state=state,
        finite=finite,
        energy_trace=torch.stack(trace) if return_energy_trace else None,
        acceptance_rate=scheduler.acceptance_rate if metropolis else None,
    )


def finite_chain_indices(finite: torch.Tensor, drop: bool = False) -> torch.Tensor:
    """The sampling NaN policy: indices of the chains to keep. Raises :class:`NonFiniteChainError` unless every
    chain stayed finite, or ``drop`` is set (then the bad chains are dropped with a warning; if none is left, it
    raises). One host sync."""
    if bool(finite.all()):
        return torch.arange(finite.numel(), device=finite.device)
    bad, total = int((~finite).sum()), finite.numel()
    if not drop:
        raise NonFiniteChainError(
            f"{bad} of {total} Langevin chains reached NaN/Inf or diverged. Lower the step size (or the "
            "temperature), check the energy network for NaN energies, or pass drop_nonfinite=True to drop them."
        )
    if bad == total:
        raise NonFiniteChainError(
            f"all {total} Langevin chains reached NaN/Inf or diverged, so drop_nonfinite=True has nothing to return. "
            "Lower the step size (or the temperature), or check the energy network for NaN energies."
        )
    warnings.warn(f"dropped {bad} of {total} Langevin chains that reached NaN/Inf or diverged", stacklevel=3)
    return torch.nonzero(finite).flatten()
