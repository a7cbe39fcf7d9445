import json
import math

import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor

from vaebm_hub.schedulers import LangevinScheduler, LangevinSchedulerOutput

# Anisotropic diagonal Gaussian target U(x) = ½ Σ_i λ_i (x_i − m_i)².
PRECISION = torch.tensor([0.5, 1.0, 2.0, 4.0, 0.75, 3.0], dtype=torch.float64)
MEAN = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, -1.0], dtype=torch.float64)
# Few enough chains that every op (incl. the (B,) log in the MH test) stays under torch's intra-op parallel grain:
# on a loaded 2-core CPU a thread-pool start costs ~10 ms per op, which would dominate the test.
NUM_CHAINS = 2048
NUM_SE = 5  # tolerance in Monte-Carlo standard errors


def gaussian_energy_and_grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    diff = x - MEAN
    return 0.5 * (PRECISION * diff * diff).sum(dim=1), PRECISION * diff


def cloned(generator: torch.Generator) -> torch.Generator:
    copy = torch.Generator()
    copy.set_state(generator.get_state())
    return copy


def run_chains(scheduler: LangevinScheduler, num_steps: int, start_at_target: bool = False) -> torch.Tensor:
    """NUM_CHAINS parallel chains from N(0, I) (or from the exact target), the pipeline's loop in miniature: with
    MALA the energy and gradient at an accepted proposal are reused, never recomputed."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(NUM_CHAINS, len(MEAN), generator=generator, dtype=torch.float64)
    if start_at_target:
        x = MEAN + x / PRECISION.sqrt()
    energy, grad = gaussian_energy_and_grad(x)
    scheduler.set_timesteps(num_steps)
    for t in scheduler.timesteps:
        out = scheduler.step(grad, t, x, generator=generator)
        if scheduler.config.metropolis:
            prop_energy, prop_grad = gaussian_energy_and_grad(out.prev_sample)
            x, accepted = scheduler.metropolis_accept(
                x, out.prev_sample, energy, prop_energy, grad, prop_grad, out.step_size, generator=generator
            )
            energy = torch.where(accepted, prop_energy, energy)
            grad = torch.where(accepted[:, None], prop_grad, grad)
        else:
            x = out.prev_sample
            energy, grad = gaussian_energy_and_grad(x)
    return x


def ula_stationary_variance(step_size: float, noise_scale: float = 1.0) -> torch.Tensor:
    """x' = x − (η/2)λ(x − m) + s√η ξ is AR(1) with a = 1 − ηλ/2: var = s²η/(1 − a²) = s²/(λ(1 − ηλ/4))."""
    return noise_scale**2 / (PRECISION * (1 - step_size * PRECISION / 4))


def assert_moments(samples: torch.Tensor, variance: torch.Tensor) -> None:
    """Sample mean ≈ MEAN and sample variance ≈ `variance`, per coordinate, within NUM_SE standard errors.

    The chains are independent, so over N chains SE(mean) = √(var/N) and, for Gaussian marginals,
    SE(sample var) = var·√(2/(N−1)). A correct sampler fails one of the 12 two-sided 5-SE checks with probability
    < 12 · 5.7e-7, so the tolerance is not tuned to the seed; it resolves variance errors above 5·√(2/N) ≈ 16%.
    """
    se_mean = (variance / NUM_CHAINS).sqrt()
    se_var = variance * math.sqrt(2 / (NUM_CHAINS - 1))
    assert ((samples.mean(0) - MEAN).abs() < NUM_SE * se_mean).all(), (samples.mean(0) - MEAN) / se_mean
    assert ((samples.var(0) - variance).abs() < NUM_SE * se_var).all(), (samples.var(0) - variance) / se_var


def test_step_matches_langevin_formula():
    scheduler = LangevinScheduler(step_size=0.01, noise_scale=0.5)
    sample, grad = torch.randn(2, 3, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(7)
    noise = randn_tensor(sample.shape, generator=cloned(generator), dtype=sample.dtype)

    out = scheduler.step(grad, scheduler.timesteps[0], sample, generator=generator)

    assert isinstance(out, LangevinSchedulerOutput)
    torch.testing.assert_close(out.prev_sample, sample - (0.01 / 2) * grad + 0.5 * math.sqrt(0.01) * noise)
    torch.testing.assert_close(out.prev_sample_mean, sample - (0.01 / 2) * grad)
    torch.testing.assert_close(out.step_size, torch.tensor(0.01))


@pytest.mark.parametrize("config", [{"step_size": 0.01}, {"snr": 0.2}], ids=["fixed", "snr"])
def test_list_of_generators_gives_each_sample_its_own_chain(config):
    scheduler = LangevinScheduler(**config)
    sample, grad = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(1))

    batched = scheduler.step(grad, 0, sample, generator=[torch.Generator().manual_seed(i) for i in range(3)])

    for i in range(3):
        alone = scheduler.step(grad[i : i + 1], 0, sample[i : i + 1], generator=torch.Generator().manual_seed(i))
        torch.testing.assert_close(batched.prev_sample[i : i + 1], alone.prev_sample)


