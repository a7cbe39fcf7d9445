"""VAEBMPipeline: outputs, seeded determinism, per-sample generators, save/load, callbacks, NaN policy, scoring."""

from __future__ import annotations

import doctest
import json

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_tiny_pipeline
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from vaebm_hub import VAEBMMLPVAE, NonFiniteChainError, VAEBMEnergyMLP, VAEBMPipeline
from vaebm_hub.pipelines import pipeline_vaebm


def run(pipe, seed=0, **kw):
    kw.setdefault("batch_size", 3)
    kw.setdefault("num_inference_steps", 2)
    kw.setdefault("output_type", "np")
    return pipe(generator=torch.Generator().manual_seed(seed), **kw)


@pytest.mark.parametrize("output_type", ["np", "pt", "pil", "latent"])
def test_every_output_type(tiny_pipeline, output_type):
    images = run(tiny_pipeline, output_type=output_type).images
    if output_type == "np":
        assert images.shape == (3, 8, 8, 1) and images.dtype == np.float32
        assert 0 <= images.min() and images.max() <= 1
    elif output_type == "pt":
        assert images.shape == (3, 1, 8, 8) and images.dtype == torch.float32
    elif output_type == "pil":
        assert len(images) == 3 and isinstance(images[0], PIL.Image.Image) and images[0].size == (8, 8)
    else:
        assert images.shape == (3, tiny_pipeline.vae.noise_dim)


def test_dict_and_tuple_outputs_agree(tiny_pipeline):
    as_dict = run(tiny_pipeline).images
    as_tuple = run(tiny_pipeline, return_dict=False)[0]
    np.testing.assert_array_equal(as_dict, as_tuple)


def test_same_generator_same_images_and_other_seeds_differ(tiny_pipeline):
    a, b, c = run(tiny_pipeline, 0).images, run(tiny_pipeline, 0).images, run(tiny_pipeline, 1).images
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_a_list_of_generators_controls_each_sample(tiny_pipeline):
    seeds = [11, 12, 13]
    batch = tiny_pipeline(
        batch_size=3, num_inference_steps=2, output_type="pt",
        generator=[torch.Generator().manual_seed(s) for s in seeds],
    ).images  # fmt: skip
    for row, seed in enumerate(seeds):
        single = tiny_pipeline(
            batch_size=1, num_inference_steps=2, output_type="pt", generator=[torch.Generator().manual_seed(seed)]
        ).images
        torch.testing.assert_close(batch[row : row + 1], single, atol=1e-5, rtol=1e-5)


