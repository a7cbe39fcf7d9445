"""Spectral regularisation by persistent power iteration (VAEBM's SR loss; NVAE's weight-norm regulariser)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def check_finite(x: torch.Tensor, name: str = "input") -> None:
    """Raise a ``ValueError`` if ``x`` holds NaN or Inf (a diverged sampler must not pass silently)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"The energy network got a {name} with NaN or Inf values; check the sampler's step size.")


class SpectralRegularizationMixin:
    """Spectral regularisation ``L_SR = sum_l u_l^T W_l v_l`` by persistent power iteration (VAEBM's SR loss).

    Each matrix ``W_l`` (from :meth:`_spectral_matrices`) is stacked with the matrices of the same shape, in order of
    first appearance, into a group ``(n_j, rows, cols)`` whose vectors ``u (n_j, rows)`` and ``v (n_j, cols)``
    persist between calls. One power iteration is ``v <- normalize(u^T W)`` then ``u <- normalize(W v)`` with
    ``normalize(a) = a / max(||a||, 1e-3)``. The loss keeps the graph through ``W`` and treats ``u, v`` as constants.
    The vectors are non-persistent buffers: they follow ``.to()`` but never enter ``state_dict``/safetensors.
    """

    _SR_EPS = 1e-3
    _SR_WARMUP_FACTOR = 10

    def _spectral_matrices(self) -> list[tuple[str, torch.Tensor]]:
        """``(module name, W (rows, cols))`` for every regularised layer, in module order."""
        raise NotImplementedError

    def _groups(self) -> dict[tuple[int, int], list[tuple[str, torch.Tensor]]]:
        groups: dict[tuple[int, int], list[tuple[str, torch.Tensor]]] = {}
        for name, matrix in self._spectral_matrices():
            groups.setdefault(tuple(matrix.shape), []).append((name, matrix))
        return groups

    def spectral_groups(self) -> list[tuple[tuple[int, int], list[str]]]:
        """``[((rows, cols), [member names]), ...]`` — the power-iteration groups, in order of first appearance."""
        return [(shape, [name for name, _ in members]) for shape, members in self._groups().items()]

    def _grouped_matrices(self) -> list[torch.Tensor]:
        """One ``(n_j, rows, cols)`` stack per group, in the order of :meth:`spectral_groups`."""
        return [torch.stack([matrix for _, matrix in members]) for members in self._groups().values()]

    def power_iteration_vectors(self) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
        """The current ``(u, v)`` per group; ``None`` before the first loss call or a set/reset."""
        if not getattr(self, "_sr_num_groups", 0):
            return None
        count = self._sr_num_groups
        return [getattr(self, f"sr_u_{j}") for j in range(count)], [getattr(self, f"sr_v_{j}") for j in range(count)]

    def set_power_iteration_vectors(self, u: Sequence[torch.Tensor], v: Sequence[torch.Tensor]) -> None:
        """Set the starting vectors (``u[j]: (n_j, rows)``, ``v[j]: (n_j, cols)``); the next call warms up again."""
        matrices = self._grouped_matrices()
        if len(u) != len(matrices) or len(v) != len(matrices):
            raise ValueError(
                f"Expected {len(matrices)} power-iteration groups, got {len(u)} u and {len(v)} v tensors."
            )
        for j, (weight, u_j, v_j) in enumerate(zip(matrices, u, v)):
            n, rows, cols = weight.shape
            if tuple(u_j.shape) != (n, rows) or tuple(v_j.shape) != (n, cols):
                got = (tuple(u_j.shape), tuple(v_j.shape))
                raise ValueError(f"Group {j}: expected u {(n, rows)} and v {(n, cols)}, got {got[0]} and {got[1]}.")
            self.register_buffer(f"sr_u_{j}", u_j.detach().to(weight).clone(), persistent=False)
            self.register_buffer(f"sr_v_{j}", v_j.detach().to(weight).clone(), persistent=False)
        self._sr_num_groups = len(matrices)
        self._sr_warm = False

    def power_iteration_state(self) -> dict | None:
        """The power-iteration vectors and warm-up flag, on the CPU (they are not in ``state_dict``), so that a
        resumed training run continues the same iteration; ``None`` before the first loss call or a set/reset."""
        vectors = self.power_iteration_vectors()
        if vectors is None:
            return None
        u, v = vectors
        return {"u": [t.detach().cpu() for t in u], "v": [t.detach().cpu() for t in v], "warm": self._sr_warm}

    def load_power_iteration_state(self, state: dict | None) -> None:
        """Restore what :meth:`power_iteration_state` returned (``None`` leaves the module as it is)."""
        if state is None:
            return
        self.set_power_iteration_vectors(state["u"], state["v"])
        self._sr_warm = bool(state["warm"])

    def reset_power_iteration(self, generator: torch.Generator | None = None) -> None:
        """Draw fresh random unit starting vectors (seeded by ``generator``); the next call warms up again."""
        matrices = self._grouped_matrices()
        device = generator.device if generator is not None else matrices[0].device

        def draw(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
            sample = torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)
            return F.normalize(sample, dim=1, eps=self._SR_EPS)

        self.set_power_iteration_vectors(
            [draw(w.shape[:2], w) for w in matrices], [draw((w.shape[0], w.shape[2]), w) for w in matrices]
        )

    def spectral_norm_loss(self, num_power_iter: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
        """Scalar ``sum_l u_l^T W_l v_l`` after ``num_power_iter`` iterations (10x as many when warming up).

        Starting vectors are drawn with ``generator`` if none exist yet (see :meth:`reset_power_iteration`).
        """
        if self.power_iteration_vectors() is None:
            self.reset_power_iteration(generator)
        steps = num_power_iter * (1 if self._sr_warm else self._SR_WARMUP_FACTOR)
        loss = 0.0
        for j, weight in enumerate(self._grouped_matrices()):
            u, v = getattr(self, f"sr_u_{j}"), getattr(self, f"sr_v_{j}")
            with torch.no_grad():
                frozen = weight.detach()
                for _ in range(steps):
                    v = F.normalize(torch.einsum("nr,nrc->nc", u, frozen), dim=1, eps=self._SR_EPS)
                    u = F.normalize(torch.einsum("nrc,nc->nr", frozen, v), dim=1, eps=self._SR_EPS)
            setattr(self, f"sr_u_{j}", u)
            setattr(self, f"sr_v_{j}", v)
            loss = loss + torch.einsum("nr,nrc,nc->n", u, weight, v).sum()
        self._sr_warm = True
        return loss
