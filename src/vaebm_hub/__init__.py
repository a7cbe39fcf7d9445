"""vaebm_hub — VAEBM (Xiao, Kreis, Kautz & Vahdat, ICLR 2021) as a Hugging Face diffusers plugin.

Submodules are imported eagerly: diffusers 0.42.1 resolves the ``"vaebm_hub"`` library named in a saved
``model_index.json`` from ``sys.modules`` only, and looks up ``ModelMixin`` / ``SchedulerMixin`` as attributes of
this module to pick the loading method.
"""

from diffusers import ModelMixin, SchedulerMixin  # noqa: F401  (looked up here by diffusers' loader)

from .models import VAEBMMLPVAE, VAEBMVAE, VAEBMEnergyMLP, VAEBMEnergyModel
from .pipelines import NonFiniteChainError, VAEBMPipeline, VAEBMPipelineOutput
from .schedulers import LangevinScheduler, LangevinSchedulerOutput

__version__ = "0.1.0"

__all__ = [
    "LangevinScheduler",
    "LangevinSchedulerOutput",
    "NonFiniteChainError",
    "VAEBMEnergyMLP",
    "VAEBMEnergyModel",
    "VAEBMMLPVAE",
    "VAEBMPipeline",
    "VAEBMPipelineOutput",
    "VAEBMVAE",
    "__version__",
]
