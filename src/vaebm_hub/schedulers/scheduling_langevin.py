"""Short-run Langevin dynamics on a potential U(ε) — ULA, or MALA with a Metropolis–Hastings correction."""

import math
import warnings
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput, deprecate
from diffusers.utils.torch_utils import randn_tensor

from ..utils import as_count, as_real

STEP_SIZE_SCHEDULES = ("constant", "linear", "cosine", "geometric")
DEFAULT_STEP_SIZE = 8e-5  # VAEBM's CIFAR-10 value


@dataclass
class LangevinSchedulerOutput(BaseOutput):
    """
    Output of [`LangevinScheduler.step`].

    Args:
        prev_sample (`torch.Tensor` of shape `(batch_size, ...)`):
            The next chain state ε_{t+1} = ε_t − (η_t/2)·∇U(ε_t) + s·√η_t·ξ (for MALA: the proposal).
        prev_sample_mean (`torch.Tensor` of shape `(batch_size, ...)`):
            The drift-only point ε_t − (η_t/2)·∇U(ε_t), before the noise is added.
        step_size (`torch.Tensor` of shape `()` or `(batch_size,)`):
            The step size η_t that was used: a scalar for a fixed schedule, per sample in SNR mode or for per-sample
            timesteps.
    """

    prev_sample: torch.Tensor
    prev_sample_mean: torch.Tensor
    step_size: torch.Tensor


def _sq_norm(x: torch.Tensor) -> torch.Tensor:
    """Per-sample squared Euclidean norm over the non-batch dims: (B, ...) -> (B,)."""
    return x.reshape(x.shape[0], -1).square().sum(dim=1)


