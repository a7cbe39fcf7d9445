"""What stage 1 trains with and how VAEBM samples, beyond the paper's defaults: the unclamped training likelihood,
batch-norm statistics re-estimated from prior samples, dynamic binarisation, latent-only Langevin chains and the
channels-last convolution layout."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from vaebm_hub import VAEBMVAE, LangevinScheduler, VAEBMEnergyModel, VAEBMPipeline
from vaebm_hub.models.layers import set_channels_last
from vaebm_hub.pipelines.potential import vaebm_potential
from vaebm_hub.training.vae_stage import NegativeELBOTerms


def _vae_with_small_decoder_scales(**kwargs) -> VAEBMVAE:
    torch.manual_seed(0)
    vae = VAEBMVAE(**kwargs)
    with torch.no_grad():  # push the decoder's log-scale channels far below VAEBM's clamp at -2
        conv = vae.image_conditional[1]
        conv.bias[conv.out_channels // 2 :] = -4.0
    return vae


def test_training_likelihood_is_nvaes_unclamped_one_so_small_scales_get_gradients():
    vae = _vae_with_small_decoder_scales().eval()
    x = torch.rand(4, 1, 8, 8)
    logits = vae(x, generator=torch.Generator().manual_seed(0)).logits.detach().requires_grad_(True)
    clamped = vae.reconstruction_log_prob(x, logits, likelihood_clamp=True)
    unclamped = vae.reconstruction_log_prob(x, logits)
    mu, log_sigma_raw = logits.chunk(2, dim=1)
    sigma = torch.exp(5 * torch.tanh(log_sigma_raw / 5)) + 0.01
    expected = torch.distributions.Normal(5 * torch.tanh(mu / 5), sigma).log_prob(2 * x - 1).flatten(1).sum(1)
    torch.testing.assert_close(unclamped, expected)
    assert not torch.allclose(clamped, unclamped)
    (grad,) = torch.autograd.grad(unclamped.sum(), logits)
    assert grad[:, 1:].abs().min() > 0  # every pixel's scale is trained
    (grad_clamped,) = torch.autograd.grad(clamped.sum(), logits)
    assert grad_clamped[:, 1:].abs().max() == 0  # under the clamp, none is


def test_negative_elbo_terms_train_unclamped_unless_asked():
    vae = _vae_with_small_decoder_scales()
    x = torch.rand(4, 1, 8, 8)
    recon, _ = NegativeELBOTerms(vae)(x, generator=torch.Generator().manual_seed(1))
    recon_clamped, _ = NegativeELBOTerms(vae, likelihood_clamp=True)(x, generator=torch.Generator().manual_seed(1))
    assert (recon_clamped < recon).all()  # a floor on sigma caps the density of a sharp decoder


def test_readjusted_batch_norm_statistics_are_those_of_prior_samples():
    torch.manual_seed(0)
    vae = VAEBMVAE(num_latent_scales=2, num_groups_per_scale=2, sample_size=8)
    encoder_bn = vae.pre_process[0]._ops[0].bn_act
    before = encoder_bn.running_mean.clone()
    decoder_bns = [m for m in vae.dec_tower.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in decoder_bns:  # statistics that have nothing to do with the prior's activations
        bn.running_mean.fill_(3.0)
        bn.running_var.fill_(7.0)
    count = vae.readjust_batch_norm(num_batches=20, batch_size=64, generator=torch.Generator().manual_seed(1))
    assert count > 0
    torch.testing.assert_close(encoder_bn.running_mean, before)  # off the prior path: untouched
    assert all(bn.momentum == 0.05 for bn in decoder_bns)
    # Eval mode now decodes a large fresh prior batch (almost) as train mode, on its own batch statistics, does.
    eps = vae.sample_noise(512, generator=torch.Generator().manual_seed(2))
    eps_z, _ = vae.split_noise(eps)
    with torch.no_grad():
        vae.eval()
        eval_logits = vae.decode_noise(eps_z).logits
        vae.train()
        train_logits = vae.decode_noise(eps_z).logits
    assert (eval_logits - train_logits).abs().mean() < 0.05 * train_logits.abs().mean()


def test_trainer_readjusts_batch_norm_before_saving(tmp_path):
    from vaebm_hub.training import main

    common = ["--stage", "vae", "--dataset_name", "digits", "--vae_max_train_steps", "3", "--train_batch_size", "16",
              "--report_to", "none", "--readjust_bn_batches", "4"]  # fmt: skip
    main([*common, "--output_dir", str(tmp_path / "a")])
    main([*common, "--output_dir", str(tmp_path / "b"), "--no_readjust_bn"])
    a = VAEBMVAE.from_pretrained(tmp_path / "a" / "vae")
    b = VAEBMVAE.from_pretrained(tmp_path / "b" / "vae")
    key = "dec_tower.1._ops.0.conv.0.bn.running_mean"
    enc = "pre_process.0._ops.0.bn_act.running_mean"
    sa, sb = a.state_dict(), b.state_dict()
    assert key in sa and not torch.allclose(sa[key], sb[key])
    torch.testing.assert_close(sa[enc], sb[enc])
    for name in sa:
        if "running" not in name and "num_batches" not in name:
            torch.testing.assert_close(sa[name], sb[name])  # the weights are the same run's


def test_bernoulli_vae_trains_on_freshly_binarised_batches(tmp_path):
    from vaebm_hub.training.config import parse_args, resolve_preset
    from vaebm_hub.training.vae_stage import VAEStage

    vae = VAEBMVAE(decoder_distribution="bernoulli")
    seen = []
    vae.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    for flags, binary in (([], True), (["--no_dynamic_binarization"], False)):
        config = parse_args(["--dataset_name", "digits", *flags])
        stage = VAEStage(
            vae, resolve_preset(config, (1, 8, 8)).vae_training, seed=0, process_index=0,
            num_sample_images=4,
        )  # fmt: skip
        stage.model = NegativeELBOTerms(vae)
        batch = torch.full((8, 1, 8, 8), 0.5)
        stage.training_loss(batch, 0)
        values = seen[-1].unique()
        if binary:
            assert set(values.tolist()) == {0.0, 1.0}
        else:
            assert values.tolist() == [0.5]


def test_latent_only_potential_is_energy_of_the_decoder_mean_plus_prior():
    torch.manual_seed(0)
    vae, ebm = VAEBMVAE().eval(), VAEBMEnergyModel().eval()
    eps_z = torch.randn(3, vae.latent_dim)
    out = vaebm_potential(vae, ebm, eps_z)
    mean = vae.generate(eps_z)
    torch.testing.assert_close(out.images, mean)
    torch.testing.assert_close(out.potential, ebm(mean) + 0.5 * eps_z.pow(2).sum(1))


def test_pipeline_without_pixel_noise_chains_on_eps_z_and_round_trips(tmp_path):
    torch.manual_seed(0)
    pipe = VAEBMPipeline(VAEBMVAE(), VAEBMEnergyModel(), LangevinScheduler(step_size=1e-2), pixel_noise=False)
    pipe.set_progress_bar_config(disable=True)
    eps = pipe(batch_size=2, num_inference_steps=0, generator=torch.Generator().manual_seed(0), output_type="latent")
    assert eps.images.shape == (2, pipe.vae.latent_dim)
    moved = pipe(batch_size=2, num_inference_steps=3, latents=eps.images, output_type="latent").images
    assert not torch.allclose(moved, eps.images)
    pipe.save_pretrained(tmp_path)
    loaded = VAEBMPipeline.from_pretrained(tmp_path)
    assert loaded.config.pixel_noise is False
    full = loaded(batch_size=2, num_inference_steps=0, pixel_noise=True, output_type="latent").images
    assert full.shape == (2, pipe.vae.noise_dim)


def test_decoder_output_sample_returns_the_decoders_sample_at_the_chains_final_eps_x(tmp_path):
    """``decoder_output="sample"``: the image is ``T_x(z, eps_x)`` at the chain's final ``(eps_z, eps_x)``, clamped to
    [0, 1] (``"mean"``, VAEBM's, drops ``eps_x``); the setting is saved with the pipeline and overridable per call."""
    torch.manual_seed(0)
    vae = VAEBMVAE().eval()  # the pipeline decodes in eval mode
    pipe = VAEBMPipeline(vae, VAEBMEnergyModel(), LangevinScheduler(step_size=1e-2), decoder_output="sample")
    pipe.set_progress_bar_config(disable=True)
    call = dict(batch_size=3, num_inference_steps=2, generator=None)

    def run(**kwargs):
        return pipe(**{**call, "generator": torch.Generator().manual_seed(0), **kwargs}).images

    eps = run(output_type="latent")
    eps_z, eps_x = pipe.vae.split_noise(eps)
    decoder = pipe.vae.output_distribution(pipe.vae.decode_noise(eps_z).logits)
    expected = torch.clamp(decoder.dist.sample(eps_x), -1.0, 1.0) / 2 + 0.5
    sample = run(output_type="pt")
    torch.testing.assert_close(sample, expected)
    mean = run(output_type="pt", decoder_output="mean")
    torch.testing.assert_close(mean, decoder.mean)
    assert (sample - mean).abs().mean() > 1e-2  # the pixel noise is there
    torch.testing.assert_close(pipe.decode(eps), sample)  # what callbacks show is what the call returns
    torch.testing.assert_close(pipe.decode(eps, decoder_output="mean"), mean)
    pipe.save_pretrained(tmp_path)
    loaded = VAEBMPipeline.from_pretrained(tmp_path)
    assert loaded.config.decoder_output == "sample"
    assert VAEBMPipeline.from_pipe(loaded, decoder_output="mean").config.decoder_output == "mean"
    index = json.loads((tmp_path / "model_index.json").read_text())
    del index["decoder_output"]  # a pipeline saved before the setting existed samples as VAEBM does
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    old = VAEBMPipeline.from_pretrained(tmp_path)
    old.set_progress_bar_config(disable=True)
    assert old.config.decoder_output == "mean"
    torch.testing.assert_close(
        old(**{**call, "generator": torch.Generator().manual_seed(0)}, output_type="pt").images, mean
    )


def test_decoder_output_sample_needs_pixel_noise_and_names_the_fix():
    torch.manual_seed(0)
    parts = (VAEBMVAE(), VAEBMEnergyModel(), LangevinScheduler(step_size=1e-2))
    with pytest.raises(ValueError, match="decoder_output must be one of"):
        VAEBMPipeline(*parts, decoder_output="median")
    with pytest.raises(ValueError, match="pixel_noise=False; use decoder_output='mean'"):
        VAEBMPipeline(*parts, pixel_noise=False, decoder_output="sample")
    bernoulli = VAEBMVAE(decoder_distribution="bernoulli")
    with pytest.raises(ValueError, match="decoder has no pixel noise"):
        VAEBMPipeline(bernoulli, parts[1], parts[2], decoder_output="sample")
    pipe = VAEBMPipeline(*parts)
    with pytest.raises(ValueError, match="pixel_noise=False"):
        pipe(batch_size=1, num_inference_steps=0, pixel_noise=False, decoder_output="sample")
    with pytest.raises(ValueError, match="decoder_output must be one of"):
        pipe(batch_size=1, num_inference_steps=0, decoder_output="median")


def test_channels_last_convolutions_match_and_leave_weights_alone():
    torch.manual_seed(0)
    vae = VAEBMVAE(num_latent_scales=2, num_groups_per_scale=2, num_nf=1).eval()
    ebm = VAEBMEnergyModel().eval()
    eps = vae.sample_noise(4, generator=torch.Generator().manual_seed(0))

    def energy_and_grad():
        eps_ = eps.clone().requires_grad_(True)
        out = vaebm_potential(vae, ebm, eps_)
        return out.potential.detach(), torch.autograd.grad(out.potential.sum(), eps_)[0]

    reference = energy_and_grad()
    assert set_channels_last(vae) > 0 and set_channels_last(ebm) > 0
    fast = energy_and_grad()
    for a, b in zip(reference, fast):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert all(t.is_contiguous() for t in vae.state_dict().values())
    set_channels_last(vae, False)
    torch.testing.assert_close(energy_and_grad()[0], reference[0])


def test_the_fast_path_matches_the_eager_formulas_and_changes_no_weights():
    """Fused SiLU and eval-mode batch norm folded into the decoder's convolutions: same outputs within 1e-5, same
    gradients to the noise and to the parameters, an unchanged state dict; train mode runs the unfolded cells."""
    from vaebm_hub.models.layers import reference_kernels

    torch.manual_seed(0)
    vae = VAEBMVAE(in_channels=3, sample_size=16, num_latent_scales=2, num_groups_per_scale=2)
    vae.readjust_batch_norm(3, 16, generator=torch.Generator().manual_seed(0))  # non-trivial statistics
    vae.eval()
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    eps = vae.sample_noise(4, generator=torch.Generator().manual_seed(1))

    def outputs():
        vae.zero_grad()
        e = eps.clone().requires_grad_(True)
        x = vae.noise_to_data(e).x
        grad_eps, grad_w = torch.autograd.grad(x.square().sum(), (e, vae.dec_tower[1]._ops[0].conv[2].conv[0].weight))
        return x.detach(), grad_eps, grad_w

    with reference_kernels():
        reference = outputs()
    fast = outputs()
    for a, b in zip(reference, fast):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(before[k], v) for k, v in vae.state_dict().items())
    with torch.no_grad():  # a weight update is seen at once: nothing folded is cached
        vae.dec_tower[1]._ops[0].conv[0].bn.weight.mul_(2.0)
        changed = vae.noise_to_data(eps).x
        with reference_kernels():
            torch.testing.assert_close(changed, vae.noise_to_data(eps).x, rtol=1e-5, atol=1e-6)


