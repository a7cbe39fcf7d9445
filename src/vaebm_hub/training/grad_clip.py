"""IGEBM element-wise gradient clipping (Du & Mordatch, 2019), as VAEBM uses it with Adam."""

from __future__ import annotations

import torch


@torch.no_grad()
def clip_grad_igebm_(optimizer: torch.optim.Optimizer) -> None:
    """Clamp every gradient entry to ``±(3 sqrt(v_hat) + 0.1)`` in place.

    ``v_hat = exp_avg_sq / (1 - beta2^t)`` is Adam's bias-corrected second moment after ``t`` steps. Parameters that
    have not been stepped yet (no Adam state: before the first step) are left unclipped. ``optimizer`` may be an
    Accelerate-wrapped optimizer.
    """
    inner = getattr(optimizer, "optimizer", optimizer)
    for group in inner.param_groups:
        beta2 = group["betas"][1]
        for param in group["params"]:
            state = inner.state.get(param)
            if param.grad is None or not state or "exp_avg_sq" not in state:
                continue
            step = float(state["step"])
            v_hat = state["exp_avg_sq"] / (1.0 - beta2**step)
            bound = 3.0 * v_hat.sqrt() + 0.1
            param.grad.copy_(torch.maximum(torch.minimum(param.grad, bound), -bound))
