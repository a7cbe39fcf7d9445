"""``torch.utils.data.Dataset`` wrappers. Every item is a bare float32 tensor: ``(C, H, W)`` in ``[0, 1]`` or ``(D,)``.

Random augmentations draw from a ``torch.Generator`` seeded with ``seed`` in the main process. Inside a DataLoader
worker it is reseeded once with ``get_worker_info().seed`` (derived from the DataLoader's own generator), so workers do
not repeat each other and a DataLoader built with a seeded ``generator`` gives the same batches on every run.
"""

from __future__ import annotations

import datasets
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from .transforms import ImageTransform, random_hflip


class _WorkerSeededGenerator:
    """A ``torch.Generator`` that is reseeded the first time it is used in each DataLoader worker."""

    def __init__(self, seed: int):
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._worker_id: int | None = None

    def get(self) -> torch.Generator:
        info = get_worker_info()
        worker_id = None if info is None else info.id
        if self._generator is None or worker_id != self._worker_id:
            self._generator = torch.Generator().manual_seed(self.seed if info is None else info.seed)
            self._worker_id = worker_id
        return self._generator


class ArrayDataset(Dataset):
    """In-memory samples ``data[i]`` (float32 array ``(N, *sample_shape)``), optionally mirrored at random."""

    def __init__(self, data: np.ndarray, *, random_flip: bool = False, seed: int = 0):
        self.data = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
        self.random_flip = random_flip
        self._rng = _WorkerSeededGenerator(seed)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> torch.Tensor:
        x = self.data[index]
        return random_hflip(x, self._rng.get()) if self.random_flip else x


class ImageDataset(Dataset):
    """Images of column ``image_column`` of a Hugging Face dataset, passed through ``transform``."""

    def __init__(
        self,
        hf_dataset: datasets.Dataset,
        image_column: str,
        transform: ImageTransform,
        sample_shape: tuple[int, int, int],
        *,
        seed: int = 0,
    ):
        self.hf_dataset = hf_dataset.select_columns([image_column])
        self.image_column = image_column
        self.transform = transform
        self.sample_shape = sample_shape
        self._rng = _WorkerSeededGenerator(seed)

    def __len__(self) -> int:
        return len(self.hf_dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.hf_dataset[int(index)][self.image_column], self._rng.get())