def test_the_step_size_rule_on_a_linear_decoder():
    """For x = W z the gain is ||W||_F / sqrt(D_x), so eta = (f s sqrt(D_x) / ||W||_F)^2."""
    from vaebm_hub import VAEBMMLPVAE
    from vaebm_hub.pipelines.step_size import decoder_gain, suggest_step_size

    torch.manual_seed(0)
    vae = VAEBMMLPVAE(in_features=3, latent_dim=4, num_layers=0).eval()
    weight = vae.decoder[0].weight[:3]  # the mean rows of the linear decoder
    expected_gain = float(weight.detach().norm() / 3**0.5)
    assert abs(decoder_gain(vae, pixel_noise=False, num_samples=4096) - expected_gain) < 0.05 * expected_gain
    data = 0.5 * torch.randn(10000, 3, generator=torch.Generator().manual_seed(1))
    eta = suggest_step_size(vae, data, pixel_noise=False, fraction=0.02)
    assert abs(eta - (0.02 * 0.5 / expected_gain) ** 2) < 0.15 * eta


def test_an_auto_step_size_is_resolved_when_stage_two_starts_and_recorded(tmp_path):
    from vaebm_hub.training import main

    out = tmp_path / "toy"
    main(["--dataset_name", "gaussians25", "--vae_max_train_steps", "20", "--ebm_max_train_steps", "2",
          "--output_dir", str(out), "--report_to", "none"])  # fmt: skip
    pipe = VAEBMPipeline.from_pretrained(out)
    step = pipe.scheduler.config.step_size
    assert isinstance(step, float) and 0 < step < 1 and pipe.config.pixel_noise is False
    assert f"| `ebm_training.langevin_step_size` | {step:g} |" in (out / "README.md").read_text()


