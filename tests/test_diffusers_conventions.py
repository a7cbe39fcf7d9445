"""Habits diffusers users bring: half-precision pipelines, from_pipe, interrupts, inferred batch sizes, no stray
progress bars, and a scheduler that refuses foreign schedulers and says when an argument has no effect."""

from __future__ import annotations

import io
import json
import warnings
from contextlib import redirect_stderr

import pytest
import torch
from conftest import make_tiny_pipeline
from diffusers import DDPMScheduler

from vaebm_hub import LangevinScheduler, VAEBMPipeline


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_pipelines_move_the_chain_as_float32_does(dtype):
    """At eta = 8e-5 a half-precision state rounds the update away (bf16: exactly no move); the chain is float32."""
    reference, half = make_tiny_pipeline(step_size=8e-5), make_tiny_pipeline(step_size=8e-5).to(dtype=dtype)
    eps = reference.vae.sample_noise(8, generator=torch.Generator().manual_seed(0))

    def moved(pipe):
        out = pipe(
            latents=eps, num_inference_steps=30, generator=torch.Generator().manual_seed(1), output_type="latent"
        )
        assert out.images.dtype == torch.float32
        return out.images - eps

    delta_ref, delta_half = moved(reference), moved(half)
    assert delta_half.norm() > 0.9 * delta_ref.norm()
    # the same noise draws, the drift from half-precision networks: the moves agree closely
    assert (delta_half - delta_ref).norm() < 0.05 * delta_ref.norm()
    images_k0 = half(latents=eps, num_inference_steps=0, output_type="pt").images
    images_k30 = half(
        latents=eps, num_inference_steps=30, generator=torch.Generator().manual_seed(1), output_type="pt"
    )
    assert not torch.equal(images_k0, images_k30.images)


def test_from_pipe_builds_the_same_pipeline():
    pipe = make_tiny_pipeline()
    copy = VAEBMPipeline.from_pipe(pipe)
    assert copy.vae is pipe.vae and copy.ebm is pipe.ebm and copy.config.potential == pipe.config.potential
    generator = torch.Generator().manual_seed(0)
    a = pipe(batch_size=2, generator=generator, output_type="pt").images
    b = copy(batch_size=2, generator=torch.Generator().manual_seed(0), output_type="pt").images
    torch.testing.assert_close(a, b)


def test_from_pipe_carries_every_setting_and_gives_a_setting_the_source_lacks_its_default():
    source = VAEBMPipeline.from_pipe(make_tiny_pipeline(), potential="official", pixel_noise=False)
    copy = VAEBMPipeline.from_pipe(source).config
    assert (copy.potential, copy.pixel_noise, copy.decoder_output) == ("official", False, "mean")
    override = VAEBMPipeline.from_pipe(source, potential="exact", decoder_output="sample", pixel_noise=True).config
    assert (override.potential, override.pixel_noise, override.decoder_output) == ("exact", True, "sample")

    class SavedBeforeTheSettings:  # a pipeline whose config predates every setting
        components = source.components
        config = {}

    older = VAEBMPipeline.from_pipe(SavedBeforeTheSettings()).config
    assert (older.potential, older.pixel_noise, older.decoder_output) == ("exact", True, "mean")
    with pytest.raises(TypeError, match="unexpected arguments \\['step_size'\\]"):
        VAEBMPipeline.from_pipe(source, step_size=0.1)