def test_zero_steps_gives_plain_vae_samples(tiny_pipeline):
    images = run(tiny_pipeline, num_inference_steps=0, output_type="pt").images
    eps = tiny_pipeline.vae.sample_noise(3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(images, tiny_pipeline.vae.generate(eps))


def test_langevin_moves_the_chain_and_lowers_the_potential():
    pipe = make_tiny_pipeline(step_size=1e-2)
    start = pipe.vae.sample_noise(16, generator=torch.Generator().manual_seed(0))
    out = pipe(batch_size=16, num_inference_steps=20, latents=start, generator=torch.Generator().manual_seed(1),
               output_type="latent", return_energy_trace=True)  # fmt: skip
    assert out.energy_trace.shape == (21, 16)
    assert not torch.allclose(out.images, start)


def test_explicit_latents_are_the_chain_start(tiny_pipeline):
    latents = tiny_pipeline.vae.sample_noise(3, generator=torch.Generator().manual_seed(5))
    a = run(tiny_pipeline, seed=0, latents=latents, num_inference_steps=0, output_type="latent").images
    torch.testing.assert_close(a, latents)


def test_save_load_gives_identical_images(tiny_pipeline, tmp_path):
    tiny_pipeline.save_pretrained(tmp_path)
    loaded = VAEBMPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(run(tiny_pipeline).images, run(loaded).images)


def test_model_index_content_is_frozen(tiny_pipeline, tmp_path):
    tiny_pipeline.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    index.pop("_diffusers_version")
    assert index == {
        "_class_name": "VAEBMPipeline",
        "vae": ["vaebm_hub", "VAEBMVAE"],
        "ebm": ["vaebm_hub", "VAEBMEnergyModel"],
        "scheduler": ["vaebm_hub", "LangevinScheduler"],
        "potential": "exact",
        "pixel_noise": True,
        "decoder_output": "mean",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ebm", "model_index.json", "scheduler", "vae"]
    assert (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").is_file()


def test_reassigned_scheduler_is_recorded_under_the_package_name(tiny_pipeline):
    from vaebm_hub import LangevinScheduler

    tiny_pipeline.scheduler = LangevinScheduler(metropolis=True)
    assert tuple(tiny_pipeline.config.scheduler) == ("vaebm_hub", "LangevinScheduler")


def test_potential_is_saved_in_the_config(tmp_path):
    make_tiny_pipeline(potential="official").save_pretrained(tmp_path)
    assert VAEBMPipeline.from_pretrained(tmp_path).config.potential == "official"


def test_fp16_variant_round_trip(tiny_pipeline, tmp_path):
    reference = run(tiny_pipeline, output_type="pt").images
    tiny_pipeline.to(torch.float16).save_pretrained(tmp_path, variant="fp16")
    assert (tmp_path / "vae" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    loaded = VAEBMPipeline.from_pretrained(tmp_path, variant="fp16", dtype=torch.float16)
    assert loaded.vae.dtype == torch.float16 and loaded.ebm.dtype == torch.float16
    loaded.to(torch.float32).set_progress_bar_config(disable=True)
    torch.testing.assert_close(run(loaded, output_type="pt").images, reference, atol=2e-2, rtol=0)
    with pytest.raises(ValueError, match="no safetensors weights"):
        VAEBMPipeline.from_pretrained(tmp_path)  # saved as a variant only


def test_float64_sampling(tiny_pipeline):
    images = run(tiny_pipeline.to(torch.float64), output_type="pt").images
    assert images.dtype == torch.float64


def test_metropolis_adjusted_chain():
    pipe = make_tiny_pipeline(step_size=0.5, metropolis=True)
    out = run(pipe, batch_size=8, num_inference_steps=6, output_type="latent")
    rate = float(pipe.scheduler.acceptance_rate) if pipe.scheduler.acceptance_rate is not None else None
    assert torch.isfinite(out.images).all()
    # the pipeline copies no scheduler: the shared one saw every accept/reject decision
    assert rate is not None and 0.0 <= rate <= 1.0


def test_callback_sees_every_step_and_can_replace_the_state(tiny_pipeline):
    seen = []

    def callback(pipe, step, timestep, kwargs):
        seen.append((step, int(timestep), kwargs["latents"].shape))
        return {"latents": torch.zeros_like(kwargs["latents"])} if step == 2 else {}

    out = run(tiny_pipeline, num_inference_steps=3, output_type="latent", callback_on_step_end=callback)
    assert [s[:2] for s in seen] == [(0, 0), (1, 1), (2, 2)]
    assert torch.equal(out.images, torch.zeros_like(out.images))


class NaNForFirstRow(ModelMixin, ConfigMixin):
    """An energy network whose first chain's energy is NaN."""

    @register_to_config
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x, check_finite=True):
        energy = self.scale * x.flatten(1).sum(1)
        return torch.where(torch.arange(x.shape[0]) == 0, torch.full_like(energy, float("nan")), energy)


def test_nan_chains_raise_or_are_dropped(tiny_pipeline):
    pipe = VAEBMPipeline(vae=tiny_pipeline.vae, ebm=NaNForFirstRow(), scheduler=tiny_pipeline.scheduler)
    pipe.set_progress_bar_config(disable=True)
    with pytest.raises(NonFiniteChainError, match="1 of 3 Langevin chains"):
        run(pipe)
    with pytest.warns(UserWarning, match="dropped 1 of 3 Langevin chains"):
        out = run(pipe, drop_nonfinite=True, output_type="pt")
    assert out.images.shape[0] == 2 and out.kept.tolist() == [1, 2] and torch.isfinite(out.images).all()


def test_dropping_every_chain_is_an_error_not_an_empty_batch(tiny_pipeline):
    with pytest.raises(NonFiniteChainError, match="all 2 Langevin chains .* nothing to return"):
        tiny_pipeline(batch_size=2, num_inference_steps=3, step_size=1e6, drop_nonfinite=True, output_type="np")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(step_size=0.0), "step_size must be > 0"),
        (dict(step_size=-1e-3), "step_size must be > 0"),
        (dict(output_type="jpeg"), "output_type must be one of"),
        (dict(num_inference_steps=-1), "num_inference_steps"),
        (dict(batch_size=0), "batch_size"),
        (dict(temperature=0.0), "temperature"),
        (dict(latents=torch.zeros(3, 5)), "latents must have shape"),
        (dict(potential="physics"), "potential must be one of"),
    ],
)
def test_bad_arguments_raise_clear_errors(tiny_pipeline, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(tiny_pipeline, **kwargs)


def test_nan_latents_and_generator_count_are_checked(tiny_pipeline):
    latents = torch.full((3, tiny_pipeline.vae.noise_dim), float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        tiny_pipeline(batch_size=3, latents=latents)
    with pytest.raises(ValueError, match="generators"):
        tiny_pipeline(batch_size=3, generator=[torch.Generator()])


def test_scores_for_out_of_distribution_detection(tiny_pipeline):
    images = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    energy = tiny_pipeline.energy(images)
    elbo = tiny_pipeline.log_density(images, method="elbo", generator=torch.Generator().manual_seed(0))
    iwae = tiny_pipeline.log_density(images, method="iwae", num_samples=4, generator=torch.Generator().manual_seed(0))
    assert energy.shape == elbo.shape == iwae.shape == (4,)
    assert torch.isfinite(elbo).all() and torch.isfinite(iwae).all()
    vae_elbo = tiny_pipeline.vae.elbo(images, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(elbo, vae_elbo - energy)


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.rand(2, 3, 8, 8), "shape"),
        (torch.rand(2, 1, 16, 16), "shape"),
        (torch.full((2, 1, 8, 8), float("nan")), "NaN"),
        (torch.rand(2, 1, 8, 8) * 255, r"\[0, 1\]"),
    ],
)
def test_scoring_rejects_bad_images(tiny_pipeline, images, message):
    with pytest.raises(ValueError, match=message):
        tiny_pipeline.energy(images)


def test_training_mode_components_are_sampled_in_eval_mode_and_restored():
    pipe = make_tiny_pipeline()
    pipe.vae.train()
    running_mean = pipe.vae.post_process[0]._ops[0].conv[1].bn.running_mean.clone()
    run(pipe)
    assert pipe.vae.training
    torch.testing.assert_close(pipe.vae.post_process[0]._ops[0].conv[1].bn.running_mean, running_mean)


def test_vector_data_pipeline():
    torch.manual_seed(0)
    pipe = VAEBMPipeline(vae=VAEBMMLPVAE(), ebm=VAEBMEnergyMLP(), scheduler=make_tiny_pipeline().scheduler)
    pipe.set_progress_bar_config(disable=True)
    assert run(pipe, output_type="np").images.shape == (3, 2)
    with pytest.raises(ValueError, match="vectors"):
        run(pipe, output_type="pil")


def test_docstring_example_runs():
    example = pipeline_vaebm.EXAMPLE_DOC_STRING.replace("```py", "").replace("```", "").replace("Examples:", "")
    parser = doctest.DocTestParser()
    test = parser.get_doctest(example, {}, "example", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