def _digits_ebm_stage(vae: VAEBMVAE, ebm: VAEBMEnergyModel | None = None, **changes):
    """A stage 2 on ``vae`` with the digits preset's settings, ``changes`` applied (its ``model`` set, unprepared)."""
    import dataclasses

    from vaebm_hub.presets import get_preset
    from vaebm_hub.training.ebm_stage import EBMStage

    preset = get_preset("digits")
    ebm = VAEBMEnergyModel() if ebm is None else ebm
    settings = dataclasses.replace(preset.ebm_training, **changes)
    stage = EBMStage(
        vae, ebm, settings, preset.sampling, seed=0, process_index=0, device=torch.device("cpu"), num_sample_images=4
    )
    stage.model = ebm
    return stage


def test_energy_l2_term_adds_alpha_times_mean_squared_energies():
    losses, metrics = {}, {}
    for alpha in (0.0, 0.5):
        torch.manual_seed(0)
        vae, ebm = VAEBMVAE().eval(), VAEBMEnergyModel()
        stage = _digits_ebm_stage(vae, ebm, energy_l2_coeff=alpha, spectral_reg_coeff=0.0)
        batch = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
        losses[alpha], metrics[alpha] = stage.training_loss(batch, 0)
    pos, neg = metrics[0.0]["energy_pos"], metrics[0.0]["energy_neg"]
    assert "energy_l2" not in metrics[0.0]
    torch.testing.assert_close(losses[0.0], pos - neg)  # the paper's loss, unchanged
    magnitude = metrics[0.5]["energy_l2"]  # mean(E+^2) + mean(E-^2) >= mean(E+)^2 + mean(E-)^2
    assert magnitude >= pos**2 + neg**2 - 1e-6
    torch.testing.assert_close(losses[0.5], losses[0.0] + 0.5 * magnitude)


