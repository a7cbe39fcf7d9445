"""Official VAEBM energy checkpoints: safe loading, conversion, and numerical agreement with the fixtures."""

from __future__ import annotations

import argparse
import datetime
import functools
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from vaebm_hub.convert import load_official_checkpoint, load_official_ebm
from vaebm_hub.models.modeling_ebm import VAEBMEnergyModel

OFFICIAL = Path(__file__).parent / "fixtures" / "official"
LAYOUTS = ["cifar32", "celeba64", "lsun64", "celeba256", "mnist"]
WITH_DATA_INIT = ["cifar32", "celeba64", "mnist"]


def _fixture(layout: str) -> tuple[Path, dict, dict[str, torch.Tensor]]:
    folder = OFFICIAL / f"ebm_{layout}"
    config = json.loads((folder / "config.json").read_text())
    return folder / "checkpoint.pth", config, load_file(folder / "reference.safetensors")


@functools.cache
def _converted(layout: str) -> VAEBMEnergyModel:
    """One conversion per fixture for the module (tests that use it reset any power-iteration state they rely on)."""
    return load_official_ebm(OFFICIAL / f"ebm_{layout}" / "checkpoint.pth")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_converted_energy_and_input_gradient_match_the_official_network(layout: str) -> None:
    _, config, ref = _fixture(layout)
    model = _converted(layout)
    assert (model.config.layout, model.config.n_channel) == (layout, config["n_channel"])
    assert (model.config.in_channels, model.config.sample_size) == (config["nc"], config["im_size"])
    x = ref["x"].clone().requires_grad_(True)
    energy = model(x)
    (grad_x,) = torch.autograd.grad(energy.sum(), x)
    torch.testing.assert_close(energy.detach(), ref["energy"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_x, ref["grad_x"], rtol=0, atol=1e-4)


@pytest.mark.parametrize("layout", WITH_DATA_INIT)
def test_data_init_reproduces_the_official_initialisation(layout: str) -> None:
    _, config, _ = _fixture(layout)
    stored = load_file(OFFICIAL / f"ebm_{layout}" / "data_init.safetensors")
    post = {key.removeprefix("post."): value for key, value in stored.items() if key.startswith("post.")}
    model = VAEBMEnergyModel(config["nc"], config["im_size"], layout=layout, n_channel=config["n_channel"])
    generator = torch.Generator().manual_seed(0)
    scrambled = {  # the init must overwrite every conv bias / log_weight_norm, whatever they held
        key: torch.randn(value.shape, generator=generator)
        if key.endswith(("bias", "log_weight_norm")) and not key.startswith("linear")
        else value
        for key, value in post.items()
    }
    model.load_state_dict(scrambled)
    model.data_init_(stored["x_init"])
    state = model.state_dict()
    for key, value in post.items():
        torch.testing.assert_close(state[key], value, rtol=1e-5, atol=1e-5, msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_spectral_regularisation_matches_the_official_power_iteration(layout: str) -> None:
    path, _, ref = _fixture(layout)
    with safe_open(path.parent / "reference.safetensors", "pt") as f:
        sr_groups = json.loads(f.metadata()["sr_groups"])
    model = _converted(layout)
    assert [[list(shape), names] for shape, names in model.spectral_groups()] == sr_groups
    count = len(sr_groups)
    model.set_power_iteration_vectors(
        [ref[f"sr.u0.{j}"] for j in range(count)], [ref[f"sr.v0.{j}"] for j in range(count)]
    )
    first = model.spectral_norm_loss(num_power_iter=4)
    torch.testing.assert_close(first.detach(), ref["sr.loss_first_call"], rtol=1e-5, atol=0)
    u, v = model.power_iteration_vectors()
    for j in range(count):
        torch.testing.assert_close(u[j], ref[f"sr.u_after_first_call.{j}"], rtol=0, atol=5e-4)
        torch.testing.assert_close(v[j], ref[f"sr.v_after_first_call.{j}"], rtol=0, atol=5e-4)
    second = model.spectral_norm_loss(num_power_iter=4)
    torch.testing.assert_close(second.detach(), ref["sr.loss_second_call"], rtol=1e-5, atol=0)
    assert first.requires_grad and second.requires_grad


def test_load_official_ebm_accepts_a_bare_state_dict_and_sample_size_override(tmp_path) -> None:
    path, _, ref = _fixture("cifar32")
    bare = tmp_path / "bare.pth"
    torch.save(torch.load(path, weights_only=True)["model"], bare)
    model = load_official_ebm(bare, layout="cifar32", in_channels=3, sample_size=64)
    assert model.config.sample_size == 64 and not model.training
    torch.testing.assert_close(load_official_ebm(bare)(ref["x"]), ref["energy"], rtol=1e-5, atol=1e-5)


def test_state_dict_that_fits_no_layout_names_the_mismatches(tmp_path) -> None:
    path, _, _ = _fixture("lsun64")
    state = torch.load(path, weights_only=True)["model"]
    del state["blocks.9.conv2.bias"]
    state["blocks.1.conv1.weight"] = torch.zeros(8, 8, 1, 1)
    torch.save({"model": state}, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="fits no EBM layout") as error:
        load_official_ebm(tmp_path / "broken.pth")
    message = str(error.value)
    assert "closest is 'lsun64'" in message and "missing: blocks.9.conv2.bias" in message
    assert "blocks.1.conv1.weight: (8, 8, 1, 1) vs (8, 8, 3, 3)" in message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layout": "celeba64"}, "fits no EBM layout \\(celeba64\\); closest is 'celeba64': missing: blocks.4.skip"),
        ({"layout": "imagenet"}, "Unknown EBM layout 'imagenet'"),
        ({"in_channels": 1}, "in_channels=1 but the checkpoint's stem takes 3 channels"),
    ],
)
def test_load_official_ebm_rejects_inconsistent_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_official_ebm(_fixture("lsun64")[0], **kwargs)


