"""The x-space Langevin sampler of the "EBM on x" ablation against closed forms, and the trainer's
``--sampling_space x`` option."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_pipeline
from torch import nn

from vaebm_hub import LangevinScheduler, VAEBMPipeline
from vaebm_hub.pipelines.x_space import XSpaceSampler, energy_and_grad, sample_x_space, x_space_chain
from vaebm_hub.training import main
from vaebm_hub.training.config import parse_args, resolve_preset


class Quadratic(nn.Module):
    """E(x) = a/2 ||x - c||^2 per row: exp(-E) is N(c, I/a)."""

    def __init__(self, a: float, c: float = 0.0) -> None:
        super().__init__()
        self.a, self.c = a, c

    def forward(self, x: torch.Tensor, check_finite: bool = True) -> torch.Tensor:
        return 0.5 * self.a * (x - self.c).pow(2).flatten(1).sum(dim=1)


def test_energy_gradient_of_a_quadratic_is_linear():
    x = torch.randn(5, 3)
    energy, grad = energy_and_grad(Quadratic(2.0, 0.5), x)
    torch.testing.assert_close(grad, 2.0 * (x - 0.5))
    torch.testing.assert_close(energy, (x - 0.5).pow(2).sum(dim=1))


def test_one_step_is_the_langevin_update_equation():
    """x' = x - (eta/2) a (x - c) + sqrt(eta) xi with xi the scheduler's draw from the same generator."""
    a, c, eta = 3.0, 0.25, 0.04
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    scheduler = LangevinScheduler(default_num_inference_steps=1, step_size=eta)
    out, finite = x_space_chain(
        Quadratic(a, c), x, scheduler, generator=torch.Generator().manual_seed(7), clip_range=None
    )
    xi = torch.randn(6, 4, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(out, x - 0.5 * eta * a * (x - c) + eta**0.5 * xi)
    assert finite.all()


def test_chains_reach_the_unadjusted_langevin_stationary_gaussian():
    """ULA on a/2 ||x - c||^2 is the AR(1) x' = (1 - eta a/2) x + ... with stationary N(c, 1 / (a (1 - eta a/4)))."""
    a, c, eta = 2.0, 0.5, 0.1
    scheduler = LangevinScheduler(default_num_inference_steps=150, step_size=eta)
    x0 = torch.full((4000, 2), 3.0)
    x, _ = x_space_chain(Quadratic(a, c), x0, scheduler, generator=torch.Generator().manual_seed(0), clip_range=None)
    expected_var = 1.0 / (a * (1.0 - eta * a / 4.0))
    assert abs(x.mean().item() - c) < 0.03
    assert abs(x.var().item() / expected_var - 1.0) < 0.05


def test_clip_range_keeps_images_in_the_unit_interval_and_a_nan_chain_keeps_its_last_state():
    x = torch.rand(4, 1, 2, 2)
    scheduler = LangevinScheduler(default_num_inference_steps=3, step_size=1.0)
    out, finite = x_space_chain(Quadratic(1.0, 5.0), x, scheduler, generator=torch.Generator().manual_seed(0))
    assert out.min() >= 0 and out.max() <= 1 and finite.all()

    class NaNForFirstRow(Quadratic):
        def forward(self, x, check_finite=True):
            return super().forward(x) * torch.tensor([float("nan"), 1.0, 1.0, 1.0])

    out, finite = x_space_chain(NaNForFirstRow(1.0), x, scheduler, generator=torch.Generator().manual_seed(0))
    assert finite.tolist() == [False, True, True, True]
    torch.testing.assert_close(out[0], x[0])


def test_sample_x_space_starts_from_vae_decoder_means():
    pipe = make_tiny_pipeline()
    latents = pipe.vae.sample_noise(3, generator=torch.Generator().manual_seed(0))
    start = sample_x_space(pipe.vae, pipe.ebm, pipe.scheduler, latents, 0)
    torch.testing.assert_close(start, pipe.vae.generate(latents))
    torch.testing.assert_close(pipe(3, num_inference_steps=0, latents=latents, output_type="pt").images, start)
    before = pipe.scheduler.num_inference_steps
    moved = sample_x_space(pipe.vae, pipe.ebm, pipe.scheduler, latents, 2, generator=torch.Generator().manual_seed(0))
    assert moved.shape == start.shape and not torch.equal(moved, start)
    assert pipe.scheduler.num_inference_steps == before  # the pipeline's own scheduler is untouched