def test_a_stage_2_whose_chains_diverge_ends_in_training_diverged_error():
    from vaebm_hub.training.divergence import TrainingDivergedError

    vae, ebm = VAEBMVAE().eval(), VAEBMEnergyModel()
    with torch.no_grad():
        for parameter in ebm.parameters():
            parameter.fill_(float("nan"))  # a degenerate energy network: every chain goes non-finite
    stage = _digits_ebm_stage(vae, ebm)
    with pytest.raises(TrainingDivergedError, match="--energy_l2_coeff"):  # was a bare NonFiniteChainError
        stage.sample_panels()


def _bernoulli_stage(fraction: float):
    torch.manual_seed(0)
    return _digits_ebm_stage(VAEBMVAE(decoder_distribution="bernoulli").eval(), bernoulli_negative_fraction=fraction)


def test_bernoulli_negative_fraction_makes_that_share_of_negatives_binary_draws_of_the_decoder_mean():
    eps = torch.randn(8, _bernoulli_stage(0.0).vae.latent_dim, generator=torch.Generator().manual_seed(2))
    means = _bernoulli_stage(0.0).negatives(eps)
    assert ((means > 0) & (means < 1)).all()  # the means alone: grey, never a draw
    mixed = _bernoulli_stage(0.5).negatives(eps)
    drawn = mixed[:4]
    assert set(drawn.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(mixed[4:], means[4:])
    # Each pixel is a draw from its own mean: over many draws the frequency of ones approaches it.
    stage = _bernoulli_stage(1.0)
    frequency = torch.stack([stage.negatives(eps[:1]) for _ in range(400)]).mean(0)
    assert (frequency - means[:1]).abs().max() < 0.1


def test_bernoulli_negative_fraction_refuses_a_continuous_decoder():
    with pytest.raises(ValueError, match="Bernoulli decoder"):
        _digits_ebm_stage(VAEBMVAE(), bernoulli_negative_fraction=0.5)


def _decoder_at_posterior(vae: VAEBMVAE, x: torch.Tensor, seed: int):
    """The decoder distribution at z ~ q(z|x), the posterior noise drawn from a generator seeded ``seed``."""
    with torch.no_grad():
        return vae.output_distribution(vae(x, generator=torch.Generator().manual_seed(seed)).logits)


def test_reconstruction_positive_fraction_replaces_that_share_of_the_positives_by_reconstructions():
    torch.manual_seed(0)
    vae = VAEBMVAE(decoder_distribution="bernoulli").eval()
    batch = torch.rand(6, *vae.data_shape, generator=torch.Generator().manual_seed(1))
    untouched = _digits_ebm_stage(vae, reconstruction_positive_fraction=0.0)
    state = untouched.generator.get_state()
    assert untouched.positives(batch) is batch  # 0: the data itself, and nothing drawn from the trainer's generator
    assert torch.equal(untouched.generator.get_state(), state)
    stage = _digits_ebm_stage(vae, reconstruction_positive_fraction=0.5)
    stage.generator.manual_seed(3)
    positives = stage.positives(batch)
    torch.testing.assert_close(positives[3:], batch[3:])
    # a Bernoulli decoder: the decoder mean at a posterior sample, drawn with the trainer's generator
    torch.testing.assert_close(positives[:3], _decoder_at_posterior(vae, batch[:3], seed=3).mean)
    assert not torch.allclose(positives[:3], batch[:3], atol=0.05)
    # training_loss feeds the energy network these positives (the first half of its input), not the data
    seen = []
    stage.model = lambda images: seen.append(images) or stage.ebm(images)
    stage.generator.manual_seed(3)
    stage.training_loss(batch, step=0)
    torch.testing.assert_close(seen[0][: len(batch)], positives)


def test_reconstructions_of_a_gaussian_decoder_are_of_the_negatives_kind():
    from vaebm_hub.training.ebm_stage import reconstruction_images

    torch.manual_seed(0)
    vae = VAEBMVAE().eval()
    x = torch.rand(4, *vae.data_shape, generator=torch.Generator().manual_seed(1))
    decoder = _decoder_at_posterior(vae, x, seed=5)
    mean_cd = reconstruction_images(vae, x, True, True, torch.Generator().manual_seed(5))
    torch.testing.assert_close(mean_cd, 0.5 * decoder.mu + 0.5)  # use_mu_cd: the official mean, unclamped
    latent_only = reconstruction_images(vae, x, False, False, torch.Generator().manual_seed(5))
    torch.testing.assert_close(latent_only, decoder.mean)  # chains without pixel noise see the mean
    sampled = reconstruction_images(vae, x, False, True, torch.Generator().manual_seed(5))
    eps_x = vae.split_noise(vae.sample_noise(4, generator=torch.Generator().manual_seed(5)))[1]
    torch.testing.assert_close(sampled, decoder.rsample(eps_x))  # one draw: eps_z for q(z|x), eps_x for the pixels
    assert not torch.allclose(sampled, decoder.mean)  # a sample, as the negatives of chains with pixel noise


# One VAE step, then stage 2 at toy size, a checkpoint after every step (checkpoint-1 is stage 1's).
TINY_TWO_STAGE_RUN = [
    "--dataset_name", "digits", "--train_batch_size", "8", "--ebm_n_channel", "4", "--langevin_steps", "2",
    "--sample_langevin_steps", "2", "--num_sample_images", "4", "--data_init_batches", "1", "--report_to", "none",
    "--stage", "all", "--vae_max_train_steps", "1", "--checkpointing_steps", "1",
]  # fmt: skip


def test_the_saved_energy_network_is_the_ema_of_the_trained_iterates(tmp_path):
    """``--ebm_ema_decay d``: the pipeline holds diffusers' EMA of the weights after each step (decay 0, then
    min(d, (1 + t) / (10 + t))), while training itself (the checkpoints' weights) is the run without an EMA."""
    from safetensors.torch import load_file

    from vaebm_hub.training import main

    tiny = [*TINY_TWO_STAGE_RUN, "--ebm_max_train_steps", "3"]
    main([*tiny, "--ebm_ema_decay", "0.2", "--output_dir", str(tmp_path / "ema")])
    main([*tiny, "--output_dir", str(tmp_path / "last")])
    iterates = [load_file(tmp_path / "ema" / f"checkpoint-{n}" / "model.safetensors") for n in (2, 3, 4)]
    for n, iterate in zip((2, 3, 4), iterates):
        without_ema = load_file(tmp_path / "last" / f"checkpoint-{n}" / "model.safetensors")
        for name in iterate:
            assert torch.equal(iterate[name], without_ema[name]), name  # the EMA leaves training alone
    last = VAEBMEnergyModel.from_pretrained(tmp_path / "last" / "ebm").state_dict()
    ema_model = VAEBMEnergyModel.from_pretrained(tmp_path / "ema" / "ebm")
    ema, parameters = ema_model.state_dict(), [name for name, _ in ema_model.named_parameters()]
    for name in parameters:
        expected = iterates[0][name]
        for decay, iterate in zip((2 / 11, 0.2), iterates[1:]):  # (1 + 1) / 11 < 0.2, then capped at 0.2
            expected = decay * expected + (1 - decay) * iterate[name]
        torch.testing.assert_close(ema[name], expected)
        torch.testing.assert_close(last[name], iterates[-1][name])
    assert any(not torch.equal(ema[name], last[name]) for name in parameters)


def test_the_saved_energy_network_is_the_mean_of_the_last_iterates_with_a_weight_average(tmp_path):
    """``--ebm_weight_average_fraction 0.5`` of 4 stage-2 iterations: the pipeline holds the plain mean of the
    weights after iterations 3 and 4 (global checkpoints 4 and 5), not the last iterate, and a resume from a
    checkpoint inside the window (which carries the running mean) saves the same network (to float rounding: the
    resumed iterate itself differs by about 1e-8 here, with or without the average)."""
    from safetensors.torch import load_file

    from vaebm_hub.training import main

    tiny = [*TINY_TWO_STAGE_RUN, "--ebm_max_train_steps", "4", "--ebm_weight_average_fraction", "0.5"]
    main([*tiny, "--output_dir", str(tmp_path / "swa")])
    iterates = [load_file(tmp_path / "swa" / f"checkpoint-{n}" / "model.safetensors") for n in (4, 5)]
    model = VAEBMEnergyModel.from_pretrained(tmp_path / "swa" / "ebm")
    saved, parameters = model.state_dict(), [name for name, _ in model.named_parameters()]
    for name in parameters:
        torch.testing.assert_close(saved[name], (iterates[0][name] + iterates[1][name]) / 2)
    assert any(not torch.equal(saved[name], iterates[1][name]) for name in parameters)

    shutil.rmtree(tmp_path / "swa" / "ebm")
    main([*tiny, "--output_dir", str(tmp_path / "swa"), "--resume_from_checkpoint", "checkpoint-4"])
    resumed = VAEBMEnergyModel.from_pretrained(tmp_path / "swa" / "ebm").state_dict()
    for name in parameters:
        torch.testing.assert_close(resumed[name], saved[name], rtol=0, atol=1e-6)


def test_resuming_a_stage_2_without_an_ema_with_the_ema_flag_names_the_flag(tmp_path):
    from vaebm_hub.training import main

    tiny = [*TINY_TWO_STAGE_RUN, "--ebm_max_train_steps", "2", "--output_dir", str(tmp_path)]
    main(tiny)
    with pytest.raises(ValueError, match="written without --ebm_ema_decay"):  # not a raw error from EMAModel
        main([*tiny, "--resume_from_checkpoint", "checkpoint-2", "--ebm_ema_decay", "0.5"])


def test_chain_dtype_resolves_names_and_auto_and_names_the_flag_for_unknown_values(monkeypatch):
    from vaebm_hub.training.chain_precision import chain_dtype

    cpu = torch.device("cpu")
    assert chain_dtype("float32", cpu) == torch.float32
    assert chain_dtype("bfloat16", cpu) == torch.bfloat16
    for native, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda native=native: {"avx512_bf16": native})
        assert chain_dtype("auto", cpu) == expected
    with pytest.raises(ValueError, match="--langevin_dtype"):
        chain_dtype("float16", cpu)