def test_missing_checkpoint_raises_file_not_found_naming_the_path(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_official_checkpoint(tmp_path / "nowhere.pth")


def test_truncated_checkpoint_is_reported_as_corrupt_or_partial(tmp_path) -> None:
    data = (OFFICIAL / "ebm_mnist" / "checkpoint.pth").read_bytes()
    truncated = tmp_path / "EBM_truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="EBM_truncated.pth' is corrupt or partial"):
        load_official_ebm(truncated)


def test_checkpoint_needing_other_globals_is_refused_by_name(tmp_path) -> None:
    path = tmp_path / "unsafe.pth"
    torch.save({"model": {}, "when": datetime.date(2021, 1, 1)}, path)
    with pytest.raises(ValueError, match="'datetime.date', which was refused.*never unpickles arbitrary objects"):
        load_official_checkpoint(path, allow_namespace=True)


def test_namespace_is_allowed_only_on_request_and_only_for_that_call(tmp_path) -> None:
    path = tmp_path / "with_args.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "args": argparse.Namespace(dataset="cifar10")}, path)
    with pytest.raises(ValueError, match="'argparse.Namespace'.*Pass allow_namespace=True"):
        load_official_checkpoint(path)
    assert load_official_checkpoint(path, allow_namespace=True)["args"].dataset == "cifar10"
    assert argparse.Namespace not in torch.serialization.get_safe_globals()
    nvae = load_official_checkpoint(OFFICIAL / "nvae_B_mnist_bernoulli" / "checkpoint.pt", allow_namespace=True)
    assert isinstance(nvae["args"], argparse.Namespace) and "prior_ftr0" in nvae["state_dict"]


def test_checkpoint_that_is_not_a_dict_is_rejected(tmp_path) -> None:
    torch.save([torch.ones(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="holds a list, expected a dict"):
        load_official_checkpoint(tmp_path / "list.pth")
