"""``VAEBMPipeline.from_pretrained("<hub id>")`` through the real Hub code path, offline against a local cache
snapshot, and clear errors for partial, corrupt or mismatched saves."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from huggingface_hub import constants

from vaebm_hub import VAEBMVAE, VAEBMEnergyModel, VAEBMPipeline
from vaebm_hub.hub import add_remote_code

REPO_ID = "vaebm-tests/tiny-digits"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write_cache_snapshot(pipe, cache_dir, repo_id=REPO_ID, extra_files=()):
    """Lay out ``cache_dir`` exactly as ``snapshot_download`` leaves it (refs/main -> snapshots/<commit>/...)."""
    repo_dir = cache_dir / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / COMMIT
    pipe.save_pretrained(snapshot)
    for name in extra_files:
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text("not part of a pipeline")
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def sample(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        batch_size=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np"
    ).images


def test_hub_id_loads_offline_from_the_cache(tiny_pipeline, tmp_path, offline):
    write_cache_snapshot(tiny_pipeline, tmp_path, extra_files=["checkpoint-10/optimizer.bin"])
    loaded = VAEBMPipeline.from_pretrained(REPO_ID, cache_dir=tmp_path)
    assert isinstance(loaded.vae, VAEBMVAE) and isinstance(loaded.ebm, VAEBMEnergyModel)
    np.testing.assert_array_equal(sample(loaded), sample(tiny_pipeline))


def test_published_layout_loads_from_the_hub_cache_with_the_package_classes(tiny_pipeline, tmp_path, offline):
    snapshot = write_cache_snapshot(tiny_pipeline, tmp_path)
    add_remote_code(snapshot)  # what push_pipeline uploads
    for code in snapshot.rglob("*.py"):
        code.unlink()  # download() never fetches the code files: the package's own classes are used
    loaded = VAEBMPipeline.from_pretrained(REPO_ID, cache_dir=tmp_path)
    assert isinstance(loaded.vae, VAEBMVAE) and isinstance(loaded.ebm, VAEBMEnergyModel)
    assert loaded.config.potential == tiny_pipeline.config.potential
    np.testing.assert_array_equal(sample(loaded), sample(tiny_pipeline))
    half = VAEBMPipeline.from_pretrained(REPO_ID, cache_dir=tmp_path, dtype=torch.bfloat16)
    assert half.vae.dtype == torch.bfloat16 and half.ebm.dtype == torch.bfloat16


def test_download_fetches_only_pipeline_files(tiny_pipeline, tmp_path, monkeypatch):
    calls = {}

    def fake_snapshot_download(repo_id, **kwargs):
        calls.update(kwargs, repo_id=repo_id)
        target = tmp_path / "snapshot"
        tiny_pipeline.save_pretrained(target)
        return str(target)

    monkeypatch.setattr("vaebm_hub.pipelines.pipeline_vaebm.snapshot_download", fake_snapshot_download)
    VAEBMPipeline.from_pretrained(REPO_ID, revision="v1", cache_dir=tmp_path / "cache", token="hf_x")
    assert calls["repo_id"] == REPO_ID and calls["revision"] == "v1" and calls["token"] == "hf_x"
    assert "model_index.json" in calls["allow_patterns"] and "*/*.safetensors" in calls["allow_patterns"]
    assert not any("bin" in pattern or "checkpoint" in pattern for pattern in calls["allow_patterns"])


def test_unknown_hub_id_offline_fails_fast(tmp_path, offline):
    with pytest.raises(Exception, match="(?i)offline|cannot find|local"):
        VAEBMPipeline.from_pretrained("vaebm-tests/does-not-exist", cache_dir=tmp_path)


@pytest.fixture
def saved(tiny_pipeline, tmp_path):
    tiny_pipeline.save_pretrained(tmp_path / "pipe")
    return tmp_path / "pipe"


def test_truncated_weights_name_the_file(saved):
    weights = saved / "ebm" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"ebm/diffusion_pytorch_model.safetensors is corrupt or partial"):
        VAEBMPipeline.from_pretrained(saved)


def test_missing_weights_are_reported(saved):
    (saved / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ValueError, match="no safetensors weights in .*vae"):
        VAEBMPipeline.from_pretrained(saved)


def test_weights_that_do_not_match_the_config(saved):
    config = json.loads((saved / "vae" / "config.json").read_text())
    config["num_latent_per_group"] = 8
    (saved / "vae" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"do not match its config.json \(VAEBMVAE\).*shape mismatch"):
        VAEBMPipeline.from_pretrained(saved)


def test_corrupt_config_and_missing_component(saved):
    (saved / "scheduler" / "scheduler_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="scheduler_config.json is not valid JSON"):
        VAEBMPipeline.from_pretrained(saved)
    shutil.rmtree(saved / "scheduler")
    with pytest.raises(ValueError, match="names a component 'scheduler'"):
        VAEBMPipeline.from_pretrained(saved)
