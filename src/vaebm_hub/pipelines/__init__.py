"""The VAEBM pipeline, its Langevin potential, and the x-space Langevin sampler of the ablation."""

from .langevin_chain import NonFiniteChainError, langevin_chain
from .output import VAEBMPipelineOutput
from .pipeline_vaebm import VAEBMPipeline
from .potential import POTENTIALS, PotentialOutput, potential_and_grad, vaebm_potential
from .x_space import sample_x_space, x_space_chain

__all__ = [
    "NonFiniteChainError",
    "POTENTIALS",
    "PotentialOutput",
    "VAEBMPipeline",
    "VAEBMPipelineOutput",
    "langevin_chain",
    "potential_and_grad",
    "sample_x_space",
    "vaebm_potential",
    "x_space_chain",
]
