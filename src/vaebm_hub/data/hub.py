"""Hugging Face ``datasets`` sources: a Hub id (or local dataset path), an image folder, and the image column."""

from __future__ import annotations

import io
import itertools
import os
from pathlib import Path

import datasets
from PIL import Image

from .builtin import BUILTIN_DATASETS
from .transforms import channels_of_mode
from .validation import check_image_dir

IMAGE_COLUMN_NAMES = ("image", "img")
_SCAN_BATCH_SIZE = 256


def load_hub_dataset(
    name: str, config_name: str | None = None, *, split: str = "train", cache_dir: str | None = None
) -> datasets.Dataset:
    """``datasets.load_dataset(name, config_name, split=split, cache_dir=cache_dir)`` with a clear error if absent.

    A folder written by ``Dataset.save_to_disk`` (or ``DatasetDict.save_to_disk``, then its ``split``) is read with
    ``datasets.load_from_disk``. Under ``HF_HUB_OFFLINE=1`` (or ``HF_DATASETS_OFFLINE=1``) ``datasets`` fails at
    once for anything not cached.
    """
    if is_saved_dataset(name):
        loaded = datasets.load_from_disk(name)
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"{name!r} is a saved DatasetDict without a {split!r} split (it has {list(loaded)}).")
            loaded = loaded[split]
        return loaded
    try:
        return datasets.load_dataset(name, config_name, split=split, cache_dir=cache_dir)
    except (ConnectionError, FileNotFoundError) as error:
        offline = (
            " Offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE), so only datasets already in the cache load."
            if datasets.config.HF_HUB_OFFLINE
            else ""
        )
        what = (
            "is a local path but holds no dataset that `datasets` can load"
            if os.path.exists(name)
            else f"is not a built-in ({', '.join(BUILTIN_DATASETS)}), not a local path, "
            "and not available from the Hugging Face Hub"
        )
        raise ValueError(
            f"Could not load --dataset_name {name!r}: it {what} ({error}).{offline} "
            "Fix: use a built-in name, pass --train_data_dir DIR for a folder of images, "
            "or a Hub id that is reachable or cached in --cache_dir."
        ) from error


def is_saved_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder written by ``save_to_disk`` (a ``Dataset`` or a ``DatasetDict``)."""
    root = Path(path)
    return root.is_dir() and any((root / name).is_file() for name in ("state.json", "dataset_dict.json"))


def load_imagefolder(
    data_dir: str | os.PathLike, *, split: str = "train", cache_dir: str | None = None
) -> datasets.Dataset:
    """``datasets.load_dataset("imagefolder", data_dir=data_dir)`` after checking the folder has images."""
    check_image_dir(data_dir)
    return datasets.load_dataset("imagefolder", data_dir=str(data_dir), split=split, cache_dir=cache_dir)


def find_image_column(dataset: datasets.Dataset) -> str:
    """The image column: ``image``, else ``img``, else the first column with a ``datasets.Image`` feature."""
    image_columns = [name for name, feature in dataset.features.items() if isinstance(feature, datasets.Image)]
    for name in (*IMAGE_COLUMN_NAMES, *image_columns):
        if name in image_columns:
            return name
    raise ValueError(
        f"The dataset has no image column (columns: {list(dataset.features)}); it needs a datasets.Image feature, "
        'e.g. dataset.cast_column("image", datasets.Image()).'
    )


def scan_images(dataset: datasets.Dataset, column: str) -> tuple[dict[tuple[int, int], str], dict[int, str]]:
    """Read every image header (no decoding) and return its distinct sizes ``(W, H)`` and channel counts.

    Each dict maps a distinct value to the first image that has it (its path, or ``row i``).
    """
    if len(dataset) == 0:
        raise ValueError("The dataset is empty; it needs at least one image.")
    raw = dataset.select_columns([column]).cast_column(column, datasets.Image(decode=False))
    items = itertools.chain.from_iterable(batch[column] for batch in raw.iter(batch_size=_SCAN_BATCH_SIZE))
    sizes: dict[tuple[int, int], str] = {}
    channel_counts: dict[int, str] = {}
    for row, item in enumerate(items):
        source = item["path"] or f"row {row}"
        try:
            with Image.open(item["path"] if item["bytes"] is None else io.BytesIO(item["bytes"])) as image:
                sizes.setdefault(image.size, source)
                channel_counts.setdefault(channels_of_mode(image.mode), source)
        except OSError as error:  # includes PIL.UnidentifiedImageError
            raise ValueError(f"Cannot read image {source!r} ({error}); remove or replace the file.") from error
    return sizes, channel_counts
