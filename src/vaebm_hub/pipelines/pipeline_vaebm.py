"""``VAEBMPipeline``: short-run Langevin sampling of VAEBM in the VAE's noise space, as a diffusers pipeline."""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, ModelMixin, SchedulerMixin
from diffusers.utils import logging, replace_example_docstring
from huggingface_hub import constants as hub_constants
from huggingface_hub import snapshot_download
from huggingface_hub.errors import (
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from ..constants import HUB_ALLOW_PATTERNS, LIBRARY_NAME
from ..models.layers import frozen, set_channels_last
from ..schedulers.scheduling_langevin import LangevinScheduler
from ..utils import as_count, as_real, eval_mode
from .checks import remote_code_components, verify_saved_pipeline
from .decoding import check_decoder_output, decode_noise, pipeline_decoder_output
from .langevin_chain import NonFiniteChainError, finite_chain_indices, langevin_chain
from .output import VAEBMPipelineOutput, samples_to_numpy
from .potential import POTENTIALS, potential_and_grad, vaebm_potential

__all__ = ["NonFiniteChainError", "VAEBMPipeline", "VAEBMPipelineOutput"]

logger = logging.get_logger(__name__)
OUTPUT_TYPES = ("pil", "np", "pt", "latent")
TEMPERATURE_RANGE = (0.0, 10.0)  # the prior's temperature t: above 10 the VAE's samples are noise


# The chain state is noise, ~N(0, I) under the prior: a coordinate beyond this has diverged, even if still finite.
NOISE_DIVERGENCE_BOUND = 1e4
# ``from_pretrained`` arguments that also apply to loading one model component.
MODEL_LOADING_KWARGS = ("dtype", "torch_dtype", "variant", "low_cpu_mem_usage", "use_safetensors")
# ``from_pretrained`` arguments that only concern finding the files (used by :meth:`VAEBMPipeline.download`).
HUB_DOWNLOAD_KWARGS = ("revision", "cache_dir", "token", "force_download", "local_files_only")

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from vaebm_hub import LangevinScheduler, VAEBMEnergyModel, VAEBMPipeline, VAEBMVAE

        >>> pipe = VAEBMPipeline(vae=VAEBMVAE(), ebm=VAEBMEnergyModel(), scheduler=LangevinScheduler(step_size=5e-3))
        >>> generator = torch.Generator().manual_seed(0)
        >>> out = pipe(batch_size=4, num_inference_steps=5, generator=generator, output_type="np")
        >>> out.images.shape
        (4, 8, 8, 1)
        ```
"""


class VAEBMPipeline(DiffusionPipeline):
    r"""Sample VAEBM ``h(x, z) ∝ p_theta(x, z) exp(-E_psi(x))`` by Langevin dynamics in the VAE's noise space.

    Components:
        vae ([`VAEBMVAE`] or [`VAEBMMLPVAE`]): the (frozen) VAE ``p_theta``; defines ``eps -> (z, x)``.
        ebm ([`VAEBMEnergyModel`] or [`VAEBMEnergyMLP`]): the energy network ``E_psi(x)`` on data in ``[0, 1]``.
        scheduler ([`LangevinScheduler`]): step sizes, noise scale, optional MALA correction.
        potential (`str`): ``"exact"`` (the paper's ``E + |eps|^2 / 2``) or ``"official"`` (the released code's
            ``E - log p(z) - log p(x|z)`` with its clamps); see :mod:`vaebm_hub.pipelines.potential`.
        pixel_noise (`bool`): whether the chain moves the decoder's pixel noise ``eps_x`` with ``eps_z`` (the
            paper; the energy network then sees decoder samples ``T_x(z, eps_x)``). ``False`` runs the chain on
            ``eps_z`` alone and the energy network sees the decoder mean, which is also what the pipeline returns:
            the choice for decoders whose noise is wide compared with the data's detail (e.g. the 2-D toy, where
            moving ``eps_x`` lowers ``E`` in a direction the returned mean never shows). Decoders without pixel
            noise (Bernoulli, logistic mixture) always run on ``eps_z``.
        decoder_output (`str`): what the images are at the chain's final state: ``"mean"`` (VAEBM and its official
            code: the decoder mean of the final ``z``; ``eps_x`` is discarded) or ``"sample"`` (not in VAEBM: the
            decoder's sample ``T_x(z, eps_x)`` at the final ``eps_x``, the ``x`` of the joint sample that the energy
            network scored; needs ``pixel_noise``). See the ``digits`` preset for when it is the better choice.

    ``num_inference_steps=0`` returns plain VAE samples, the baseline VAEBM improves on.
    """

    model_cpu_offload_seq = "vae->ebm"
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        vae: ModelMixin,
        ebm: ModelMixin,
        scheduler: LangevinScheduler,
        potential: str = "exact",
        pixel_noise: bool = True,
        decoder_output: str = "mean",
    ) -> None:
        super().__init__()
        if potential not in POTENTIALS:
            raise ValueError(f"potential must be one of {POTENTIALS}, got {potential!r}")
        check_decoder_output(decoder_output, bool(pixel_noise), vae)
        self.register_modules(vae=vae, ebm=ebm, scheduler=scheduler)
        self.register_to_config(potential=potential, pixel_noise=bool(pixel_noise), decoder_output=decoder_output)

    def register_to_config(self, **kwargs) -> None:
        """Record our components as ``["vaebm_hub", Class]`` (not the internal module path), so that reorganising
        the package never breaks saved pipelines."""
        for name, value in kwargs.items():
            if isinstance(value, (tuple, list)) and len(value) == 2 and str(value[0]).startswith(LIBRARY_NAME + "."):
                kwargs[name] = (LIBRARY_NAME, value[1])
        super().register_to_config(**kwargs)

    @classmethod
    def from_pipe(cls, pipeline: DiffusionPipeline, **kwargs) -> VAEBMPipeline:
        """A new pipeline on the components of ``pipeline`` (no copies), as diffusers' ``from_pipe``; keyword
        arguments replace components (``vae``, ``ebm``, ``scheduler``) or settings (``potential``, ``pixel_noise``,
        ``decoder_output``). A setting the source's config lacks (a pipeline saved before it existed) takes
        ``__init__``'s default.

        diffusers' own version matches components by their exact annotated type, which the ``ModelMixin``
        annotations here (any VAE / energy network class, also the remote-code copies) never are."""
        components = {name: kwargs.pop(name, component) for name, component in pipeline.components.items()}
        settings = {  # as diffusers splits them: the defaulted parameters, less optional modules
            name: kwargs.pop(name, pipeline.config.get(name, param.default))
            for name, param in inspect.signature(cls.__init__).parameters.items()
            if param.default is not inspect.Parameter.empty and name not in cls._optional_components
        }
        if kwargs:
            raise TypeError(f"from_pipe got unexpected arguments {sorted(kwargs)}; pass components or settings")
        new = cls(**components, **settings)
        new.set_progress_bar_config(**getattr(pipeline, "_progress_bar_config", {}))
        return new

    @classmethod
    def download(cls, pretrained_model_name: str | os.PathLike, **kwargs) -> str:
        """Fetch a saved pipeline from the Hub with ``snapshot_download`` (the files of a saved pipeline only).

        diffusers' own ``download`` refuses repos whose ``model_index.json`` names a library other than diffusers or
        transformers; this override makes ``VAEBMPipeline.from_pretrained("<hub id>")`` work. Honours
        ``revision``, ``cache_dir``, ``token``, ``force_download``, ``local_files_only`` and ``HF_HUB_OFFLINE``.
        """
        if os.path.isdir(pretrained_model_name):
            return os.fspath(pretrained_model_name)
        name = str(pretrained_model_name)
        try:
            validate_repo_id(name)
        except HFValidationError as error:  # diffusers' own message for this case
            raise ValueError(
                f'The provided pretrained_model_name_or_path "{name}" is neither a valid local path nor a valid repo '
                "id. Please check the parameter."
            ) from error
        try:
            return snapshot_download(
                name,
                revision=kwargs.get("revision"),
                cache_dir=kwargs.get("cache_dir"),
                token=kwargs.get("token"),
                force_download=kwargs.get("force_download", False),
                local_files_only=kwargs.get("local_files_only", False) or hub_constants.HF_HUB_OFFLINE,
                allow_patterns=HUB_ALLOW_PATTERNS,
            )
        except (LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as error:
            offline = " (HF_HUB_OFFLINE is set: only cached repos load)" if hub_constants.HF_HUB_OFFLINE else ""
            raise OSError(
                f"Cannot load model {name}: it is not a local folder, and the Hub repo is not cached locally or not "
                f"reachable{offline}: {error}"
            ) from error

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> VAEBMPipeline:
        """Load a saved pipeline from a folder or a Hub id (see :meth:`download`), after checking that every
        component's config and safetensors weights are present, complete and consistent."""
        path = pretrained_model_name_or_path
        if not os.path.isdir(path):
            path = cls.download(path, **kwargs)
        verify_saved_pipeline(path, variant=kwargs.get("variant"))
        remote = remote_code_components(path)
        if remote:
            return cls._from_published_layout(path, remote, pretrained_model_name_or_path, kwargs)
        return super().from_pretrained(path, **kwargs)

    @classmethod
    def _from_published_layout(cls, path, remote: dict[str, str], source, kwargs: dict) -> VAEBMPipeline:
        """Load the remote-code layout that published pipelines use (generated code beside each component) with
        this package's own classes, without running the code files: they are generated from these classes.
        diffusers' loader would insist on ``trust_remote_code``, so the pipeline is assembled here."""
        package = importlib.import_module(LIBRARY_NAME)
        model_kwargs = {k: kwargs.pop(k) for k in MODEL_LOADING_KWARGS if k in kwargs}
        parameters = inspect.signature(cls.__init__).parameters
        init = {k: v for k, v in cls.load_config(path).items() if k in parameters and k not in remote}
        for name, class_name in remote.items():
            if name not in kwargs:
                component_class = getattr(package, class_name)
                extra = {} if issubclass(component_class, SchedulerMixin) else model_kwargs
                init[name] = component_class.from_pretrained(path, subfolder=name, **extra)
        init.update({k: kwargs.pop(k) for k in list(kwargs) if k in parameters})
        ignored = sorted(set(kwargs) - set(HUB_DOWNLOAD_KWARGS))
        if ignored:
            logger.warning(f"Keyword arguments {ignored} are not expected by {cls.__name__} and will be ignored.")
        pipe = cls(**init)
        pipe.register_to_config(_name_or_path=str(source))
        return pipe

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        push_to_hub: bool = False,
        **kwargs,
    ) -> None:
        """diffusers' ``save_pretrained``; with ``push_to_hub=True`` the upload goes through :meth:`push_to_hub`,
        which sends this pipeline's safetensors, configs and model card only — never the rest of the folder
        (``checkpoint-*``, optimizer and RNG states, logs) — and keeps a card already in the folder."""
        hub_names = ("repo_id", "token", "private", "commit_message", "api")
        hub_kwargs = {k: kwargs.pop(k) for k in hub_names if k in kwargs}
        super().save_pretrained(save_directory, safe_serialization=safe_serialization, variant=variant, **kwargs)
        if push_to_hub:
            repo_id = hub_kwargs.pop("repo_id", None) or Path(save_directory).resolve().name
            self.push_to_hub(repo_id, variant=variant, folder=save_directory, **hub_kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool = False,
        token: str | None = None,
        variant: str | None = None,
        card=None,
        api=None,
        folder: str | os.PathLike | None = None,
        **kwargs,
    ) -> str:
        """Upload this pipeline's safetensors, configs and model card (nothing else) to ``repo_id``.

        The token comes from ``token``, ``HF_TOKEN`` or the stored login; ``api`` takes an ``HfApi``-like object
        (used by the tests). With ``HF_HUB_OFFLINE=1`` this fails at once with a clear error.
        """
        # Imported here, not at the top: the remote-code export turns this import into an ImportError that says
        # publishing needs the installed package, instead of bundling the Hub code into every exported pipeline.
        from ..hub import push_pipeline

        return push_pipeline(
            self if folder is None else folder, repo_id, token=token, private=private,
            commit_message=commit_message, card=card, api=api, variant=variant,
        )  # fmt: skip

    def enable_channels_last(self) -> None:
        """Run the VAE's and the energy network's convolutions in channels-last memory layout.

        On CPU a Langevin step gets 1.3-1.75x faster (digits to 64x64 sizes, ``benchmarks/sampler.py``); outputs
        agree with the default layout to float32 rounding and the weights (and what ``save_pretrained`` writes) are
        unchanged.
        """
        set_channels_last(self.vae, True)
        set_channels_last(self.ebm, True)

    def disable_channels_last(self) -> None:
        """Back to torch's default memory layout (see :meth:`enable_channels_last`)."""
        set_channels_last(self.vae, False)
        set_channels_last(self.ebm, False)

    def enable_torch_compile(self, **compile_kwargs) -> None:
        """Run the Langevin potential — decoder, energy network and ``U`` — through ``torch.compile`` (its gradient
        to the noise then runs as the compiled backward); ``compile_kwargs`` go to ``torch.compile`` (default
        ``dynamic=False``; e.g. ``mode="max-autotune"``).

        The first call for each batch size compiles (1-2 minutes for the digits and CIFAR-size models on one CPU
        core), later ones reuse it; outputs agree with eager to float32 rounding, the weights and what
        ``save_pretrained`` writes are unchanged. On top of :meth:`enable_channels_last` it multiplies a CPU step's
        time by 0.73 (digits size) to 0.95 (CIFAR and 64x64 sizes; ``benchmarks/sampler.py``); inductor on CPU needs a
        C++ compiler.
        """
        self._potential_fn = torch.compile(vaebm_potential, **{"dynamic": False, **compile_kwargs})

    def disable_torch_compile(self) -> None:
        """Back to the eager potential (see :meth:`enable_torch_compile`)."""
        self._potential_fn = vaebm_potential

    # ------------------------------------------------------------------ input checks
    def check_inputs(
        self,
        batch_size: int,
        num_inference_steps: int,
        step_size: float | None,
        temperature: float,
        generator,
        latents: torch.Tensor | None,
        output_type: str,
        potential: str,
        pixel_noise: bool,
        decoder_output: str,
        callback_on_step_end_tensor_inputs: list[str],
    ) -> None:
        if not callable(getattr(self.scheduler, "metropolis_accept", None)):  # duck-typed: remote code copies classes
            raise TypeError(
                f"VAEBMPipeline samples with a LangevinScheduler, got {type(self.scheduler).__name__} (diffusers "
                "noise schedulers denoise; they cannot run a Langevin chain). Use LangevinScheduler.from_config(...) "
                "or LangevinScheduler(step_size=...)."
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if num_inference_steps < 0:
            raise ValueError(
                f"num_inference_steps must be an integer >= 0 (0 = plain VAE samples), got {num_inference_steps!r}"
            )
        if step_size is not None and not (math.isfinite(step_size) and step_size > 0):
            raise ValueError(f"step_size must be > 0 and finite, got {step_size!r}")
        if step_size is not None and self.scheduler.config.snr is not None:
            raise ValueError(
                f"step_size={step_size} has no effect: the scheduler sets its step size adaptively (snr="
                f"{self.scheduler.config.snr}). Drop step_size, or use a scheduler with snr=None."
            )
        if not TEMPERATURE_RANGE[0] < temperature <= TEMPERATURE_RANGE[1]:
            raise ValueError(
                f"temperature must be in ({TEMPERATURE_RANGE[0]:g}, {TEMPERATURE_RANGE[1]:g}] (1 = the paper's "
                f"sampling setting), got {temperature!r}"
            )
        if generator is not None and not isinstance(generator, (torch.Generator, list)):
            raise TypeError(
                f"generator must be a torch.Generator (or a list of them), got {type(generator).__name__}; "
                "e.g. generator=torch.Generator().manual_seed(0)"
            )
        if potential not in POTENTIALS:
            raise ValueError(f"potential must be one of {POTENTIALS}, got {potential!r}")
        check_decoder_output(decoder_output, pixel_noise, self.vae)
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"got {len(generator)} generators for batch_size={batch_size}; pass one per sample")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if output_type == "pil" and len(self.vae.data_shape) != 3:
            raise ValueError("output_type='pil' needs image data; this VAE models vectors, use 'np' or 'pt'")
        if latents is not None:
            width = self.vae.noise_dim_for(pixel_noise)
            if tuple(latents.shape) != (batch_size, width):
                name = "vae.noise_dim" if width == self.vae.noise_dim else "vae.latent_dim (pixel_noise=False)"
                raise ValueError(
                    f"latents must have shape ({batch_size}, {width}) = (batch_size, {name}), "
                    f"got {tuple(latents.shape)}"
                )
            if not torch.isfinite(latents).all():
                raise ValueError("latents contain NaN or Inf values")
        unknown = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(f"callback tensor inputs {sorted(unknown)} are not in {self._callback_tensor_inputs}")

    @property
    def num_timesteps(self) -> int:
        """Langevin steps of the current (or last) call."""
        return getattr(self, "_num_timesteps", 0)

    @property
    def interrupt(self) -> bool:
        """Set ``pipe._interrupt = True`` (e.g. from a callback) to stop the chain after the current step."""
        return getattr(self, "_interrupt", False)

    def prepare_latents(self, batch_size: int, generator, latents: torch.Tensor | None, pixel_noise: bool):
        """The chain's start ``eps``, float32 on the execution device: ``latents``, or ``N(0, I)`` noise."""
        device = self._execution_device
        if latents is None:
            return self.vae.sample_noise(
                batch_size, generator=generator, device=device, dtype=torch.float32, pixel_noise=pixel_noise
            )
        return latents.to(device=device, dtype=torch.float32)

    def _step_callback(self, callback_on_step_end: Callable | None, tensor_inputs: list[str]):
        """The chain's callback for diffusers' ``callback_on_step_end(pipe, step, timestep, tensors) -> dict``."""
        if callback_on_step_end is None:
            return None

        def callback(i: int, t: torch.Tensor, latents: torch.Tensor) -> torch.Tensor | None:
            tensors = {"latents": latents}
            returned = callback_on_step_end(self, i, t, {name: tensors[name] for name in tensor_inputs}) or {}
            if "latents" not in returned:
                return None
            replaced = returned["latents"]
            if not isinstance(replaced, torch.Tensor) or replaced.shape != latents.shape:
                shape = tuple(replaced.shape) if isinstance(replaced, torch.Tensor) else type(replaced).__name__
                raise ValueError(
                    f"callback_on_step_end returned latents of shape {shape} at step {i}; it must return a tensor of "
                    f"the chain's shape {tuple(latents.shape)} (or no 'latents' key to leave the chain as it is)"
                )
            return replaced.to(latents.device, torch.float32)

        return callback

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        batch_size: int | None = None,
        num_inference_steps: int | None = None,
        step_size: float | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        potential: str | None = None,
        pixel_noise: bool | None = None,
        decoder_output: str | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[[DiffusionPipeline, int, int, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        return_energy_trace: bool = False,
        drop_nonfinite: bool = False,
    ) -> VAEBMPipelineOutput | tuple:
        r"""Draw ``batch_size`` samples by ``num_inference_steps`` Langevin steps on ``U(eps)``.

        Args:
            batch_size: number of chains (images); default 1, or the number of rows of ``latents``.
            num_inference_steps: chain length ``K``; ``None`` = the scheduler's default, ``0`` = plain VAE samples.
            step_size: override the scheduler's (first) step size ``eta``.
            temperature: prior temperature ``t`` of the VAE (1 = the paper's sampling setting).
            generator: a ``torch.Generator`` (or one per sample) for the initial noise and every Langevin draw.
            latents: initial noise ``eps`` of shape ``(batch_size, vae.noise_dim)`` (``vae.latent_dim`` without
                pixel noise); drawn from ``N(0, I)`` if None.
            potential: override the pipeline's ``"exact"`` / ``"official"`` potential for this call.
            pixel_noise: override the pipeline's ``pixel_noise`` (chains on ``(eps_z, eps_x)`` or ``eps_z`` alone).
            decoder_output: override the pipeline's ``decoder_output`` (``"mean"`` or ``"sample"``).
            output_type: ``"pil"``, ``"np"`` (``(B, H, W, C)`` floats in [0, 1]), ``"pt"`` (``(B, C, H, W)``) or
                ``"latent"`` (the final ``eps``).
            return_dict: return a [`VAEBMPipelineOutput`] instead of a tuple.
            callback_on_step_end: ``fn(pipe, step, timestep, {"latents": eps}) -> dict`` after each step; returning
                ``{"latents": ...}`` replaces the chain state.
            callback_on_step_end_tensor_inputs: tensors passed to the callback (only ``"latents"``).
            return_energy_trace: also return the energies ``E(x)`` at every chain state, ``(K + 1, B)``.
            drop_nonfinite: drop chains that reached NaN/Inf instead of raising :class:`NonFiniteChainError`.

        Examples:

        The chain state and its arithmetic are float32 whatever the networks' dtype (a half-precision state would
        round most Langevin steps away). The images are the decoder mean of the final ``z``, mapped to ``[0, 1]``
        as ``clamp(mu / 2 + 1/2, 0, 1)`` (the official script instead min-max rescales every image; we do not), or
        with ``decoder_output="sample"`` the decoder's sample at the final ``(z, eps_x)``, clamped to ``[0, 1]``.
        """
        if latents is not None and not isinstance(latents, torch.Tensor):
            latents = torch.as_tensor(np.asarray(latents, dtype=np.float32))  # numpy (or nested lists) accepted
        if batch_size is None:
            batch_size = 1 if latents is None else len(latents)  # as diffusers infers it from given latents
        batch_size = as_count(batch_size, "batch_size")
        num_inference_steps = (
            None if num_inference_steps is None else as_count(num_inference_steps, "num_inference_steps")
        )
        step_size = None if step_size is None else as_real(step_size, "step_size")
        temperature = as_real(temperature, "temperature")
        if num_inference_steps is None:
            num_inference_steps = getattr(self.scheduler.config, "default_num_inference_steps", 0)
        potential = self.config.potential if potential is None else potential
        pixel_noise = self.config.pixel_noise if pixel_noise is None else bool(pixel_noise)
        decoder_output = pipeline_decoder_output(self) if decoder_output is None else decoder_output
        tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        self.check_inputs(
            batch_size, num_inference_steps, step_size, temperature, generator, latents, output_type, potential,
            pixel_noise, decoder_output, tensor_inputs,
        )  # fmt: skip
        self._num_timesteps, self._interrupt = num_inference_steps, False

        scheduler = self.scheduler
        if step_size is not None:
            scheduler = LangevinScheduler.from_config(scheduler.config, step_size=step_size)
        scheduler.set_timesteps(num_inference_steps, device=self._execution_device)
        latents = self.prepare_latents(batch_size, generator, latents, pixel_noise)
        with eval_mode(self.vae, self.ebm), frozen(self.vae, self.ebm):
            chain = langevin_chain(
                functools.partial(
                    potential_and_grad,
                    self.vae,
                    self.ebm,
                    temperature=temperature,
                    potential=potential,
                    potential_fn=getattr(self, "_potential_fn", vaebm_potential),
                ),
                latents,
                scheduler,
                generator=generator,
                callback=self._step_callback(callback_on_step_end, tensor_inputs),
                max_abs=NOISE_DIVERGENCE_BOUND,
                return_energy_trace=return_energy_trace,
                progress_bar=self.progress_bar if num_inference_steps > 0 else None,
                interrupted=lambda: self.interrupt,
            )
            kept = finite_chain_indices(chain.finite, drop_nonfinite)
            latents = chain.state[kept]
            images = latents if output_type == "latent" else self.decode(latents, temperature, decoder_output)

        energy_trace = chain.energy_trace[:, kept] if return_energy_trace else None
        images = self._postprocess(images, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images, energy_trace)
        return VAEBMPipelineOutput(images=images, energy_trace=energy_trace, kept=kept)

    @torch.no_grad()
    def decode(
        self, latents: torch.Tensor, temperature: float = 1.0, decoder_output: str | None = None
    ) -> torch.Tensor:
        """The images (``(B, C, H, W)`` in [0, 1]) of chain states ``latents``, as ``__call__`` returns them: the
        decoder mean of ``z``, or with ``decoder_output="sample"`` (default: the pipeline's) its sample at
        ``(z, eps_x)``. For callbacks that show a chain's intermediate states."""
        decoder_output = pipeline_decoder_output(self) if decoder_output is None else decoder_output
        return decode_noise(self.vae, latents, decoder_output, temperature)

    def _postprocess(self, images: torch.Tensor, output_type: str):
        if output_type in ("latent", "pt"):
            return images
        array = samples_to_numpy(images)
        return self.numpy_to_pil(array) if output_type == "pil" else array

    # ------------------------------------------------------------------ scoring (OOD detection)
    def _as_batch(self, images) -> torch.Tensor:
        """Images for scoring: a tensor or array ``(B, C, H, W)`` in [0, 1], or PIL images (as diffusers users pass
        them), checked against the VAE; an empty batch is an error."""
        if isinstance(images, PIL.Image.Image):
            images = [images]
        if isinstance(images, (list, tuple)) and images and all(isinstance(i, PIL.Image.Image) for i in images):
            mode = "L" if self.vae.data_shape[0] == 1 else "RGB"
            arrays = [np.asarray(i.convert(mode), dtype=np.float32) / 255.0 for i in images]
            images = np.stack([a[None] if a.ndim == 2 else a.transpose(2, 0, 1) for a in arrays])
        images = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        if images.numel() == 0 or images.dim() == 0:
            raise ValueError(f"no images to score (got a batch of shape {tuple(images.shape)})")
        images = images.to(device=self._execution_device, dtype=self.vae.dtype)
        self.vae.check_images(images)
        return images

    @staticmethod
    def _finite_scores(scores: torch.Tensor, what: str) -> torch.Tensor:
        """The sampling NaN policy for scores: NaN/Inf is an error, never a number passed on (e.g. into an AUROC)."""
        if not bool(torch.isfinite(scores).all()):
            bad = int((~torch.isfinite(scores)).sum())
            raise NonFiniteChainError(
                f"{bad} of {scores.numel()} {what} are NaN/Inf: the weights hold non-finite values (check the "
                "checkpoint, or the training run's divergence guard)."
            )
        return scores

    @torch.no_grad()
    def energy(self, images: torch.Tensor) -> torch.Tensor:
        """Energies ``E_psi(x)`` (B,) of images in ``[0, 1]`` (low = data-like)."""
        images = self._as_batch(images)
        with eval_mode(self.ebm):
            return self._finite_scores(self.ebm(images, check_finite=False), "energies")

    @torch.no_grad()
    def log_density(
        self,
        images: torch.Tensor,
        method: str = "elbo",
        num_samples: int = 16,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Unnormalised ``log h(x) = log p_vae(x) - E(x)`` (B,), the paper's out-of-distribution score.

        ``log p_vae`` is the ELBO (``method="elbo"``) or the importance-weighted bound with ``num_samples``
        posterior samples (``"iwae"``). The normaliser ``log Z`` is omitted: it cancels in AUROC and rankings.
        """
        images = self._as_batch(images)
        with eval_mode(self.vae, self.ebm):
            if method == "elbo":
                log_p = self.vae.elbo(images, generator=generator)
            elif method == "iwae":
                log_p = self.vae.importance_weighted_log_likelihood(images, num_samples, generator=generator)
            else:
                raise ValueError(f"method must be 'elbo' or 'iwae', got {method!r}")
            return self._finite_scores(log_p - self.ebm(images, check_finite=False), "log-densities")
