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

For decoders without pixel noise (Bernoulli, logistic mixture) ``x`` is the decoder mean and the chain moves in
``eps_z`` only (``log p(x|z)`` is then omitted from the official potential).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

POTENTIALS = ("exact", "official")


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
    eps_z, eps_x = vae.split_noise(eps)
    prior = vae.decode_noise(eps_z, temperature)
    decoder = vae.output_distribution(prior.logits)
    x = decoder.rsample(eps_x) if eps_x is not None else decoder.mean
    energy = ebm(x, check_finite=False)  # non-finite chains are tracked by the caller
    if potential == "exact":
        u = energy + 0.5 * eps.pow(2).sum(dim=1)
    else:
        u = energy - prior.log_p_z
        if eps_x is not None:
            u = u - decoder.log_prob(x).flatten(1).sum(dim=1)
    return PotentialOutput(potential=u, energy=energy, images=x)


def potential_and_grad(
    vae, ebm, eps: torch.Tensor, temperature: float = 1.0, potential: str = "exact"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(U, dU/deps, E)`` detached; the gradient is taken with respect to ``eps`` only (no parameter gradients
    are computed or accumulated). ``dU/deps`` of row b is ``d U_b / d eps_b`` (rows are independent chains)."""
    with torch.enable_grad():
        eps = eps.detach().requires_grad_(True)
        out = vaebm_potential(vae, ebm, eps, temperature, potential)
        (grad,) = torch.autograd.grad(out.potential.sum(), eps)
    return out.potential.detach(), grad, out.energy.detach()
