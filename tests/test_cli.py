"""``vaebm-hub convert`` / ``sample`` and the converted pipeline's assembly."""

from __future__ import annotations

import json

import numpy as np
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
    means = np.asarray(Image.open(out))
    main([*argv, "--decoder_output", "sample"])  # the decoder's samples at the same chains' final state
    samples = np.asarray(Image.open(out))
    assert samples.shape == means.shape and not np.array_equal(samples, means)


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


def test_version_module_entry_point_and_one_line_errors(tmp_path):
    import subprocess
    import sys

    import vaebm_hub

    out = subprocess.run([sys.executable, "-m", "vaebm_hub", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"vaebm-hub {vaebm_hub.__version__}"
    bad = subprocess.run(
        [sys.executable, "-m", "vaebm_hub", "sample", str(tmp_path / "nothing-here")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("vaebm-hub: error:") and len(bad.stderr.strip().splitlines()) == 2


@pytest.mark.parametrize(
    "flags, message",
    [(["--num_threads", "-1"], "--num_threads: must be >= 1"), (["--upscale", "-2"], "--upscale: must be >= 1"),
     (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "nonsense"], "--device")],
    ids=["threads", "upscale", "device"],
)  # fmt: skip
def test_bad_sample_flags_are_one_line_errors(converted, flags, message, capsys):
    with pytest.raises(SystemExit) as exit_:  # these were RuntimeError / AssertionError tracebacks before
        main(["sample", str(converted), "--output", "x.png", *flags])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_every_flag_has_help_text():
    from vaebm_hub.cli import build_parser

    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "verb").choices
    for name, sub in verbs.items():
        if name == "train":
            continue  # the trainer's own parser, checked below
        for action in sub._actions:
            assert action.help, f"vaebm-hub {name} {action.option_strings or action.dest} has no help"
    from vaebm_hub.training import build_parser as train_parser

    missing = [a.option_strings for a in train_parser()._actions if a.help is None]
    assert missing == [], missing


def test_sample_in_half_precision_and_evaluate_an_image_folder(converted, tmp_path):
    from PIL import Image

    grid = tmp_path / "grid.png"
    main(["sample", str(converted), "--num_images", "2", "--steps", "1", "--dtype", "bfloat16", "--output", str(grid)])
    assert Image.open(grid).size == (2 * 32, 32)
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "eval"
    main(["evaluate", str(converted), "--train_data_dir", str(folder), "--output_dir", str(out),
          "--num_samples", "8", "--chain_lengths", "0,1"])  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["langevin_steps"] for r in metrics["rows"]] == [0, 1] and metrics["rows"][0]["fd_rand"] > 0
    assert (out / "samples.png").is_file()
