"""One unadjusted Langevin chain that survives non-finite proposals, shared by the trainer's negatives (noise space)
and the x-space ablation (:mod:`.x_space`)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..schedulers.scheduling_langevin import LangevinScheduler


def langevin_chain(
    grad_fn: Callable[[torch.Tensor], torch.Tensor],
    state: torch.Tensor,
    scheduler: LangevinScheduler,
    *,
    generator: torch.Generator | None = None,
    clip_range: tuple[float, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One :meth:`LangevinScheduler.step` per ``scheduler.timesteps`` from ``state`` (B, ...), with ``grad_fn(state)``
    the potential's gradient; proposals are clamped to ``clip_range`` when given.

    Returns the final states and a (B,) mask of the chains that stayed finite; a chain whose proposal is NaN/Inf keeps
    its last finite state (no host synchronisation inside the loop).
    """
    finite = torch.ones(state.shape[0], dtype=torch.bool, device=state.device)
    for t in scheduler.timesteps:
        proposal = scheduler.step(grad_fn(state), t, state, generator=generator).prev_sample
        if clip_range is not None:
            proposal = proposal.clamp(*clip_range)
        ok = torch.isfinite(proposal).flatten(1).all(dim=1)
        finite &= ok
        state = torch.where(ok.view(-1, *[1] * (state.dim() - 1)), proposal, state)
    return state, finite
