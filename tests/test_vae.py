"""VAEBMVAE / VAEBMMLPVAE: geometry, the noise layout, NVAE's quirks as flags, presets, bad configs."""

from __future__ import annotations

import math

import pytest
import torch

from vaebm_hub import VAEBMMLPVAE, VAEBMVAE
from vaebm_hub.models import VAE_PRESETS


def test_default_is_the_small_digits_model():
    vae = VAEBMVAE()
    assert vae.data_shape == (1, 8, 8)
    assert vae.latent_shapes == [(4, 4, 4), (4, 4, 4)]
    assert vae.noise_dim == 2 * 64 + 64
    assert sum(p.numel() for p in vae.parameters()) < 200_000


def test_split_and_merge_noise_round_trip():
    vae = VAEBMVAE()
    eps = vae.sample_noise(3, generator=torch.Generator().manual_seed(0))
    eps_z, eps_x = vae.split_noise(eps)
    assert [tuple(e.shape) for e in eps_z] == [(3, 4, 4, 4)] * 2 and eps_x.shape == (3, 1, 8, 8)
    assert eps_z[0].data_ptr() == eps.data_ptr()  # views, no copies
    assert torch.equal(vae.merge_noise(eps_z, eps_x), eps)
    with pytest.raises(ValueError, match="noise must have shape"):
        vae.split_noise(eps[:, :-1])


def test_decoders_without_pixel_noise_have_latent_only_noise():
    vae = VAEBMVAE(decoder_distribution="bernoulli")
    assert not vae.has_pixel_noise and vae.noise_dim == vae.latent_dim == 128
    eps_z, eps_x = vae.split_noise(vae.sample_noise(2))
    assert eps_x is None and len(eps_z) == 2


def test_top_group_scale_is_1_01_t_and_configurable():
    eps = [torch.ones(1, 4, 4, 4), torch.zeros(1, 4, 4, 4)]
    with torch.no_grad():
        z0 = VAEBMVAE().decode_noise(eps, temperature=0.5).z[0]
        z0_exact = VAEBMVAE(sigma_offset=0.0).decode_noise(eps, temperature=0.5).z[0]
    torch.testing.assert_close(z0, torch.full_like(z0, 1.01 * 0.5))
    torch.testing.assert_close(z0_exact, torch.full_like(z0, 0.5))


def test_log_p_z_closed_form_when_every_prior_is_the_top_prior():
    """With a zeroed prior head every group is N(0, (1.01 t)^2): log p(z) = sum log N(sigma eps; 0, sigma^2)."""
    vae = VAEBMVAE()
    with torch.no_grad():
        for sampler in vae.dec_sampler:
            sampler[1].weight.zero_()
            sampler[1].bias.zero_()
    eps = [torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with torch.no_grad():
        out = vae.decode_noise(eps, temperature=0.7)
    sigma = 1.01 * 0.7
    expected = sum((-0.5 * e**2 - 0.5 * math.log(2 * math.pi) - math.log(sigma)).sum(dim=(1, 2, 3)) for e in eps)
    torch.testing.assert_close(out.log_p_z, expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out.z[1], sigma * eps[1], rtol=1e-5, atol=1e-6)


def test_elbo_and_iwae_bound():
    torch.manual_seed(0)
    vae = VAEBMVAE().eval()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        elbo = vae.elbo(x, generator=torch.Generator().manual_seed(2))
        iwae = vae.importance_weighted_log_likelihood(x, num_samples=8, generator=torch.Generator().manual_seed(2))
        out = vae(x, generator=torch.Generator().manual_seed(2))
    assert elbo.shape == iwae.shape == (4,)
    assert len(out.kl_all) == 2 and all((kl >= -1e-4).all() for kl in out.kl_all)  # analytic KL is >= 0
    # log p(x,z)-log q(z|x) averaged over posterior samples equals the ELBO in expectation; IWAE >= its mean
    assert (iwae >= elbo - 50).all()


def test_spectral_regulariser_covers_every_convolution():
    vae = VAEBMVAE(num_nf=1)
    names = [name for _, members in vae.spectral_groups() for name in members]
    assert "stem" in names and "image_conditional.1" in names and any("nf_cells" in n for n in names)
    loss = vae.spectral_norm_loss(generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert vae.stem.weight.grad is not None and loss.item() > 0
    assert not any(k.startswith("sr_") for k in vae.state_dict())


@pytest.mark.parametrize(
    "name, groups, first_shape",
    [("cifar10", 30, (20, 16, 16)), ("celeba64", 15, (20, 8, 8)), ("celebahq256", 20, (20, 8, 8))],
)
def test_paper_presets_construct_with_the_paper_latent_layout(name, groups, first_shape):
    with torch.device("meta"):
        vae = VAEBMVAE.from_preset(name)
    assert len(vae.latent_shapes) == groups and vae.latent_shapes[0] == first_shape
    assert vae.latent_shapes[-1][1] == VAE_PRESETS[name]["sample_size"] // 2  # finest group at half resolution


def test_meta_construction_of_every_preset():
    for name in VAE_PRESETS:
        with torch.device("meta"):
            vae = VAEBMVAE.from_preset(name)
        assert sum(p.numel() for p in vae.parameters()) > 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(decoder_distribution="poisson"), "decoder_distribution must be one of"),
        (dict(arch_instance="res_elu"), "arch_instance"),
        (dict(sample_size=9), "divisible"),
        (dict(num_groups_per_scale=1), "vanilla VAE"),
        (dict(decoder_distribution="discretized_logistic_mixture"), "RGB"),
        (dict(num_postprocess_blocks=2), "num_postprocess_blocks must equal"),
    ],
)
def test_bad_configs_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAEBMVAE(**kwargs)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown VAE preset"):
        VAEBMVAE.from_preset("imagenet")


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.rand(2, 3, 8, 8), "shape"),
        (torch.full((2, 1, 8, 8), float("inf")), "NaN or Inf"),
        (torch.rand(2, 1, 8, 8) + 1, r"\[0, 1\]"),
    ],
)
def test_bad_images_raise(images, message):
    with pytest.raises(ValueError, match=message):
        VAEBMVAE()(images)


def test_mlp_vae_for_vectors():
    torch.manual_seed(0)
    vae = VAEBMMLPVAE(latent_dim=3)
    assert vae.noise_dim == 3 + 2
    eps = vae.sample_noise(5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = vae.decode_noise(vae.split_noise(eps)[0], temperature=0.5)
        elbo = vae.elbo(torch.randn(5, 2))
    torch.testing.assert_close(out.z[0], 0.5 * eps[:, :3])
    expected = (-0.5 * (eps[:, :3]) ** 2 - 0.5 * math.log(2 * math.pi) - math.log(0.5)).sum(1)
    torch.testing.assert_close(out.log_p_z, expected)
    assert elbo.shape == (5,)
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        vae(torch.randn(5, 3))


def test_mlp_vae_power_iteration_state_round_trips():
    vae = VAEBMMLPVAE(hidden_dim=16)
    assert vae.power_iteration_state() is None
    loss = vae.spectral_norm_loss(generator=torch.Generator().manual_seed(0))
    top = max(torch.linalg.matrix_norm(m.weight, ord=2) for m in vae.modules() if isinstance(m, torch.nn.Linear))
    assert loss.item() >= top.item() * 0.99  # sum of per-layer spectral norms >= the largest one
    state = vae.power_iteration_state()
    clone = VAEBMMLPVAE(hidden_dim=16)
    clone.load_state_dict(vae.state_dict())
    clone.load_power_iteration_state(state)
    assert torch.equal(clone.spectral_norm_loss(), vae.spectral_norm_loss())
