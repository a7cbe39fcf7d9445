"""Build the trainer's dataset from its data flags (built-in, Hub id, ``datasets.Dataset`` or image folder)."""

from __future__ import annotations

import os

import datasets

from .builtin import BUILTIN_DATASETS, load_array_dataset
from .hub import find_image_column, load_hub_dataset, load_imagefolder, scan_images
from .torch_datasets import ArrayDataset, ImageDataset
from .transforms import ImageTransform
from .validation import builtin_loader_options, check_data_source, resolve_image_shape


def build_image_dataset(
    hf_dataset: datasets.Dataset,
    *,
    resolution: int | None,
    channels: int | None,
    center_crop: bool = False,
    random_flip: bool = False,
    seed: int = 0,
) -> ImageDataset:
    """Wrap a Hugging Face image dataset; every header is read first so bad files and mixed shapes fail here.

    ``channels=None`` keeps the images' channel count (1 or 3) if they all agree; ``resolution=None`` keeps their
    size if they all agree. Otherwise: resize (shorter side) + centre/random crop to ``resolution``, and
    convert to grey/RGB by ``channels``.
    """
    column = find_image_column(hf_dataset)
    sizes, channel_counts = scan_images(hf_dataset, column)
    shape = resolve_image_shape(sizes, channel_counts, resolution=resolution, channels=channels)
    transform = ImageTransform(
        channels=shape[0], resolution=resolution, center_crop=center_crop, random_flip=random_flip
    )
    return ImageDataset(hf_dataset, column, transform, shape, seed=seed)


def build_train_dataset(
    dataset_name: str | datasets.Dataset | None,
    train_data_dir: str | os.PathLike | None,
    *,
    resolution: int | None,
    channels: int | None,
    center_crop: bool = False,
    random_flip: bool = False,
    dataset_config_name: str | None = None,
    cache_dir: str | None = None,
    split: str = "train",
    seed: int = 0,
) -> ArrayDataset | ImageDataset:
    """The training set for the trainer's ``--dataset_name`` / ``--train_data_dir`` / ``--resolution`` / ... flags.

    Exactly one of ``dataset_name`` and ``train_data_dir`` must be given. Built-ins are never resized (see
    ``validation.builtin_loader_options``; ``center_crop`` does not apply to them); ``seed`` also seeds the
    generated built-ins. Random crops/flips draw from a generator seeded with ``seed`` (per worker, see
    ``torch_datasets``). Raises ``ValueError`` for every bad input before any training starts.
    """
    check_data_source(dataset_name, train_data_dir)
    if isinstance(dataset_name, str) and dataset_name in BUILTIN_DATASETS:
        options = builtin_loader_options(
            dataset_name, resolution=resolution, channels=channels, random_flip=random_flip
        )
        data, _ = load_array_dataset(dataset_name, split, seed=seed, **options)
        return ArrayDataset(data, random_flip=random_flip, seed=seed)
    if train_data_dir is not None:
        hf_dataset = load_imagefolder(train_data_dir, split=split, cache_dir=cache_dir)
    elif isinstance(dataset_name, datasets.Dataset):
        hf_dataset = dataset_name
    else:
        hf_dataset = load_hub_dataset(dataset_name, dataset_config_name, split=split, cache_dir=cache_dir)
    return build_image_dataset(
        hf_dataset,
        resolution=resolution,
        channels=channels,
        center_crop=center_crop,
        random_flip=random_flip,
        seed=seed,
    )