def test_the_chain_dtype_comes_from_the_flag_or_the_preset_and_is_checked():
    from vaebm_hub.presets import get_preset, resolve
    from vaebm_hub.training.config import parse_args, resolve_preset

    def setting(flags: list[str]) -> str:
        return resolve_preset(parse_args(flags), (1, 32, 32)).ebm_training.chain_dtype

    assert setting(["--dataset_name", "digits"]) == "float32"  # VAEBM's float32 chains unless a preset says
    assert setting(["--dataset_name", "mnist"]) == "auto"
    assert setting(["--dataset_name", "mnist", "--langevin_dtype", "float32"]) == "float32"
    with pytest.raises(ValueError, match="--langevin_dtype"):
        resolve(get_preset("digits"), ebm_training=dict(chain_dtype="half"))


def _first_conv_output_dtypes(ebm: VAEBMEnergyModel) -> list[torch.dtype]:
    dtypes: list[torch.dtype] = []
    ebm.conv1.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    return dtypes


def test_bfloat16_chains_run_the_energy_network_in_bfloat16_and_the_loss_in_float32():
    for setting, chain in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        torch.manual_seed(0)
        vae, ebm = VAEBMVAE().eval(), VAEBMEnergyModel()
        stage = _digits_ebm_stage(vae, ebm, chain_dtype=setting)
        assert (stage.chain_ebm is ebm) == (setting == "float32")  # float32: VAEBM's chains, untouched
        dtypes = _first_conv_output_dtypes(ebm)
        loss, _ = stage.training_loss(torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)), 0)
        # K chain steps (the trainer turns autocast off around the chains; the setting turns it back on), then one
        # pass over positives and negatives for the loss, in the networks' own precision
        assert dtypes == [chain] * stage.settings.langevin_steps + [torch.float32]
        assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_bfloat16_chain_gradients_are_within_bfloat16_rounding_of_float32s():
    from vaebm_hub.pipelines.potential import potential_and_grad
    from vaebm_hub.training.chain_precision import AutocastEnergy

    torch.manual_seed(0)
    vae, ebm = VAEBMVAE().eval(), VAEBMEnergyModel().eval().requires_grad_(False)
    eps = vae.sample_noise(8, generator=torch.Generator().manual_seed(1))
    u32, grad32, energy32 = potential_and_grad(vae, ebm, eps)
    u16, grad16, energy16 = potential_and_grad(vae, AutocastEnergy(ebm, torch.bfloat16), eps)
    assert energy16.dtype == u16.dtype == grad16.dtype == torch.float32
    energy_grad32, energy_grad16 = grad32 - eps, grad16 - eps  # U = E + |eps|^2 / 2: the prior's part is exact
    error = (energy_grad16 - energy_grad32).norm() / energy_grad32.norm()
    assert 0 < error < 3e-2  # bfloat16 keeps 8 bits of mantissa (2^-8 = 4e-3 per rounding); not float32 in disguise
    torch.testing.assert_close(energy16, energy32, rtol=3e-2, atol=3e-2 * energy32.abs().max().item())
