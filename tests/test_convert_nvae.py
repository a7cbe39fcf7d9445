"""Official NVAE checkpoints convert to VAEBMVAE and reproduce the official outputs (fixture README tolerances)."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from vaebm_hub.convert.nvae import load_official_nvae, vae_config_from_nvae_args

FIXTURES = ["nvae_A_cifar10_normal", "nvae_A_cifar10_normal_nf1", "nvae_B_mnist_bernoulli", "nvae_C_cifar10_dml"]
ELEMENTWISE = dict(atol=1e-5, rtol=1e-5)
PER_PIXEL = dict(atol=5e-4, rtol=0)
SUMMED = dict(atol=5e-3, rtol=1e-6)


@pytest.fixture(scope="module", params=FIXTURES)
def converted(request):
    root = __import__("conftest").OFFICIAL / request.param
    return request.param, load_official_nvae(root / "checkpoint.pt"), load_file(root / "reference.safetensors")


def eps_z(ref, prefix="eps_z"):
    return [ref[f"{prefix}.{i}"] for i in range(4)]


@pytest.mark.parametrize("temperature", ["1.0", "0.7"])
def test_generative_path_matches_official(converted, temperature):
    name, vae, ref = converted
    key = f"sample.t{temperature}"
    with torch.no_grad():
        out = vae.decode_noise(eps_z(ref), float(temperature))
        decoder = vae.output_distribution(out.logits)
        log_prob = decoder.log_prob(ref["x"])
    torch.testing.assert_close(out.logits, ref[f"{key}.logits"], **ELEMENTWISE)
    for i, z in enumerate(out.z):
        torch.testing.assert_close(z, ref[f"{key}.z.{i}"], **ELEMENTWISE)
    torch.testing.assert_close(out.log_p_z, ref[f"{key}.log_p_total"], **SUMMED)
    torch.testing.assert_close(log_prob, ref[f"{key}.log_prob_x"], **PER_PIXEL)
    if name.startswith("nvae_A"):
        torch.testing.assert_close(decoder.mu, ref[f"{key}.dec_mu"], **ELEMENTWISE)
        torch.testing.assert_close(decoder.sigma, ref[f"{key}.dec_sigma"], **ELEMENTWISE)
        torch.testing.assert_close(decoder.likelihood_sigma, ref[f"{key}.dec_sigma_clamped"], **ELEMENTWISE)
        torch.testing.assert_close(decoder.rsample(ref["eps_x"]), ref[f"{key}.x_sample"], **ELEMENTWISE)
    else:
        torch.testing.assert_close(decoder.mean, ref[f"{key}.dec_mean"], **ELEMENTWISE)


def test_nvae_likelihood_without_the_vaebm_clamp(official_dir):
    """``likelihood_log_scale_min=None`` is NVAE's own (unclamped) decoder likelihood."""
    vae = load_official_nvae(official_dir / "nvae_A_cifar10_normal" / "checkpoint.pt")
    ref = load_file(official_dir / "nvae_A_cifar10_normal" / "reference.safetensors")
    vae.register_to_config(likelihood_log_scale_min=None)
    with torch.no_grad():
        logits = vae.decode_noise(eps_z(ref)).logits
        log_prob = vae.output_distribution(logits).log_prob(ref["x"])
    torch.testing.assert_close(log_prob, ref["sample.t1.0.log_prob_x_nvae"], **PER_PIXEL)
    assert not torch.allclose(log_prob, ref["sample.t1.0.log_prob_x"], atol=1e-2)


def test_encoder_pass_matches_official(converted):
    _, vae, ref = converted
    with torch.no_grad():
        out = vae(ref["x"], posterior_noise=eps_z(ref, "enc.eps_q"))
    torch.testing.assert_close(out.logits, ref["enc.logits"], **ELEMENTWISE)
    torch.testing.assert_close(out.log_q, ref["enc.log_q"], **SUMMED)
    torch.testing.assert_close(out.log_p, ref["enc.log_p"], **SUMMED)
    for i in range(4):
        torch.testing.assert_close(out.z[i], ref[f"enc.z.{i}"], **ELEMENTWISE)
        torch.testing.assert_close(out.kl_all[i], ref[f"enc.kl_all.{i}"], **PER_PIXEL)
        torch.testing.assert_close(out.kl_diag[i], ref[f"enc.kl_diag.{i}"], **PER_PIXEL)
        torch.testing.assert_close(out.posterior[i][0], ref[f"enc.q_mu.{i}"], **ELEMENTWISE)
        torch.testing.assert_close(out.posterior[i][1], ref[f"enc.q_sigma.{i}"], **ELEMENTWISE)
        torch.testing.assert_close(out.prior[i][0], ref[f"enc.p_mu.{i}"], **ELEMENTWISE)
        torch.testing.assert_close(out.prior[i][1], ref[f"enc.p_sigma.{i}"], **ELEMENTWISE)