def test_a_callback_can_interrupt_the_chain_and_read_num_timesteps():
    pipe = make_tiny_pipeline()
    seen = []

    def stop_after_two(pipeline, step, timestep, tensors):
        seen.append((step, pipeline.num_timesteps))
        if step == 1:
            pipeline._interrupt = True
        return {}

    eps = pipe.vae.sample_noise(2, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(3)
    out = pipe(latents=eps, num_inference_steps=10, generator=generator, callback_on_step_end=stop_after_two)
    assert seen == [(0, 10), (1, 10)]
    two_steps = pipe(latents=eps, num_inference_steps=2, generator=torch.Generator().manual_seed(3), output_type="np")
    interrupted = pipe(
        latents=eps, num_inference_steps=10, generator=torch.Generator().manual_seed(3), output_type="np",
        callback_on_step_end=stop_after_two,
    )  # fmt: skip
    assert out.images and (interrupted.images == two_steps.images).all()
    assert not pipe.interrupt or pipe.num_timesteps == 10


def test_batch_size_is_inferred_from_latents_and_checked_against_them():
    pipe = make_tiny_pipeline()
    eps = pipe.vae.sample_noise(3, generator=torch.Generator().manual_seed(0))
    assert len(pipe(latents=eps, num_inference_steps=0).images) == 3
    with pytest.raises(ValueError, match=r"latents must have shape \(2,"):
        pipe(batch_size=2, latents=eps, num_inference_steps=0)


def test_zero_steps_print_no_progress_bar():
    pipe = make_tiny_pipeline()
    pipe.set_progress_bar_config(disable=False)
    buffer = io.StringIO()
    with redirect_stderr(buffer):
        pipe(batch_size=1, num_inference_steps=0)
    assert buffer.getvalue() == ""


def test_foreign_schedulers_are_refused_and_compatibles_lists_langevin():
    pipe = make_tiny_pipeline()
    assert LangevinScheduler in pipe.scheduler.compatibles
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    with pytest.raises(TypeError, match="LangevinScheduler"):
        pipe(batch_size=1)


def test_step_size_with_snr_is_a_warning_or_an_error_never_silent():
    with pytest.warns(UserWarning, match="ignored"):
        LangevinScheduler(snr=0.1, step_size=1e-3)
    pipe = make_tiny_pipeline()
    pipe.scheduler = LangevinScheduler(snr=0.1)
    with pytest.raises(ValueError, match="no effect"):
        pipe(batch_size=1, step_size=1e-3)


def test_old_scheduler_configs_with_num_train_timesteps_still_load(tmp_path):
    (tmp_path / "scheduler_config.json").write_text(
        json.dumps({"_class_name": "LangevinScheduler", "num_train_timesteps": 17, "step_size": 1e-3})
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scheduler = LangevinScheduler.from_pretrained(tmp_path)
    assert scheduler.config.default_num_inference_steps == 17 and len(scheduler.timesteps) == 17
    scheduler.save_pretrained(tmp_path / "new")
    saved = json.loads((tmp_path / "new" / "scheduler_config.json").read_text())
    assert saved["default_num_inference_steps"] == 17 and "num_train_timesteps" not in saved


def test_missing_folders_and_repos_get_diffusers_messages(tmp_path, monkeypatch):
    from huggingface_hub import constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="neither a valid local path nor a valid repo id"):
        VAEBMPipeline.from_pretrained(str(tmp_path / "missing" / "folder"))
    with pytest.raises(OSError, match="Cannot load model not/a-repo"):
        VAEBMPipeline.from_pretrained("not/a-repo", cache_dir=str(tmp_path))


def test_a_pickled_save_loads_back(tmp_path):
    pipe = make_tiny_pipeline()
    pipe.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / "vae" / "diffusion_pytorch_model.bin").is_file()
    loaded = VAEBMPipeline.from_pretrained(tmp_path)
    for a, b in zip(pipe.vae.state_dict().values(), loaded.vae.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_save_pretrained_push_to_hub_sends_the_pipeline_only(tmp_path, monkeypatch):
    from huggingface_hub import constants as hub_constants
    from test_training_units import RecordingApi

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    (tmp_path / "checkpoint-4").mkdir(parents=True)
    (tmp_path / "checkpoint-4" / "optimizer.bin").write_bytes(b"x")
    api = RecordingApi()
    make_tiny_pipeline().save_pretrained(tmp_path, push_to_hub=True, repo_id="me/vaebm", api=api)
    (_, repo_id, _), (_, sent) = api.calls
    assert repo_id == "me/vaebm" and "model_index.json" in sent and "README.md" in sent
    assert not any(name.startswith("checkpoint") for name in sent)
