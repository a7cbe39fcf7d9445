"""``vaebm-hub convert`` / ``sample`` and the converted pipeline's assembly."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import OFFICIAL
from PIL import Image

from vaebm_hub import VAEBMVAE, VAEBMPipeline
from vaebm_hub.cli import main
from vaebm_hub.convert import build_pipeline, load_official_ebm, load_official_nvae, zero_energy_model


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "pipe"
    main(["convert", "--nvae", str(OFFICIAL / "nvae_A_cifar10_normal" / "checkpoint.pt"),
          "--ebm", str(OFFICIAL / "ebm_cifar32" / "checkpoint.pth"), "--output", str(out)])  # fmt: skip
    return out


def test_convert_writes_a_loadable_pipeline_with_the_paper_sampler(converted):
    pipe = VAEBMPipeline.from_pretrained(converted)
    assert pipe.config.potential == "official"  # an imported official EBM keeps the potential it was trained with
    assert pipe.scheduler.config.default_num_inference_steps == 16 and pipe.scheduler.config.step_size == 8e-5
    reference_ebm = load_official_ebm(OFFICIAL / "ebm_cifar32" / "checkpoint.pth")
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(pipe.energy(x), reference_ebm(x), atol=1e-5, rtol=1e-5)
    card = (converted / "README.md").read_text()
    assert "NVIDIA" in card and "non-commercial" in card.lower()


def test_sample_writes_a_grid(converted, tmp_path, monkeypatch):
    out = tmp_path / "grid.png"
    thread_settings = []
    monkeypatch.setattr(torch, "set_num_threads", thread_settings.append)
    argv = ["sample", str(converted), "--num_images", "4", "--steps", "1", "--upscale", "2", "--output", str(out)]
    main([*argv, "--num_threads", "1"])
    assert Image.open(out).size == (2 * 32 * 2, 2 * 32 * 2)
    assert thread_settings == [1]


def test_zero_energy_pipeline_samples_the_vae_target():
    vae = load_official_nvae(OFFICIAL / "nvae_A_cifar10_normal" / "checkpoint.pt")
    pipe = build_pipeline(vae)
    assert pipe.config.potential == "exact"
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(pipe.energy(x), torch.zeros(3))
    # with E = 0 the exact potential is |eps|^2 / 2: the chain's gradient is eps itself (target N(0, I))
    from vaebm_hub.pipelines import potential_and_grad

    eps = vae.sample_noise(2, generator=torch.Generator().manual_seed(0))
    _, grad, _ = potential_and_grad(pipe.vae, pipe.ebm, eps)
    torch.testing.assert_close(grad, eps)


def test_mismatched_vae_and_ebm_are_refused():
    with pytest.raises(ValueError, match="energy network expects"):
        build_pipeline(VAEBMVAE(), load_official_ebm(OFFICIAL / "ebm_cifar32" / "checkpoint.pth"))
    # One image-size rule (vaebm_hub.presets.ebm_layout_for_size) for the converter and the trainer.
    assert zero_energy_model(VAEBMVAE(sample_size=16)).config.layout == "mnist"


def test_model_index_of_the_converted_pipeline(converted):
    index = json.loads((converted / "model_index.json").read_text())
    assert index["vae"] == ["vaebm_hub", "VAEBMVAE"] and index["ebm"] == ["vaebm_hub", "VAEBMEnergyModel"]


def test_unknown_verb_exits_with_usage():
    with pytest.raises(SystemExit):
        main(["frobnicate"])
