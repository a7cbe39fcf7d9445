"""The VAEBM pipeline and its Langevin potential."""

from .pipeline_vaebm import NonFiniteChainError, VAEBMPipeline, VAEBMPipelineOutput
from .potential import POTENTIALS, PotentialOutput, potential_and_grad, vaebm_potential

__all__ = [
    "NonFiniteChainError",
    "POTENTIALS",
    "PotentialOutput",
    "VAEBMPipeline",
    "VAEBMPipelineOutput",
    "potential_and_grad",
    "vaebm_potential",
]
