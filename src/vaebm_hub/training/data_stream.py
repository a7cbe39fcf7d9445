"""An endless, resumable stream of training batches, sharded over processes.

Batches are a pure function of ``(seed, micro-step, process)``: epoch ``e`` visits the dataset in the order
``randperm(N)`` drawn from a generator seeded with ``seed + e``, cut into global batches of ``batch_size *
num_processes`` (the incomplete tail is dropped), and process ``r`` takes the ``r``-th slice of each. Resuming at
micro-step ``m`` therefore yields exactly the batches an uninterrupted run would have seen, with no sampler state to
save. Random horizontal flips are drawn here for the same reason, from a generator seeded per ``(micro-step,
process)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset


class ShardedBatchSampler:
    """Index lists for one process, from micro-step ``start`` on (endless)."""

    def __init__(
        self, num_samples: int, batch_size: int, seed: int, process_index: int, num_processes: int, start: int = 0
    ) -> None:
        self.per_epoch = num_samples // (batch_size * num_processes)
        if self.per_epoch == 0:
            raise ValueError(
                f"The dataset has {num_samples} samples, fewer than one global batch (train_batch_size {batch_size} "
                f"x {num_processes} process(es)); lower --train_batch_size or use more data."
            )
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.process_index, self.num_processes, self.start = process_index, num_processes, start

    def indices(self, micro_step: int) -> list[int]:
        epoch, position = divmod(micro_step, self.per_epoch)
        order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + epoch))
        first = (position * self.num_processes + self.process_index) * self.batch_size
        return order[first : first + self.batch_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        micro_step = self.start
        while True:
            yield self.indices(micro_step)
            micro_step += 1


def random_hflip(batch: torch.Tensor, seed: int) -> torch.Tensor:
    """Mirror each image of ``batch`` (B, C, H, W) left-right with probability 1/2 (draws seeded by ``seed``)."""
    flip = torch.rand(batch.shape[0], generator=torch.Generator().manual_seed(seed)) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), batch.flip(-1), batch)


class BatchStream:
    """``next(stream)`` gives this process's next batch on ``device``; ``micro_step`` counts the batches taken."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        seed: int,
        process_index: int = 0,
        num_processes: int = 1,
        start: int = 0,
        num_workers: int = 0,
        random_flip: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        self.sampler = ShardedBatchSampler(len(dataset), batch_size, seed, process_index, num_processes, start)
        self.loader = iter(DataLoader(dataset, batch_sampler=self.sampler, num_workers=num_workers))
        self.micro_step = start
        self.random_flip = random_flip
        self.seed, self.process_index, self.num_processes = seed, process_index, num_processes
        self.device = torch.device(device)

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> torch.Tensor:
        batch = next(self.loader)
        if self.random_flip:
            flip_seed = (self.seed + 1) * 1_000_003 + self.micro_step * self.num_processes + self.process_index
            batch = random_hflip(batch, flip_seed)
        self.micro_step += 1
        return batch.to(self.device)
