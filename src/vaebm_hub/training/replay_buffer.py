"""VAEBM's replay buffer of persistent Langevin chains: final ``eps_z`` vectors, FIFO, stored on the CPU.

Each training chain starts from a stored ``eps_z`` with probability ``p(step) = min(p_max, p_max * step / anneal)``
(fresh ``N(0, I)`` otherwise); the pixel noise ``eps_x`` is always fresh (vaebm_reference.md §1).
"""

from __future__ import annotations

import torch


def replay_probability(step: int, max_prob: float, anneal_steps: int) -> float:
    """``min(p_max, p_max * step / anneal_steps)``; ``anneal_steps <= 0`` means no annealing (``p_max``)."""
    if anneal_steps <= 0:
        return max_prob
    return min(max_prob, max_prob * step / anneal_steps)


class ReplayBuffer:
    """A FIFO of at most ``capacity`` vectors of size ``dim``; pushing past capacity drops the oldest first."""

    def __init__(self, capacity: int, dim: int) -> None:
        if capacity < 1 or dim < 1:
            raise ValueError(f"buffer capacity and dim must be >= 1, got {capacity} and {dim}")
        self.capacity = capacity
        self.dim = dim
        self._storage = torch.empty(0, dim)

    def __len__(self) -> int:
        return self._storage.shape[0]

    def push(self, items: torch.Tensor) -> None:
        """Append ``items`` (B, dim) (copied to the CPU) and keep the newest ``capacity`` rows."""
        if items.dim() != 2 or items.shape[1] != self.dim:
            raise ValueError(f"expected items of shape (B, {self.dim}), got {tuple(items.shape)}")
        merged = torch.cat([self._storage, items.detach().to("cpu", torch.float32)])
        self._storage = merged[-self.capacity :].clone()

    def contents(self) -> torch.Tensor:
        """All stored rows, oldest first (N, dim)."""
        return self._storage.clone()

    def replace_rows(self, fresh: torch.Tensor, prob: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Replace each row of ``fresh`` (B, dim) by a stored row with probability ``prob``.

        The replayed rows are chosen uniformly without replacement (with replacement only if more rows are
        requested than stored). An empty buffer returns ``fresh`` unchanged. Draws come from ``generator`` (CPU).
        """
        if len(self) == 0 or prob <= 0:
            return fresh
        batch = fresh.shape[0]
        mask = torch.rand(batch, generator=generator) < prob
        count = int(mask.sum())
        if count == 0:
            return fresh
        if count <= len(self):
            index = torch.randperm(len(self), generator=generator)[:count]
        else:
            index = torch.randint(len(self), (count,), generator=generator)
        out = fresh.clone()
        out[mask.to(fresh.device)] = self._storage[index].to(device=fresh.device, dtype=fresh.dtype)
        return out

    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "dim": self.dim, "storage": self._storage.clone()}

    def load_state_dict(self, state: dict) -> None:
        if state["dim"] != self.dim:
            raise ValueError(f"replay buffer in the checkpoint holds vectors of size {state['dim']}, not {self.dim}")
        self._storage = state["storage"][-self.capacity :].clone()
