"""Bad training input fails with a clear ValueError before anything is trained or written."""

from __future__ import annotations

import json

import datasets
import huggingface_hub
import numpy as np
import pytest
from PIL import Image

from vaebm_hub.training import main

TINY = ["--report_to", "none", "--max_train_steps", "1"]


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


def save_png(path, shape, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8), mode).save(path)


def fails(tmp_path, *args: str, match: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match):
        main(["--output_dir", str(out), *TINY, *args])
    assert not out.exists(), "nothing may be written before the input is validated"


def test_empty_data_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    fails(tmp_path, "--train_data_dir", str(tmp_path / "empty"), match="No images found")


def test_missing_data_dir(tmp_path):
    fails(tmp_path, "--train_data_dir", str(tmp_path / "nope"), match="does not exist")


def test_unreadable_image(tmp_path):
    save_png(tmp_path / "imgs" / "a.png", (8, 8))
    (tmp_path / "imgs" / "b.png").write_bytes(b"not a png")
    fails(tmp_path, "--train_data_dir", str(tmp_path / "imgs"), match="Cannot read image")


def test_mixed_image_sizes(tmp_path):
    save_png(tmp_path / "imgs" / "a.png", (8, 8))
    save_png(tmp_path / "imgs" / "b.png", (16, 16))
    fails(tmp_path, "--train_data_dir", str(tmp_path / "imgs"), match="different sizes.*--resolution")


def test_mixed_image_modes(tmp_path):
    save_png(tmp_path / "imgs" / "a.png", (8, 8))
    save_png(tmp_path / "imgs" / "b.png", (8, 8, 3))
    fails(tmp_path, "--train_data_dir", str(tmp_path / "imgs"), match="mix grey and colour")


def test_resolution_not_matching_the_vae(tmp_path):
    for k in range(4):
        save_png(tmp_path / "imgs" / f"{k}.png", (16, 16))
    fails(tmp_path, "--train_data_dir", str(tmp_path / "imgs"), "--vae_preset", "digits", match="expects")


def test_channels_not_matching_the_vae(tmp_path):
    config = tmp_path / "vae.json"
    config.write_text(json.dumps({"in_channels": 3}))
    fails(tmp_path, "--dataset_name", "digits", "--vae_config", str(config), match=r"\(1, 8, 8\).*\(3, 8, 8\)")


def test_builtin_at_a_foreign_resolution(tmp_path):
    fails(tmp_path, "--dataset_name", "digits", "--resolution", "16", match="not resized")


def test_ebm_stage_without_a_vae(tmp_path):
    fails(tmp_path, "--stage", "ebm", "--dataset_name", "digits", match="--vae_name_or_path")


def test_ebm_stage_with_a_folder_that_holds_no_vae(tmp_path):
    (tmp_path / "novae").mkdir()
    args = ["--stage", "ebm", "--dataset_name", "digits", "--vae_name_or_path", str(tmp_path / "novae")]
    fails(tmp_path, *args, match="neither")


def test_unknown_preset(tmp_path):
    fails(tmp_path, "--dataset_name", "digits", "--preset", "imagenet", match="unknown preset 'imagenet'")


def test_unknown_dataset_offline(tmp_path):
    fails(tmp_path, "--dataset_name", "someone/not-a-dataset", match="Could not load --dataset_name")


def test_no_data_at_all(tmp_path):
    fails(tmp_path, match="No training data")


def test_flip_on_vector_data(tmp_path):
    fails(tmp_path, "--dataset_name", "gaussians25", "--random_flip", match="flip")


def test_ebm_layout_that_does_not_fit(tmp_path):
    fails(tmp_path, "--dataset_name", "digits", "--ebm_layout", "celeba64", match="sample_size=8")


def test_existing_run_is_not_silently_overwritten(tmp_path):
    out = tmp_path / "out"
    (out / "checkpoint-3").mkdir(parents=True)
    with pytest.raises(ValueError, match="already holds a training run"):
        main(["--output_dir", str(out), "--dataset_name", "digits", *TINY])