def test_step_tuple_output_equals_dict_output():
    scheduler = LangevinScheduler(step_size=0.05)
    sample, grad = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(1))

    out = scheduler.step(grad, 0, sample, generator=torch.Generator().manual_seed(3))
    tup = scheduler.step(grad, 0, sample, generator=torch.Generator().manual_seed(3), return_dict=False)

    assert isinstance(tup, tuple) and len(tup) == 3
    for a, b in zip(tup, (out.prev_sample, out.prev_sample_mean, out.step_size)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_timestep_selects_its_step_size():
    scheduler = LangevinScheduler(step_size=0.1, step_size_schedule="linear", final_step_size=0.02)
    scheduler.set_timesteps(5)
    sample, grad = torch.randn(2, 2, 3, generator=torch.Generator().manual_seed(1))

    for t in (3, scheduler.timesteps[3]):
        out = scheduler.step(grad, t, sample)
        torch.testing.assert_close(out.prev_sample_mean, sample - 0.5 * scheduler.step_sizes[3] * grad)

    per_sample = scheduler.step(grad, torch.tensor([0, 4]), sample)
    torch.testing.assert_close(per_sample.step_size, torch.tensor([0.1, 0.02]))
    torch.testing.assert_close(per_sample.prev_sample_mean, sample - 0.5 * torch.tensor([[0.1], [0.02]]) * grad)


@pytest.mark.parametrize("step_size", [0.1, 0.5])
def test_ula_reaches_its_closed_form_stationary_moments(step_size):
    # From N(0, I) the mean's residual bias after T steps is |m − 0|·(1 − ηλ/2)^T ≤ 1·0.975^300 ≈ 5e-4 (coordinate
    # λ = 0.5, m = 1, η = 0.1), under 0.05 SE; the variance residual is squared, so smaller still.
    samples = run_chains(LangevinScheduler(step_size=step_size), num_steps=300)
    assert_moments(samples, ula_stationary_variance(step_size))


def test_mala_large_step_recovers_exact_moments_where_ula_is_biased():
    step_size = 0.5  # ηλ up to 2: ULA's stationary variance is up to 2x the target's 1/λ
    ula = run_chains(LangevinScheduler(step_size=step_size), num_steps=300)
    se_var = (1 / PRECISION) * math.sqrt(2 / (NUM_CHAINS - 1))
    stiff = PRECISION >= 2
    assert ((ula.var(0) - 1 / PRECISION)[stiff] > NUM_SE * se_var[stiff]).all()

    scheduler = LangevinScheduler(step_size=step_size, metropolis=True)
    assert scheduler.acceptance_rate is None
    mala = run_chains(scheduler, num_steps=300)

    assert_moments(mala, 1 / PRECISION)
    assert 0.0 < scheduler.acceptance_rate < 1.0
    scheduler.set_timesteps(3)
    assert scheduler.acceptance_rate is None


def test_mala_keeps_exact_target_invariant_for_any_noise_scale():
    # With s = 0.7 the proposal is ULA at temperature s², which drifts away from exp(−U); the MH correction uses
    # q(a|b) = N(b − (η/2)∇U(b), s²η) and must keep chains started exactly at the target there.
    step_size, noise_scale = 0.5, 0.7
    ula = run_chains(LangevinScheduler(step_size=step_size, noise_scale=noise_scale), 100, start_at_target=True)
    assert_moments(ula, ula_stationary_variance(step_size, noise_scale))

    scheduler = LangevinScheduler(step_size=step_size, noise_scale=noise_scale, metropolis=True)
    assert_moments(run_chains(scheduler, 100, start_at_target=True), 1 / PRECISION)


@pytest.mark.parametrize(
    ("schedule", "midpoint"),
    [("linear", (0.1 + 0.001) / 2), ("cosine", (0.1 + 0.001) / 2), ("geometric", math.sqrt(0.1 * 0.001))],
)
def test_step_size_schedule_interpolates_between_endpoints(schedule, midpoint):
    scheduler = LangevinScheduler(step_size=0.1, step_size_schedule=schedule, final_step_size=0.001)
    scheduler.set_timesteps(5)

    sizes = scheduler.step_sizes.double()
    assert sizes.shape == (5,)
    torch.testing.assert_close(sizes[[0, 2, 4]], torch.tensor([0.1, midpoint, 0.001], dtype=torch.float64))
    assert (sizes.diff() < 0).all()


def test_constant_schedule_and_degenerate_lengths():
    scheduler = LangevinScheduler(step_size=0.1, final_step_size=0.5)  # constant ignores final_step_size
    assert torch.equal(scheduler.step_sizes, torch.full((scheduler.config.default_num_inference_steps,), 0.1))
    linear = LangevinScheduler(step_size=0.1, step_size_schedule="linear", final_step_size=0.5)
    linear.set_timesteps(1)
    assert torch.equal(linear.step_sizes, torch.tensor([0.1]))
    linear.set_timesteps(0)
    assert linear.timesteps.numel() == 0 and linear.step_sizes.numel() == 0


def test_snr_adaptive_step_matches_formula():
    snr, noise_scale = 0.16, 0.8
    scheduler = LangevinScheduler(snr=snr, noise_scale=noise_scale)
    sample = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(1))
    grad = torch.stack([torch.full((3, 4), 2.0), torch.full((3, 4), -0.5)])  # ‖g‖² = 48 and 3
    generator = torch.Generator().manual_seed(5)
    noise = randn_tensor(sample.shape, generator=cloned(generator))

    out = scheduler.step(grad, 0, sample, generator=generator)

    eta = 4 * snr**2 * noise.flatten(1).square().sum(1) / torch.tensor([48.0, 3.0])
    torch.testing.assert_close(out.step_size, eta)
    eta = eta[:, None, None]
    torch.testing.assert_close(out.prev_sample, sample - eta / 2 * grad + noise_scale * eta.sqrt() * noise)