def test_x_space_chains_start_from_the_decoder_samples_a_sample_pipeline_shows():
    """With ``decoder_output="sample"`` both samplers start from ``T_x(z, eps_x)`` at the same noise, not from the
    decoder means: the pipeline's K = 0 images and the x-space sampler's are identical."""
    pipe = VAEBMPipeline.from_pipe(make_tiny_pipeline(), decoder_output="sample")
    latents = pipe.vae.sample_noise(3, generator=torch.Generator().manual_seed(0))
    start = sample_x_space(pipe.vae, pipe.ebm, pipe.scheduler, latents, 0, decoder_output="sample")
    torch.testing.assert_close(start, pipe.vae.noise_to_data(latents).x)
    assert not torch.allclose(start, pipe.vae.generate(latents))
    sampler = XSpaceSampler.from_pipeline(pipe)
    assert sampler.decoder_output == "sample"
    seed = torch.Generator().manual_seed(3)
    x_start = sampler(3, num_inference_steps=0, generator=seed, output_type="pt").images
    vae_images = pipe(3, num_inference_steps=0, generator=torch.Generator().manual_seed(3), output_type="pt").images
    torch.testing.assert_close(x_start, vae_images)
    with pytest.raises(ValueError, match="needs chains that move the pixel noise"):
        no_eps_x = latents[:, : pipe.vae.latent_dim]
        sample_x_space(pipe.vae, pipe.ebm, pipe.scheduler, no_eps_x, 0, decoder_output="sample")


def test_the_trainers_x_space_chains_start_from_the_saved_pipelines_images(tmp_path, monkeypatch):
    """``--sampling_space x`` on the digits preset (decoder samples): the training chains start from the decoder's
    samples of their noise, and the saved pipeline makes the x-space sampler start from them too."""
    from vaebm_hub.training import ebm_stage

    starts = []

    def recording_chain(ebm, x, scheduler, **kwargs):
        starts.append(x.clone())
        return x_space_chain(ebm, x, scheduler, **kwargs)

    decoded, decode_noise = [], ebm_stage.decode_noise

    def recording_decode(vae, eps, decoder_output="mean", temperature=1.0):
        decoded.append((decoder_output, vae.noise_to_data(eps).x, vae.generate(eps)))
        return decode_noise(vae, eps, decoder_output, temperature)

    monkeypatch.setattr(ebm_stage, "x_space_chain", recording_chain)
    monkeypatch.setattr(ebm_stage, "decode_noise", recording_decode)
    flags = [
        "--dataset_name", "digits", "--vae_max_train_steps", "1", "--train_batch_size", "4", "--ebm_n_channel", "4",
        "--langevin_steps", "1", "--sample_langevin_steps", "1", "--num_sample_images", "2", "--data_init_batches",
        "1", "--report_to", "none", "--ebm_max_train_steps", "1", "--sampling_space", "x",
        "--output_dir", str(tmp_path / "run"),
    ]  # fmt: skip
    assert main(flags) == 0
    assert starts and len(decoded) == len(starts)
    for x, (kind, sample, mean) in zip(starts, decoded):
        assert kind == "sample"
        torch.testing.assert_close(x, sample)
        assert not torch.allclose(x, mean)
    assert XSpaceSampler.from_pipeline(VAEBMPipeline.from_pretrained(tmp_path / "run")).decoder_output == "sample"


def test_sampling_space_flag_defaults_to_eps_and_x_turns_the_replay_buffer_off():
    def ebm_settings(flags):
        return resolve_preset(parse_args(flags), (1, 8, 8)).ebm_training

    eps = ebm_settings(["--dataset_name", "digits"])
    assert eps.sampling_space == "eps" and eps.use_buffer  # the digits preset replays eps_z
    x = ebm_settings(["--dataset_name", "digits", "--sampling_space", "x"])
    assert x.sampling_space == "x" and not x.use_buffer
    with pytest.raises(ValueError, match="--use_buffer"):
        ebm_settings(["--dataset_name", "digits", "--sampling_space", "x", "--use_buffer"])


def test_trainer_trains_an_x_space_ebm_whose_negatives_are_x_chains(tmp_path):
    flags = [
        "--dataset_name", "digits", "--train_batch_size", "8", "--ebm_n_channel", "4", "--langevin_steps", "2",
        "--sample_langevin_steps", "2", "--num_sample_images", "4", "--data_init_batches", "1", "--report_to", "none",
        "--vae_max_train_steps", "2", "--ebm_max_train_steps", "2", "--sampling_space", "x",
        "--output_dir", str(tmp_path / "run"),
    ]  # fmt: skip
    assert main(flags) == 0
    pipe = VAEBMPipeline.from_pretrained(tmp_path / "run")
    latents = pipe.vae.sample_noise(2, generator=torch.Generator().manual_seed(0))
    images = sample_x_space(pipe.vae, pipe.ebm, pipe.scheduler, latents, 2, generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 1, 8, 8) and torch.isfinite(images).all()


def test_x_space_sampler_takes_pipeline_arguments_and_starts_from_the_same_noise():
    pipe = make_tiny_pipeline()
    sampler = XSpaceSampler.from_pipeline(pipe)
    vae_images = pipe(4, num_inference_steps=0, generator=torch.Generator().manual_seed(3), output_type="np").images
    start = sampler(4, num_inference_steps=0, generator=torch.Generator().manual_seed(3), output_type="np").images
    assert start.shape == (4, 8, 8, 1)
    torch.testing.assert_close(torch.from_numpy(start), torch.from_numpy(vae_images))
    moved = sampler(4, num_inference_steps=2, generator=torch.Generator().manual_seed(3), output_type="pt").images
    assert moved.shape == (4, 1, 8, 8) and moved.min() >= 0 and moved.max() <= 1