def test_config_follows_the_checkpoint_args(official_dir):
    args = json.loads((official_dir / "nvae_C_cifar10_dml" / "args.json").read_text())
    config = vae_config_from_nvae_args(args)
    assert config["decoder_distribution"] == "discretized_logistic_mixture"
    assert (config["in_channels"], config["sample_size"], config["num_mixture_dec"]) == (3, 32, 10)
    mnist = vae_config_from_nvae_args({**args, "dataset": "mnist"})
    assert (mnist["decoder_distribution"], mnist["in_channels"]) == ("bernoulli", 1)
    assert vae_config_from_nvae_args({**args, "dataset": "lsun_church_64"})["sample_size"] == 64


def test_old_checkpoints_get_the_official_defaults(official_dir):
    args = json.loads((official_dir / "nvae_A_cifar10_normal" / "args.json").read_text())
    for key in ("ada_groups", "min_groups_per_scale"):
        args.pop(key)
    config = vae_config_from_nvae_args(args)
    assert config["ada_groups"] is False and config["min_groups_per_scale"] == 1


def test_unsupported_option_is_named(official_dir):
    args = json.loads((official_dir / "nvae_A_cifar10_normal" / "args.json").read_text())
    with pytest.raises(ValueError, match="arch_instance='res_elu'"):
        vae_config_from_nvae_args({**args, "arch_instance": "res_elu"})
    with pytest.raises(ValueError, match="unsupported NVAE dataset"):
        vae_config_from_nvae_args({**args, "dataset": "svhn"})


def _rewrite(official_dir, tmp_path, edit):
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = torch.load(official_dir / "nvae_A_cifar10_normal" / "checkpoint.pt", weights_only=True)
    edit(ckpt)
    path = tmp_path / "edited.pt"
    torch.save(ckpt, path)
    return path


def test_state_dict_that_does_not_fit_the_args_is_refused(official_dir, tmp_path):
    path = _rewrite(official_dir, tmp_path, lambda c: setattr(c["args"], "num_channels_dec", 16))
    with pytest.raises(ValueError, match="does not match the architecture"):
        load_official_nvae(path)


def test_inconsistent_alias_keys_are_refused(official_dir, tmp_path):
    def edit(ckpt):
        key = next(k for k in ckpt["state_dict"] if k.endswith(".weight_normalized"))
        ckpt["state_dict"][key] = ckpt["state_dict"][key] + 1

    with pytest.raises(ValueError, match="alias key"):
        load_official_nvae(_rewrite(official_dir, tmp_path, edit))


def test_truncated_and_missing_checkpoints(official_dir, tmp_path):
    data = (official_dir / "nvae_A_cifar10_normal" / "checkpoint.pt").read_bytes()
    (tmp_path / "partial.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or partial"):
        load_official_nvae(tmp_path / "partial.pt")
    with pytest.raises(FileNotFoundError):
        load_official_nvae(tmp_path / "nope.pt")


def test_converted_vae_round_trips_through_safetensors(official_dir, tmp_path):
    vae = load_official_nvae(official_dir / "nvae_A_cifar10_normal_nf1" / "checkpoint.pt")
    vae.save_pretrained(tmp_path / "vae")
    assert not any(".mask" in k for k in load_file(tmp_path / "vae" / "diffusion_pytorch_model.safetensors"))
    reloaded = type(vae).from_pretrained(tmp_path / "vae")
    ref = load_file(official_dir / "nvae_A_cifar10_normal_nf1" / "reference.safetensors")
    with torch.no_grad():
        a = vae(ref["x"], posterior_noise=eps_z(ref, "enc.eps_q")).logits
        b = reloaded(ref["x"], posterior_noise=eps_z(ref, "enc.eps_q")).logits
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    shutil.rmtree(tmp_path / "vae")
