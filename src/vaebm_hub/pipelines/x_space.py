r"""Langevin dynamics in data space ``x`` on the energy alone — the paper's "EBM on x" ablation (Table 4).

VAEBM samples ``h(eps) ∝ exp(-E(T(eps))) N(eps; 0, I)`` in the VAE's noise space. The ablation instead trains and
samples an energy-based model directly on ``x``:

    U(x) = E_psi(x),        x_{t+1} = clip(x_t - (eta_t / 2) dE/dx(x_t) + s sqrt(eta_t) xi),   xi ~ N(0, I)

with the same :class:`LangevinScheduler` arithmetic, its chains started from VAE samples ``x_0 = mean p(x | z)``,
``z = T_z(eps)`` (the decoder means, the paper's), or with ``decoder_output="sample"`` the decoder's samples
``T_x(z, eps_x)`` (the images a pipeline with that setting shows at K = 0, so both samplers start from the same
images), and ``clip`` keeping images in ``[0, 1]`` (``clip_range=None`` turns it off, e.g. for vector data). The
trainer uses :func:`x_space_chain` for its negatives with ``--sampling_space x``, and evaluation uses
:func:`sample_x_space` (or :class:`XSpaceSampler`, which takes a pipeline's call arguments), so both run the
identical chain.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..schedulers.scheduling_langevin import LangevinScheduler
from .decoding import decode_noise, pipeline_decoder_output
from .langevin_chain import finite_chain_indices, langevin_chain
from .output import VAEBMPipelineOutput, samples_to_numpy

IMAGE_RANGE = (0.0, 1.0)


def energy_and_grad(ebm: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(E(x), dE/dx)`` detached, for a batch ``x`` (B, ...); gradients with respect to ``x`` only."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        energy = ebm(x, check_finite=False)
        (grad,) = torch.autograd.grad(energy.sum(), x)
    return energy.detach(), grad


def x_space_potential(ebm: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The potential :func:`langevin_chain` runs on: ``(U, dU/dx, E)`` with ``U = E(x)``."""
    energy, grad = energy_and_grad(ebm, x)
    return energy, grad, energy


def x_space_chain(
    ebm: nn.Module,
    x: torch.Tensor,
    scheduler: LangevinScheduler,
    *,
    generator: torch.Generator | None = None,
    clip_range: tuple[float, float] | None = IMAGE_RANGE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~.langevin_chain.langevin_chain` on ``U(x) = E(x)`` from ``x`` (B, ...): the final states and a (B,)
    mask of the chains that stayed finite."""
    out = langevin_chain(
        functools.partial(x_space_potential, ebm), x, scheduler, generator=generator, clip_range=clip_range
    )
    return out.state, out.finite


@torch.no_grad()
def sample_x_space(
    vae: nn.Module,
    ebm: nn.Module,
    scheduler: LangevinScheduler,
    latents: torch.Tensor,
    num_inference_steps: int,
    *,
    generator: torch.Generator | None = None,
    clip_range: tuple[float, float] | None = IMAGE_RANGE,
    decoder_output: str = "mean",
) -> torch.Tensor:
    """Samples ``(B, ...)`` of the x-space EBM: decode ``latents`` (B, vae.noise_dim) to the VAE's decoder means (or
    with ``decoder_output="sample"`` its decoder samples), then ``num_inference_steps`` Langevin steps on ``E(x)``
    (0 steps = the VAE's own samples).

    ``scheduler`` supplies the step size and noise scale; its timesteps are reset to ``num_inference_steps`` on a copy.
    """
    x = decode_noise(vae, latents, decoder_output)
    if num_inference_steps == 0:
        return x
    chain = LangevinScheduler.from_config(scheduler.config)
    chain.set_timesteps(num_inference_steps, device=x.device)
    x, finite = x_space_chain(ebm, x, chain, generator=generator, clip_range=clip_range)
    finite_chain_indices(finite)  # raises NonFiniteChainError, the pipeline's policy
    return x


class XSpaceSampler:
    """Sample the x-space EBM with a :class:`VAEBMPipeline`'s call signature, so pipeline tools (e.g.
    :func:`vaebm_hub.evaluation.sample_images`) drive it unchanged.

    The initial noise is drawn exactly as the pipeline draws it (``vae.sample_noise(batch_size, generator=...)``), so
    with the same generator both samplers start from identical VAE samples: the decoder means, or with
    ``decoder_output="sample"`` (:meth:`from_pipeline` takes the pipeline's) the decoder's samples. ``output_type``
    is ``"np"`` (``(B, H, W, C)`` for images, ``(B, D)`` for vectors) or ``"pt"`` (``(B, C, H, W)`` / ``(B, D)``).
    """

    def __init__(
        self, vae: nn.Module, ebm: nn.Module, scheduler: LangevinScheduler, decoder_output: str = "mean"
    ) -> None:
        self.vae, self.ebm, self.scheduler = vae.eval(), ebm.eval(), scheduler
        self.decoder_output = decoder_output

    @classmethod
    def from_pipeline(cls, pipe) -> XSpaceSampler:
        """The x-space sampler of a saved pipeline's VAE, energy network, scheduler (step size, noise scale) and
        ``decoder_output`` (the images its chains start from)."""
        return cls(pipe.vae, pipe.ebm, pipe.scheduler, pipeline_decoder_output(pipe))

    def __call__(
        self,
        batch_size: int = 1,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
    ) -> VAEBMPipelineOutput:
        if output_type not in ("np", "pt"):
            raise ValueError(f"output_type must be 'np' or 'pt', got {output_type!r}")
        if num_inference_steps is None:
            num_inference_steps = self.scheduler.config.default_num_inference_steps
        if latents is None:
            latents = self.vae.sample_noise(
                batch_size, generator=generator, device=self.vae.device, dtype=self.vae.dtype
            )
        clip = IMAGE_RANGE if len(self.vae.data_shape) == 3 else None
        x = sample_x_space(
            self.vae, self.ebm, self.scheduler, latents, num_inference_steps,
            generator=generator, clip_range=clip, decoder_output=self.decoder_output,
        )  # fmt: skip
        return VAEBMPipelineOutput(images=samples_to_numpy(x) if output_type == "np" else x)
