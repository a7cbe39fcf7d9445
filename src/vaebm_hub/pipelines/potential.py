r"""VAEBM's Langevin potential in the VAE's noise space, and its gradient with respect to the noise only.

With ``eps = (eps_z, eps_x)``, ``z = T_z(eps_z)`` (ancestral sampling through the prior at temperature ``t``) and
``x = T_x(z, eps_x)`` (the decoder sample, clamped to ``[0, 1]``), two potentials ``U(eps)`` are offered:

* ``"exact"`` — the paper's target ``h(eps) ∝ exp(-E(T(eps))) N(eps; 0, I)``:

      U(eps) = E_psi(T_theta(eps)) + 1/2 ||eps||^2

* ``"official"`` — what the released code differentiates:

      U(eps) = E_psi(x) - log p_theta(z) - log p_theta(x | z)

  Reparameterised, ``-log p(z)`` equals ``1/2 ||eps_z||^2 + sum_l log sigma_l(z_<l) + const``, so this adds the
  ``sum_l log sigma_l`` terms and evaluates ``log p(x|z)`` with VAEBM's clamped decoder scale
  (``log sigma >= -2``): the eps_x pull is exactly ``eps_x`` only where the clamp is inactive.

Without pixel noise — decoders that have none (Bernoulli, logistic mixture), or chains on ``eps_z`` alone
(``pixel_noise=False``) — ``x`` is the decoder mean and ``log p(x|z)`` is omitted from the official potential.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

POTENTIALS = ("exact", "official")
HALF_DTYPES = (torch.float16, torch.bfloat16)


def _parameter_dtype(network, default: torch.dtype) -> torch.dtype:
    """The dtype of the network's first floating-point parameter (``default`` without one). Cheaper than diffusers'
    ``ModelMixin.dtype``, which walks every parameter: that walk cost ~3% of a digits-size Langevin step."""
    for param in network.parameters():
        if param.is_floating_point():
            return param.dtype
    return default


def _as_network_input(x: torch.Tensor, network) -> torch.Tensor:
    """``x`` cast to a half-precision network's dtype (autograd casts the gradient back); otherwise unchanged."""
    dtype = _parameter_dtype(network, x.dtype) if isinstance(network, torch.nn.Module) else x.dtype
    return x.to(dtype) if dtype in HALF_DTYPES and x.dtype != dtype else x


@dataclass
class PotentialOutput:
    """``potential`` U (B,), ``energy`` E(x) (B,) and the images ``x`` the energy network saw."""

    potential: torch.Tensor
    energy: torch.Tensor
    images: torch.Tensor


def vaebm_potential(
    vae, ebm, eps: torch.Tensor, temperature: float = 1.0, potential: str = "exact"
) -> PotentialOutput:
    """Evaluate ``U(eps)`` for flat noise ``eps`` (B, D); differentiable in ``eps``."""
    if potential not in POTENTIALS:
        raise ValueError(f"potential must be one of {POTENTIALS}, got {potential!r}")
    decoded = vae.noise_to_data(_as_network_input(eps, vae), temperature)
    # Non-finite chains are tracked by the caller. U is accumulated in eps's dtype (float32 chains may drive
    # half-precision networks), so the prior term is exact whatever the networks' precision.
    energy = ebm(_as_network_input(decoded.x, ebm), check_finite=False).to(eps.dtype)
    if potential == "exact":
        u = energy + 0.5 * eps.pow(2).sum(dim=1)
    else:
        u = energy - decoded.prior.log_p_z.to(eps.dtype)
        if eps.shape[1] > vae.latent_dim:  # the chain moves eps_x too
            u = u - decoded.decoder.log_prob(decoded.x).flatten(1).sum(dim=1).to(eps.dtype)
    return PotentialOutput(potential=u, energy=energy, images=decoded.x)


def potential_and_grad(
    vae,
    ebm,
    eps: torch.Tensor,
    temperature: float = 1.0,
    potential: str = "exact",
    potential_fn: Callable[..., PotentialOutput] = vaebm_potential,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(U, dU/deps, E)`` detached; the gradient is taken with respect to ``eps`` only (no parameter gradients
    are computed or accumulated). ``dU/deps`` of row b is ``d U_b / d eps_b`` (rows are independent chains).
    ``potential_fn`` evaluates U (:func:`vaebm_potential`, or its ``torch.compile`` version)."""
    with torch.enable_grad():
        eps = eps.detach().requires_grad_(True)
        out = potential_fn(vae, ebm, eps, temperature, potential)
        (grad,) = torch.autograd.grad(out.potential.sum(), eps)
    return out.potential.detach(), grad, out.energy.detach()
