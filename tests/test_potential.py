"""The Langevin potentials: the exact one against a closed form, the official one against the official code."""

from __future__ import annotations

import torch
from conftest import OFFICIAL, make_tiny_pipeline
from safetensors.torch import load_file
from torch import nn

from vaebm_hub import LangevinScheduler
from vaebm_hub.convert import load_official_ebm
from vaebm_hub.convert.nvae import load_official_nvae
from vaebm_hub.models.modeling_vae import PriorSample
from vaebm_hub.models.vae_mixin import VAEBMVAEMixin
from vaebm_hub.pipelines.potential import potential_and_grad, vaebm_potential


class LinearDecoder:
    def __init__(self, mean: torch.Tensor, scale: float) -> None:
        self.mean, self.scale = mean, scale

    def rsample(self, eps_x: torch.Tensor) -> torch.Tensor:
        return self.mean + self.scale * eps_x


class LinearVAE(VAEBMVAEMixin):
    """``z = A eps_z``, ``x = W z + b + s eps_x``: the potential's gradient has a closed form."""

    has_pixel_noise = True

    def __init__(self, a: torch.Tensor, w: torch.Tensor, b: torch.Tensor, scale: float) -> None:
        self.a, self.w, self.b, self.scale = a, w, b, scale
        self.latent_shapes, self.data_shape = [(a.shape[0],)], (w.shape[0],)

    def decode_noise(self, eps_z, temperature=1.0):
        z = eps_z[0] @ self.a.T
        return PriorSample(logits=z @ self.w.T + self.b, z=[z], log_p_z=torch.zeros(z.shape[0]))

    def output_distribution(self, logits):
        return LinearDecoder(logits, self.scale)


class QuadraticEnergy(nn.Module):
    """``E(x) = 1/2 (x - c)^T Q (x - c)``."""

    def __init__(self, q: torch.Tensor, c: torch.Tensor) -> None:
        super().__init__()
        self.q, self.c = q, c

    def forward(self, x: torch.Tensor, check_finite: bool = True) -> torch.Tensor:
        d = x - self.c
        return 0.5 * ((d @ self.q) * d).sum(dim=1)


def test_exact_potential_gradient_matches_closed_form():
    g = torch.Generator().manual_seed(0)
    kw = dict(generator=g, dtype=torch.float64)
    a, w, b = torch.randn(3, 3, **kw), torch.randn(4, 3, **kw), torch.randn(4, **kw)
    m = torch.randn(4, 4, **kw)
    q, c = m @ m.T + torch.eye(4, dtype=torch.float64), torch.randn(4, **kw)
    vae, ebm = LinearVAE(a, w, b, scale=0.3), QuadraticEnergy(q, c)
    eps = torch.randn(5, 7, **kw)
    u, grad, energy = potential_and_grad(vae, ebm, eps, potential="exact")

    eps_z, eps_x = eps[:, :3], eps[:, 3:]
    x = eps_z @ a.T @ w.T + b + 0.3 * eps_x
    residual = (x - c) @ q  # = Q (x - c), Q symmetric
    expected_u = 0.5 * (residual * (x - c)).sum(1) + 0.5 * (eps**2).sum(1)
    expected_grad = torch.cat([residual @ w @ a + eps_z, 0.3 * residual + eps_x], dim=1)
    torch.testing.assert_close(u, expected_u)
    torch.testing.assert_close(energy, 0.5 * (residual * (x - c)).sum(1))
    torch.testing.assert_close(grad, expected_grad)


def test_gradients_are_taken_with_respect_to_the_noise_only():
    pipe = make_tiny_pipeline()
    eps = pipe.vae.sample_noise(2, generator=torch.Generator().manual_seed(0))
    _, grad, _ = potential_and_grad(pipe.vae, pipe.ebm, eps)
    assert grad.shape == eps.shape and torch.isfinite(grad).all()
    assert all(p.grad is None for p in [*pipe.vae.parameters(), *pipe.ebm.parameters()])


def test_official_potential_adds_the_vae_log_densities():
    """official - exact = -log p(z) - log p(x|z) - |eps|^2 / 2, with the VAE's own log-densities."""
    pipe = make_tiny_pipeline()
    vae, ebm = pipe.vae, pipe.ebm
    eps = vae.sample_noise(3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        exact = vaebm_potential(vae, ebm, eps, potential="exact")
        official = vaebm_potential(vae, ebm, eps, potential="official")
        eps_z, eps_x = vae.split_noise(eps)
        prior = vae.decode_noise(eps_z)
        log_px = vae.output_distribution(prior.logits).log_prob(official.images).flatten(1).sum(1)
    expected = exact.potential - prior.log_p_z - log_px - 0.5 * (eps**2).sum(1)
    torch.testing.assert_close(official.potential, expected, rtol=1e-5, atol=1e-3)


def test_official_potential_gradient_and_update_match_the_official_code():
    """Config A + ebm_cifar32: U, E, dU/deps and one Langevin update (fixture README tolerances)."""
    vae = load_official_nvae(OFFICIAL / "nvae_A_cifar10_normal" / "checkpoint.pt")
    ebm = load_official_ebm(OFFICIAL / "ebm_cifar32" / "checkpoint.pth")
    ref = load_file(OFFICIAL / "langevin_A_cifar32" / "reference.safetensors")
    eps = vae.merge_noise([ref[f"eps_z.{i}"] for i in range(4)], ref["eps_x"])
    with torch.no_grad():
        out = vaebm_potential(vae, ebm, eps, potential="official")
    torch.testing.assert_close(out.images, ref["neg_x"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.energy, ref["energy"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.potential, ref["U"], atol=5e-3, rtol=1e-6)

    _, grad, _ = potential_and_grad(vae, ebm, eps, potential="official")
    grad_z, grad_x = vae.split_noise(grad)
    for i in range(4):
        torch.testing.assert_close(grad_z[i], ref[f"grad_eps_z.{i}"], atol=1e-4, rtol=0)
    torch.testing.assert_close(grad_x, ref["grad_eps_x"], atol=1e-4, rtol=0)
    saturated = (ref["neg_x"] == 0) | (ref["neg_x"] == 1)
    assert saturated.any() and (grad_x[saturated] == 0).all()

    noise = vae.merge_noise([ref[f"noise_z.{i}"] for i in range(4)], ref["noise_x"])
    scheduler = LangevinScheduler(step_size=8e-5)
    new = eps - 0.5 * 8e-5 * grad + 8e-5**0.5 * noise  # the scheduler's update, with the recorded noise
    assert scheduler.config.noise_scale == 1.0
    new_z, new_x = vae.split_noise(new)
    for i in range(4):
        torch.testing.assert_close(new_z[i], ref[f"eps_z_new.{i}"], atol=1e-6, rtol=0)
    torch.testing.assert_close(new_x, ref["eps_x_new"], atol=1e-6, rtol=0)
    with torch.no_grad():
        mu_new = vae.output_distribution(vae.decode_noise(new_z).logits).mu
    torch.testing.assert_close(mu_new, ref["dec_mu_new"], atol=1e-5, rtol=1e-5)
