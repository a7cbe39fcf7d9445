"""Training and evaluation data for vaebm_hub, all usable offline.

* ``load_array_dataset(name, split)`` — the built-ins (``BUILTIN_DATASETS``) as numpy ``(data, labels)``.
* ``build_train_dataset(...)`` — what the trainer iterates: a ``torch.utils.data.Dataset`` whose items are bare
  float32 tensors, ``(C, H, W)`` in ``[0, 1]`` for images or ``(2,)`` for ``gaussians25``; ``default_collate``
  stacks them into a batch. The dataset has a ``sample_shape`` attribute; check it against the model with
  ``validate_against(dataset, channels, sample_size)``.

Sources, mirroring diffusers' ``train_unconditional.py`` flags: a built-in name; any other ``--dataset_name`` through
``datasets.load_dataset(name, config, cache_dir=...)`` (a ``datasets.Dataset`` object is accepted too);
``--train_data_dir DIR`` through ``load_dataset("imagefolder", data_dir=DIR)``.
"""

from __future__ import annotations

from .build import build_image_dataset, build_train_dataset
from .builtin import (
    BUILTIN_DATASETS,
    GAUSSIANS25_GRID,
    GAUSSIANS25_SIGMA,
    gaussian_grid_centres,
    load_array_dataset,
    stack_channels,
)
from .torch_datasets import ArrayDataset, ImageDataset
from .transforms import ImageTransform
from .validation import IMAGE_EXTENSIONS, validate_against

__all__ = [
    "BUILTIN_DATASETS",
    "GAUSSIANS25_GRID",
    "GAUSSIANS25_SIGMA",
    "IMAGE_EXTENSIONS",
    "ArrayDataset",
    "ImageDataset",
    "ImageTransform",
    "build_image_dataset",
    "build_train_dataset",
    "gaussian_grid_centres",
    "load_array_dataset",
    "stack_channels",
    "validate_against",
]
