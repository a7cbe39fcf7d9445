"""What every claim shares: run sizes (full or ``--fast``), where trained pipelines are cached, where figures go,
and the evaluations that more than one claim reads (computed once per process)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vaebm_hub.evaluation import evaluate_pipeline
from vaebm_hub.pipelines import VAEBMPipeline

from .runs import is_cached, load_pipeline, run_folder


@dataclass
class Context:
    """``fast``: tiny sizes for the test suite. ``cache_dir`` holds trained pipelines (``outputs/reproduce``);
    ``output_dir`` the JSON results and figures (``benchmarks/results``)."""

    fast: bool = False
    cache_dir: Path = Path("outputs/reproduce")
    output_dir: Path = Path("benchmarks/results")
    seed: int = 0
    _pipelines: dict[str, VAEBMPipeline] = field(default_factory=dict)
    _evaluations: dict[tuple, dict] = field(default_factory=dict)

    def size(self, full, fast):
        """``fast`` in a ``--fast`` run, else ``full``."""
        return fast if self.fast else full

    def run_folder(self, name: str) -> Path:
        """The cached folder of training run ``name``. Claims never train: the runner trains what their
        ``training_runs`` name first, so reading any other run is an error (it would train it concurrently)."""
        if not is_cached(name, Path(self.cache_dir), self.fast):
            raise RuntimeError(
                f"training run {name!r} is not in the cache {self.cache_dir}; a claim reads only the runs its "
                "training_runs() names (add it there)"
            )
        return run_folder(Path(self.cache_dir), name, self.fast)

    def pipeline(self, name: str) -> VAEBMPipeline:
        """The pipeline of training run ``name`` (see :data:`.runs.RUNS`), loaded once."""
        if name not in self._pipelines:
            self._pipelines[name] = load_pipeline(self.run_folder(name))
        return self._pipelines[name]

    def evaluation(
        self, run: str, dataset: str, num_samples: int, chain_lengths: tuple[int, ...], draw: int = 0
    ) -> dict:
        """:func:`~vaebm_hub.evaluation.evaluate_pipeline` of run ``run`` (no OOD sets), memoised. Draw number
        ``draw`` samples from the noise of seed ``seed + draw``; draw 0's figures go to
        ``<output_dir>/figures/<run>/``."""
        key = (run, dataset, num_samples, tuple(chain_lengths), draw)
        if key not in self._evaluations:
            figures = Path(self.output_dir) / "figures" / run if draw == 0 else None
            self._evaluations[key] = evaluate_pipeline(
                self.pipeline(run), dataset, num_samples=num_samples, chain_lengths=chain_lengths,
                ood_set_names=[], seed=self.seed + draw, output_dir=figures,
            )  # fmt: skip
        return self._evaluations[key]
