"""VAEBMEnergyModel / VAEBMEnergyMLP: shapes, validation, presets, data init, spectral regularisation, Hub I/O."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from vaebm_hub.models.layers import WNConv2d
from vaebm_hub.models.modeling_ebm import EBM_LAYOUTS, VAEBMEnergyModel
from vaebm_hub.models.modeling_ebm_mlp import VAEBMEnergyMLP

OFFICIAL_LAYOUTS = ["cifar32", "celeba64", "lsun64", "celeba256", "mnist"]


def _tiny(seed: int = 0, **kwargs) -> VAEBMEnergyModel:
    torch.manual_seed(seed)
    return VAEBMEnergyModel(**{"n_channel": 8, **kwargs})


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_default_digits8_model_maps_8x8_digits_to_one_energy_each() -> None:
    model = VAEBMEnergyModel()
    energy = model(torch.rand(5, 1, 8, 8))
    assert energy.shape == (5,)
    assert 50_000 <= _num_params(model) <= 150_000


@pytest.mark.parametrize(
    ("layout", "n_channel", "millions"),
    [
        ("cifar32", 128, 5.14),
        ("celeba64", 64, 4.34),
        ("lsun64", 64, 5.81),
        ("celeba256", 64, 14.21),
        ("mnist", 64, 0.68),
    ],
)
def test_paper_size_presets_have_the_reference_parameter_counts(layout: str, n_channel: int, millions: float) -> None:
    with torch.device("meta"):
        model = VAEBMEnergyModel(3, EBM_LAYOUTS[layout].sample_size, layout=layout, n_channel=n_channel)
    assert round(_num_params(model) / 1e6, 2) == millions


@pytest.mark.parametrize("layout", OFFICIAL_LAYOUTS)
def test_presets_accept_their_design_image_size(layout: str) -> None:
    size = EBM_LAYOUTS[layout].sample_size
    model = _tiny(layout=layout, in_channels=3, sample_size=size, n_channel=2)
    assert model(torch.rand(1, 3, size, size)).shape == (1,)


def test_unknown_layout_error_lists_the_known_names() -> None:
    with pytest.raises(ValueError, match="cifar32, celeba64, lsun64, celeba256, mnist, digits8, custom"):
        VAEBMEnergyModel(layout="imagenet")


def test_custom_layout_builds_the_listed_blocks() -> None:
    model = _tiny(layout="custom", custom_blocks=[[1, 2, True], [2, 2, False]], sample_size=4)
    assert [(b.conv1.in_channels, b.conv2.out_channels, b.down) for b in model.blocks] == [
        (8, 16, True),
        (16, 16, False),
    ]
    assert isinstance(model.blocks[0].skip[0], WNConv2d) and isinstance(model.blocks[1].skip, torch.nn.Identity)
    assert model(torch.rand(2, 1, 4, 4)).shape == (2,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layout": "custom"}, "needs `custom_blocks`"),
        ({"layout": "custom", "custom_blocks": [[1, 2, True], [1, 2, False]]}, r"custom_blocks\[1\] has in_mult=1"),
        ({"layout": "custom", "custom_blocks": [[1, 2]]}, "expected"),
        ({"layout": "mnist", "custom_blocks": [[1, 1, True]]}, 'only used with layout="custom"'),
        ({"sample_size": 6}, r"multiple of 2\*\*2"),
    ],
)
def test_invalid_configs_are_rejected_with_the_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VAEBMEnergyModel(**kwargs)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 1, 16, 16), (1, 8, 8)])
def test_forward_rejects_images_of_the_wrong_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=rf"Expected images of shape \(B, 1, 8, 8\), got \({shape[0]}, "):
        _tiny()(torch.rand(shape))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_forward_rejects_non_finite_images(bad: float) -> None:
    x = torch.rand(2, 1, 8, 8)
    x[1, 0, 3, 3] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        _tiny()(x)


def test_data_init_gives_every_conv_zero_mean_and_std_one_fifth_on_the_batch() -> None:
    model = _tiny(seed=1)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    weights = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("weight")}
    model.data_init_(x)
    outputs = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, name=name: outputs.__setitem__(name, out))
        for name, m in model.named_modules()
        if isinstance(m, WNConv2d)
    ]
    model(x)
    for hook in hooks:
        hook.remove()
    assert len(outputs) == 9  # stem + 3 blocks x 2 convs + 2 skips
    for name, out in outputs.items():
        per_channel = out.transpose(0, 1).flatten(1)
        if not name.endswith("skip.0"):  # the 1x1 skips have no bias, so only their scale is set
            torch.testing.assert_close(per_channel.mean(1), torch.zeros(out.shape[1]), atol=1e-5, rtol=0)
        torch.testing.assert_close(per_channel.std(1), torch.full((out.shape[1],), 0.2), atol=1e-4, rtol=0)
    for key, value in weights.items():  # conv weights and the linear head are untouched
        assert torch.equal(model.state_dict()[key], value)


def test_spectral_norm_loss_converges_to_the_sum_of_top_singular_values() -> None:
    model = _tiny(seed=3)
    loss = model.spectral_norm_loss(num_power_iter=30, generator=torch.Generator().manual_seed(0))
    exact = sum(
        torch.linalg.matrix_norm(m.effective_weight().detach().flatten(1), ord=2)
        for m in model.modules()
        if isinstance(m, WNConv2d)
    )
    torch.testing.assert_close(loss.detach(), exact, rtol=1e-4, atol=0)
    loss.backward()
    assert model.conv1.weight.grad is not None and model.blocks[0].skip[0].log_weight_norm.grad is not None
    assert model.linear.weight.grad is None  # the Linear head is not regularised


def test_spectral_norm_loss_is_reproducible_from_a_seeded_generator() -> None:
    losses = [_tiny(seed=4).spectral_norm_loss(1, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(losses[0], losses[1])
    other = _tiny(seed=4).spectral_norm_loss(1, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(losses[0], other)


def test_power_iteration_vectors_are_buffers_outside_the_state_dict() -> None:
    model = _tiny()
    assert model.power_iteration_vectors() is None
    model.spectral_norm_loss(generator=torch.Generator().manual_seed(0))
    u, v = model.power_iteration_vectors()
    groups = model.spectral_groups()
    assert [tuple(t.shape) for t in u] == [(len(names), rows) for (rows, _), names in groups]
    assert [tuple(t.shape) for t in v] == [(len(names), cols) for (_, cols), names in groups]
    assert "sr_u_0" in dict(model.named_buffers()) and not any(k.startswith("sr_") for k in model.state_dict())


def test_set_power_iteration_vectors_checks_the_group_shapes() -> None:
    model = _tiny()
    with pytest.raises(ValueError, match="Expected 6 power-iteration groups"):
        model.set_power_iteration_vectors([torch.ones(1, 8)], [torch.ones(1, 9)])
    u = [torch.ones(len(names), rows) for (rows, _), names in model.spectral_groups()]
    v = [torch.ones(len(names), cols + 1) for (_, cols), names in model.spectral_groups()]
    with pytest.raises(ValueError, match=r"Group 0: expected u \(1, 8\) and v \(1, 9\)"):
        model.set_power_iteration_vectors(u, v)


def test_save_and_load_pretrained_round_trip_without_power_iteration_state(tmp_path) -> None:
    model = _tiny(seed=5, layout="custom", custom_blocks=[[1, 2, True], [2, 2, True]])
    model.spectral_norm_loss(generator=torch.Generator().manual_seed(0))
    model.save_pretrained(tmp_path)
    assert not any(k.startswith("sr_") for k in load_file(tmp_path / "diffusion_pytorch_model.safetensors"))
    loaded = VAEBMEnergyModel.from_pretrained(tmp_path)
    assert loaded.config.custom_blocks == [[1, 2, True], [2, 2, True]]
    assert loaded.power_iteration_vectors() is None
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loaded(x), model(x), rtol=1e-6, atol=1e-6)


def test_mlp_energy_shapes_and_input_validation() -> None:
    torch.manual_seed(0)
    model = VAEBMEnergyMLP(in_features=2, hidden_dim=16, num_layers=3)
    assert model(torch.randn(7, 2)).shape == (7,)
    with pytest.raises(ValueError, match=r"Expected points of shape \(B, 2\), got \(7, 3\)"):
        model(torch.randn(7, 3))
    with pytest.raises(ValueError, match="NaN or Inf"):
        model(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="must be >= 1"):
        VAEBMEnergyMLP(num_layers=0)


def test_mlp_data_init_is_a_no_op_and_spectral_loss_matches_svd(tmp_path) -> None:
    torch.manual_seed(1)
    model = VAEBMEnergyMLP(in_features=2, hidden_dim=16, num_layers=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.data_init_(torch.randn(32, 2))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [names for _, names in model.spectral_groups()] == [["layers.0"], ["layers.1", "layers.2"]]
    loss = model.spectral_norm_loss(num_power_iter=30, generator=torch.Generator().manual_seed(0))
    exact = sum(torch.linalg.matrix_norm(layer.weight.detach(), ord=2) for layer in model.layers)
    torch.testing.assert_close(loss.detach(), exact, rtol=1e-4, atol=0)
    model.save_pretrained(tmp_path)
    x = torch.randn(4, 2)
    torch.testing.assert_close(VAEBMEnergyMLP.from_pretrained(tmp_path)(x), model(x), rtol=1e-6, atol=1e-6)
