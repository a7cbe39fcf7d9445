"""The VAEBM pipeline, its Langevin potential, and the x-space Langevin sampler of the ablation."""

from .pipeline_vaebm import NonFiniteChainError, VAEBMPipeline, VAEBMPipelineOutput
from .potential import POTENTIALS, PotentialOutput, potential_and_grad, vaebm_potential
from .x_space import sample_x_space, x_space_chain

__all__ = [
    "NonFiniteChainError",
    "POTENTIALS",
    "PotentialOutput",
    "VAEBMPipeline",
    "VAEBMPipelineOutput",
    "potential_and_grad",
    "sample_x_space",
    "vaebm_potential",
    "x_space_chain",
]
