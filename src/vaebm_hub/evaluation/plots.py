"""The evaluation report's figures: energy histograms (matplotlib, Agg) and labelled sample grids."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ..figures import grid_scale, sample_panels
from .inputs import channels_first, check_array

GRID_SIZE = 64  # images per panel of a sample grid (real | VAE | VAEBM)


def write_energy_histogram(path: str | os.PathLike, energies: Mapping[str, np.ndarray]) -> Path:
    """Overlaid, normalised histograms of the energies E(x) of each named set on shared bins (matplotlib, Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not energies:
        raise ValueError("energies is empty; pass e.g. {'real (test)': E_real, 'VAE': E_vae, 'VAEBM': E_vaebm}")
    arrays = {name: check_array(values, f"energies[{name!r}]").ravel() for name, values in energies.items()}
    bins = np.histogram_bin_edges(np.concatenate(list(arrays.values())), bins=40)
    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, values in arrays.items():
        axes.hist(values, bins=bins, density=True, alpha=0.5, label=f"{name} (n={len(values)})")
    axes.set_xlabel("energy E(x)  (lower = more data-like)")
    axes.set_ylabel("density")
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def write_sample_grid(path: str | os.PathLike, panels: Mapping[str, np.ndarray]) -> Path:
    """Labelled side-by-side panels (:func:`vaebm_hub.figures.sample_panels`): images as grids, 2-D points as
    histograms. Images may be channels-last or channels-first."""
    tensors = {
        name: torch.from_numpy(channels_first(x, name) if np.ndim(x) == 4 else check_array(x, name))
        for name, x in panels.items()
    }
    sizes = [x.shape[-1] for x in tensors.values() if x.dim() == 4]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sample_panels(tensors, scale=grid_scale(max(sizes)) if sizes else None).save(path)
    return path
