"""Out-of-distribution scores of a pipeline (-E, the ELBO, log h) and their AUROCs against OOD sets."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from .inputs import _check_count, channels_first, check_array
from .ood import auroc

SCORE_NAMES = ("energy", "vae_elbo", "log_h")


def _pipeline_inputs(pipe, data: object, name: str) -> np.ndarray:
    """``data`` in the layout the pipeline scores: (N, C, H, W) for image VAEs, (N, D) for vector VAEs."""
    if len(pipe.vae.data_shape) == 3:
        return channels_first(data, name)
    return check_array(data, name)


@torch.no_grad()
def ood_scores(
    pipe, images: np.ndarray, *, method: str = "elbo", batch_size: int = 250, seed: int = 0
) -> dict[str, np.ndarray]:
    """Per-example scores (N,) float64, each higher for more in-distribution inputs:

    * ``"energy"``: −E(x);
    * ``"vae_elbo"``: log p_vae(x), estimated by the ELBO (``method="elbo"``) or the IWAE bound (``"iwae"``);
    * ``"log_h"``: log p_vae(x) − E(x), VAEBM's unnormalised log-density (log Z cancels in AUROC).

    The posterior samples of the bound are drawn from one generator seeded with ``seed``.
    """
    batch_size = _check_count(batch_size, "batch_size", 1)
    if method not in ("elbo", "iwae"):
        raise ValueError(f"method must be 'elbo' or 'iwae', got {method!r}")
    data = torch.from_numpy(_pipeline_inputs(pipe, images, "images"))
    generator = torch.Generator().manual_seed(_check_count(seed, "seed", 0))
    log_h = [
        pipe.log_density(chunk, method=method, generator=generator).double().cpu() for chunk in data.split(batch_size)
    ]
    energy, log_h = _energies(pipe, data, batch_size), torch.cat(log_h).numpy()
    return {"energy": -energy, "vae_elbo": log_h + energy, "log_h": log_h}


@torch.no_grad()
def _energies(pipe, data: np.ndarray | torch.Tensor, batch_size: int) -> np.ndarray:
    """E(x) (N,) float64 of data in the pipeline's layout (see ``_pipeline_inputs``)."""
    data = torch.as_tensor(_pipeline_inputs(pipe, data, "images") if isinstance(data, np.ndarray) else data)
    return torch.cat([pipe.energy(chunk).double().cpu() for chunk in data.split(batch_size)]).numpy()


def ood_auroc(pipe, in_dist: np.ndarray, ood_sets: Mapping[str, np.ndarray], **kw) -> dict[str, dict[str, float]]:
    """``{ood set: {score: AUROC}}`` of in-distribution ``in_dist`` against each OOD set (``kw`` → ``ood_scores``);
    0.5 is chance, 1 a perfect detector."""
    if not ood_sets:
        raise ValueError("ood_sets is empty; pass e.g. {'uniform': evaluation.uniform_noise(images)}")
    scores_in = ood_scores(pipe, in_dist, **kw)
    results = {}
    for name, images in ood_sets.items():
        scores_out = ood_scores(pipe, images, **kw)
        results[name] = {score: auroc(scores_in[score], scores_out[score]) for score in SCORE_NAMES}
    return results