def test_config_round_trip(tmp_path):
    scheduler = LangevinScheduler(
        default_num_inference_steps=6,
        step_size=3e-4,
        noise_scale=0.9,
        step_size_schedule="cosine",
        final_step_size=1e-5,
    )
    scheduler.save_pretrained(tmp_path)

    saved = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert saved["_class_name"] == "LangevinScheduler"
    assert saved["step_size_schedule"] == "cosine" and saved["final_step_size"] == 1e-5
    loaded = LangevinScheduler.from_pretrained(tmp_path)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(scheduler.config)
    torch.testing.assert_close(loaded.step_sizes, scheduler.step_sizes, rtol=0, atol=0)

    overridden = LangevinScheduler.from_config(scheduler.config, step_size=1e-3)
    assert overridden.config.step_size == 1e-3 and overridden.config.final_step_size == 1e-5


def test_diffusers_scheduler_public_api():
    scheduler = LangevinScheduler(default_num_inference_steps=7)
    sample = torch.randn(2, 3)

    assert scheduler.init_noise_sigma == 1.0 and scheduler.order == 1
    assert len(scheduler) == 7 and scheduler.compatibles == [LangevinScheduler]  # as diffusers: itself included
    assert scheduler.scale_model_input(sample, scheduler.timesteps[0]) is sample
    assert torch.equal(scheduler.timesteps, torch.arange(7))
    scheduler.set_timesteps(4, device="cpu")
    assert scheduler.timesteps.dtype == torch.long and torch.equal(scheduler.timesteps, torch.arange(4))
    assert scheduler.step(torch.zeros_like(sample), 3, sample).prev_sample.shape == sample.shape


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"default_num_inference_steps": 0}, "default_num_inference_steps"),
        ({"step_size": 0.0}, "step_size"),
        ({"step_size": -1e-3}, "step_size"),
        ({"noise_scale": -0.1}, "noise_scale"),
        ({"step_size_schedule": "exponential"}, "Unknown step_size_schedule"),
        ({"step_size_schedule": "linear"}, "needs final_step_size"),
        ({"step_size_schedule": "geometric", "final_step_size": 0.0}, "final_step_size"),
        ({"snr": 0.0}, "snr"),
        ({"snr": 0.1, "step_size_schedule": "linear", "final_step_size": 1e-3}, "constant"),
        ({"snr": 0.1, "metropolis": True}, "snr=None"),
        ({"noise_scale": 0.0, "metropolis": True}, "noise_scale > 0"),
    ],
)
def test_invalid_config_raises(config, match):
    with pytest.raises(ValueError, match=match):
        LangevinScheduler(**config)


def test_invalid_inputs_raise():
    scheduler = LangevinScheduler(default_num_inference_steps=3)
    sample = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="num_inference_steps"):
        scheduler.set_timesteps(-1)
    with pytest.raises(ValueError, match="outside this chain"):
        scheduler.step(sample, 3, sample)
    with pytest.raises(ValueError, match="sample's shape"):
        scheduler.step(torch.zeros(2, 5), 0, sample)
    energy = torch.zeros(2)
    with pytest.raises(ValueError, match="metropolis=True"):
        scheduler.metropolis_accept(sample, sample, energy, energy, sample, sample, torch.tensor(0.1))
    mala = LangevinScheduler(metropolis=True)
    with pytest.raises(ValueError, match="one value per sample"):
        mala.metropolis_accept(sample, sample, energy[:, None], energy, sample, sample, torch.tensor(0.1))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(default_num_inference_steps="ten"), "default_num_inference_steps must be an integer"),
        (dict(default_num_inference_steps=2.5), "default_num_inference_steps must be an integer"),
        (dict(step_size="0.01"), "step_size must be a number"),
        (dict(step_size=True), "step_size must be a number"),
        (dict(noise_scale="1"), "noise_scale must be a number"),
        (dict(metropolis="yes"), "metropolis must be True or False"),
    ],
)
def test_config_values_of_the_wrong_type_are_refused_by_name(kwargs, message):
    with pytest.raises(TypeError, match=message):  # the old code compared "ten" < 1 and raised a bare TypeError
        LangevinScheduler(**kwargs)


def test_numpy_config_values_are_accepted():
    import numpy as np

    scheduler = LangevinScheduler(default_num_inference_steps=np.int64(5), step_size=np.float32(0.01))
    assert scheduler.config.default_num_inference_steps == 5