def _batch_view(values: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """Reshape a `()` or `(B,)` tensor to broadcast against `sample` of shape (B, ...)."""
    return values.reshape(values.shape + (1,) * (sample.ndim - values.ndim))


def _rand_uniform(
    batch_size: int,
    generator: torch.Generator | list[torch.Generator] | None,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """U(0, 1) draws of shape (B,), seeded like `randn_tensor`: a list of generators draws sample i from generator
    i, a one-element list acts as a single generator, and draws happen on the generator's device, then move."""
    if isinstance(generator, list) and len(generator) == 1:
        generator = generator[0]
    if isinstance(generator, list):
        draws = [
            torch.rand(1, generator=generator[i], device=generator[i].device, dtype=dtype) for i in range(batch_size)
        ]
        return torch.cat(draws).to(device)
    rand_device = generator.device if generator is not None else device
    return torch.rand(batch_size, generator=generator, device=rand_device, dtype=dtype).to(device)


class LangevinScheduler(SchedulerMixin, ConfigMixin):
    r"""
    Langevin dynamics for sampling p(ε) ∝ exp(−U(ε)); the caller supplies ∇U (and U for MALA), never a model.

    One step (unadjusted Langevin, ULA) with step size η_t, noise scale s and ξ ~ N(0, I):

        ε_{t+1} = ε_t − (η_t/2)·∇U(ε_t) + s·√η_t·ξ

    With `metropolis=True` the step is a proposal ε' that [`~LangevinScheduler.metropolis_accept`] accepts or
    rejects (MALA), which makes every step exactly invariant for exp(−U) whatever η_t and s > 0. The caller evaluates
    U and ∇U at the proposal anyway (it needs ∇U for the next step), and on acceptance reuses them, so MALA costs no
    extra potential evaluation:

        energy, grad = potential_and_grad(eps)
        for t in scheduler.timesteps:
            proposal = scheduler.step(grad, t, eps, generator=generator)
            prop_energy, prop_grad = potential_and_grad(proposal.prev_sample)
            eps, accepted = scheduler.metropolis_accept(
                eps, proposal.prev_sample, energy, prop_energy, grad, prop_grad, proposal.step_size, generator
            )
            energy = torch.where(accepted, prop_energy, energy)
            grad = torch.where(accepted.view(-1, *[1] * (grad.ndim - 1)), prop_grad, grad)

    Timesteps count up: `timesteps = arange(n)`, so a timestep is its own index into `step_sizes`.

    Args:
        default_num_inference_steps (`int`, defaults to 10):
            The chain length a pipeline runs when the call does not say (`num_inference_steps=None`), and the
            `timesteps` until `set_timesteps`. Configs saved before 0.2 call it `num_train_timesteps`, which is still
            read (with a deprecation warning).
        step_size (`float`, defaults to 8e-5):
            η at the first step (all steps for the constant schedule). VAEBM's CIFAR-10 value.
        noise_scale (`float`, defaults to 1.0):
            s, multiplies the injected noise: 1 targets exp(−U), other values the tempered exp(−U/s²) (MALA still
            targets exp(−U)), 0 is gradient descent.
        step_size_schedule (`str`, defaults to `"constant"`):
            How η moves from `step_size` to `final_step_size` over the chain: `"constant"`, `"linear"`, `"cosine"`
            (half cosine) or `"geometric"` (log-linear).
        final_step_size (`float`, *optional*):
            η at the last step; required by non-constant schedules, ignored by `"constant"`.
        snr (`float`, *optional*):
            None = the fixed schedule. Otherwise an adaptive step as in ScoreSdeVe's corrector: with score g = −∇U
            and the step's noise ξ, η = 4·(snr·‖ξ‖/‖g‖)². Norms are taken **per sample** (diffusers averages them over
            the batch): our batch rows are independent chains, so one chain's step must not depend on the others —
            results are then independent of batch composition and reproducible row by row with a list of generators.
            A zero gradient gives η = inf; non-finite values are the caller's to handle.
        metropolis (`bool`, defaults to `False`):
            Whether the caller applies [`~LangevinScheduler.metropolis_accept`] after each step (MALA).
    """

    order = 1
    _compatibles = []
    init_noise_sigma = 1.0

    @classmethod
    def _get_compatibles(cls) -> list[type]:
        """Schedulers whose config this one reads (``from_config``): only Langevin schedulers; diffusers' noise
        schedulers solve another problem (denoising), so swapping one in is refused by the pipeline."""
        return [cls]

    @register_to_config
    def __init__(
        self,
        default_num_inference_steps: int = 10,
        step_size: float = DEFAULT_STEP_SIZE,
        noise_scale: float = 1.0,
        step_size_schedule: str = "constant",
        final_step_size: float | None = None,
        snr: float | None = None,
        metropolis: bool = False,
        num_train_timesteps: int | None = None,
    ):
        # a hand-edited scheduler_config.json ("0.01") fails here by name, not in a comparison below
        as_count(default_num_inference_steps, "default_num_inference_steps")
        for name, value in (("step_size", step_size), ("noise_scale", noise_scale),
                            ("final_step_size", final_step_size), ("snr", snr)):  # fmt: skip
            if value is not None:
                as_real(value, name)
        if num_train_timesteps is not None:
            as_count(num_train_timesteps, "num_train_timesteps")
        if not isinstance(metropolis, bool):
            raise TypeError(f"metropolis must be True or False, got {type(metropolis).__name__} {metropolis!r}.")
        if num_train_timesteps is not None:
            deprecate(
                "num_train_timesteps", "1.0.0",
                "LangevinScheduler's `num_train_timesteps` is the default chain length: it is now called "
                "`default_num_inference_steps` (re-save the scheduler to update its config).",
                standard_warn=False,
            )  # fmt: skip
            default_num_inference_steps = num_train_timesteps
            self.register_to_config(default_num_inference_steps=default_num_inference_steps)
        if default_num_inference_steps < 1:
            raise ValueError(
                f"default_num_inference_steps={default_num_inference_steps} must be >= 1 (the default chain length)."
            )
        if snr is not None and step_size != DEFAULT_STEP_SIZE:
            warnings.warn(
                f"step_size={step_size} is ignored: with snr={snr} the step size is set adaptively from the gradient "
                "and noise norms. Pass one of the two.",
                stacklevel=2,
            )
        if not step_size > 0 or not math.isfinite(step_size):
            raise ValueError(f"step_size={step_size} must be a finite number > 0, e.g. 8e-5.")
        if not noise_scale >= 0:
            raise ValueError(f"noise_scale={noise_scale} must be >= 0 (1.0 = standard Langevin).")
        if step_size_schedule not in STEP_SIZE_SCHEDULES:
            raise ValueError(f"Unknown step_size_schedule={step_size_schedule!r}; use one of {STEP_SIZE_SCHEDULES}.")
        if step_size_schedule != "constant":
            if final_step_size is None:
                raise ValueError(
                    f"step_size_schedule={step_size_schedule!r} needs final_step_size; pass it or use 'constant'."
                )
            if not final_step_size > 0 or not math.isfinite(final_step_size):
                raise ValueError(f"final_step_size={final_step_size} must be a finite number > 0.")
        if snr is not None:
            if not snr > 0:
                raise ValueError(f"snr={snr} must be > 0, or None for a fixed step size.")
            if step_size_schedule != "constant":
                raise ValueError("snr sets the step size adaptively; use step_size_schedule='constant' with it.")
            if metropolis:
                raise ValueError(
                    "metropolis=True needs a step size that does not depend on the noise draw; set snr=None."
                )
        if metropolis and noise_scale == 0:
            raise ValueError("metropolis=True needs noise_scale > 0 (the proposal must be random).")
        self.set_timesteps(default_num_inference_steps)

    def register_to_config(self, **kwargs) -> None:
        """As ``ConfigMixin``'s, minus ``num_train_timesteps``, the pre-0.2 name of ``default_num_inference_steps``
        (read from old configs, never saved)."""
        kwargs.pop("num_train_timesteps", None)
        super().register_to_config(**kwargs)

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """
        Set the chain length n: `timesteps = arange(n)` (LongTensor) and the per-step sizes `step_sizes` (n,), and
        reset the MALA acceptance counters.

        Schedule with f = i/(n−1) (f = 0 when n = 1), η_0 = `step_size`, η_1 = `final_step_size`:
        constant η_0; linear η_0 + (η_1 − η_0)·f; cosine η_1 + (η_0 − η_1)·(1 + cos πf)/2; geometric η_0·(η_1/η_0)^f.
        """
        if num_inference_steps < 0:
            raise ValueError(f"num_inference_steps={num_inference_steps} must be >= 0.")
        start, end = self.config.step_size, self.config.final_step_size
        frac = torch.linspace(0.0, 1.0, num_inference_steps, dtype=torch.float64)
        schedule = self.config.step_size_schedule
        if schedule == "constant":
            sizes = torch.full_like(frac, start)
        elif schedule == "linear":
            sizes = start + (end - start) * frac
        elif schedule == "cosine":
            sizes = end + (start - end) * 0.5 * (1.0 + torch.cos(math.pi * frac))
        else:
            sizes = start * (end / start) ** frac
        self.num_inference_steps = num_inference_steps
        self.timesteps = torch.arange(num_inference_steps, device=device)
        self.step_sizes = sizes.to(device=device, dtype=torch.float32)
        self._num_proposed = 0
        self._num_accepted: torch.Tensor | None = None

    def scale_model_input(self, sample: torch.Tensor, timestep: int | None = None) -> torch.Tensor:
        """Identity: Langevin needs no input scaling (kept for diffusers' scheduler interface)."""
        return sample

    def _step_size_at(self, timestep: int | torch.Tensor) -> torch.Tensor:
        """η for a timestep (= its index). Tensors index on their device without a host sync, so they are not
        range-checked here; a `(B,)` tensor gives per-sample step sizes."""
        if isinstance(timestep, torch.Tensor):
            return self.step_sizes[timestep.to(self.step_sizes.device, torch.long)]
        if not 0 <= timestep < len(self.step_sizes):
            raise ValueError(
                f"timestep={timestep} is outside this chain's 0..{len(self.step_sizes) - 1}; use a value from "
                "scheduler.timesteps, or call set_timesteps(n) for a longer chain."
            )
        return self.step_sizes[int(timestep)]

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        return_dict: bool = True,
    ) -> LangevinSchedulerOutput | tuple:
        r"""
        One Langevin step  ε' = ε − (η_t/2)·∇U(ε) + s·√η_t·ξ,  ξ = randn_tensor(ε.shape, generator).

        η_t = `step_sizes[timestep]`, or η = 4·(snr·‖ξ‖/‖∇U‖)² per sample when `snr` is set (timestep unused).

        Args:
            model_output (`torch.Tensor` of shape `(B, ...)`): ∇_ε U(ε), per sample (not batch-averaged).
            timestep (`int` or `torch.Tensor`): a value of `timesteps` (0-d), or a `(B,)` tensor of them.
            sample (`torch.Tensor` of shape `(B, ...)`): the current state ε.
            generator: a `torch.Generator`, or one per sample for per-sample reproducibility.
            return_dict: return a [`LangevinSchedulerOutput`] or the tuple `(prev_sample, prev_sample_mean,
                step_size)`.
        """
        if model_output.shape != sample.shape:
            raise ValueError(
                f"model_output {tuple(model_output.shape)} must be ∇U with the sample's shape {tuple(sample.shape)}."
            )
        noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
        if self.config.snr is None:
            step_size = self._step_size_at(timestep).to(device=sample.device, dtype=sample.dtype)
        else:
            step_size = 4 * self.config.snr**2 * _sq_norm(noise) / _sq_norm(model_output)
        eta = _batch_view(step_size, sample)
        prev_sample_mean = sample - 0.5 * eta * model_output
        prev_sample = prev_sample_mean + self.config.noise_scale * eta.sqrt() * noise
        if not return_dict:
            return prev_sample, prev_sample_mean, step_size
        return LangevinSchedulerOutput(prev_sample=prev_sample, prev_sample_mean=prev_sample_mean, step_size=step_size)

    def metropolis_accept(
        self,
        sample: torch.Tensor,
        proposal: torch.Tensor,
        energy: torch.Tensor,
        proposal_energy: torch.Tensor,
        grad: torch.Tensor,
        proposal_grad: torch.Tensor,
        step_size: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""
        Metropolis–Hastings test of a Langevin proposal ε' (from `step`) against the current ε, per sample:

            log α = U(ε) − U(ε') + log q(ε|ε') − log q(ε'|ε),   q(a|b) = N(a; b − (η/2)·∇U(b), s²·η·I)

        accept iff log u < log α with u ~ U(0, 1) drawn from `generator` (a list: one per sample). A non-finite log α
        (e.g. a NaN proposal energy) is a rejection. The log-ratio is computed in at least float32.

        Args:
            sample, proposal, grad, proposal_grad (`torch.Tensor` of shape `(B, ...)`): ε, ε', ∇U(ε), ∇U(ε').
            energy, proposal_energy (`torch.Tensor` of shape `(B,)`): U(ε), U(ε').
            step_size (`torch.Tensor` of shape `()` or `(B,)`): the η of the step, i.e. `step(...).step_size`.

        Returns:
            `(next_sample, accepted)`: `where(accepted, ε', ε)` of shape `(B, ...)` and the `(B,)` bool mask; use the
            mask to select the matching energy and gradient. Also accumulates `acceptance_rate`.
        """
        if not self.config.metropolis:
            raise ValueError("metropolis_accept is the MALA correction; build the scheduler with metropolis=True.")
        batch = sample.shape[0]
        if not (proposal.shape == grad.shape == proposal_grad.shape == sample.shape):
            raise ValueError("sample, proposal, grad and proposal_grad must all have the sample's shape.")
        if energy.shape != (batch,) or proposal_energy.shape != (batch,):
            raise ValueError(f"energy and proposal_energy must have shape ({batch},), one value per sample.")
        dtype = torch.promote_types(sample.dtype, torch.float32)
        eta = step_size.to(dtype)
        half_eta = 0.5 * _batch_view(eta, sample)
        x, y = sample.to(dtype), proposal.to(dtype)
        # −2s²η·log q(ε'|ε) and −2s²η·log q(ε|ε'), up to the same constant
        forward = _sq_norm(y - x + half_eta * grad.to(dtype))
        backward = _sq_norm(x - y + half_eta * proposal_grad.to(dtype))
        log_q_ratio = (forward - backward) / (2 * self.config.noise_scale**2 * eta)
        log_alpha = energy.to(dtype) - proposal_energy.to(dtype) + log_q_ratio
        accepted = _rand_uniform(batch, generator, sample.device, dtype).log() < log_alpha
        num_accepted = accepted.sum()
        self._num_accepted = num_accepted if self._num_accepted is None else self._num_accepted + num_accepted
        self._num_proposed += batch
        return torch.where(_batch_view(accepted, sample), proposal, sample), accepted

    @property
    def acceptance_rate(self) -> torch.Tensor | None:
        """Fraction of MALA proposals accepted since the last `set_timesteps`, as a 0-d tensor on the samples' device
        (no host sync); None before any `metropolis_accept`."""
        if self._num_accepted is None:
            return None
        return self._num_accepted / self._num_proposed

    def __len__(self) -> int:
        return self.config.default_num_inference_steps
