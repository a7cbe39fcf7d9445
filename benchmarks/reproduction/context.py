"""What every claim shares: run sizes (full or ``--fast``), where trained pipelines are cached, where figures go,
and the evaluations that more than one claim reads (computed once per process)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vaebm_hub.evaluation import evaluate_pipeline
from vaebm_hub.pipelines import VAEBMPipeline

from .runs import RUNS, load_pipeline, recorded_train_seconds, train, train_runs


@dataclass
class Context:
    """``fast``: tiny sizes for the test suite. ``cache_dir`` holds trained pipelines (``outputs/reproduce``);
    ``output_dir`` the JSON results and figures (``benchmarks/results``)."""

    fast: bool = False
    cache_dir: Path = Path("outputs/reproduce")
    output_dir: Path = Path("benchmarks/results")
    seed: int = 0
    train_seconds: dict[str, dict] = field(default_factory=dict)  # {run: {"seconds", "from_cache"}}
    _pipelines: dict[str, VAEBMPipeline] = field(default_factory=dict)
    _evaluations: dict[tuple, dict] = field(default_factory=dict)

    def size(self, full, fast):
        """``fast`` in a ``--fast`` run, else ``full``."""
        return fast if self.fast else full

    def train_runs(self, names, max_workers: int = 2) -> None:
        """Train the runs in ``names`` that are not cached, ``max_workers`` at a time (:func:`.runs.train_runs`)."""
        for name, seconds in train_runs(list(names), Path(self.cache_dir), self.fast, max_workers).items():
            self.train_seconds.setdefault(name, {"seconds": round(seconds, 1), "from_cache": False})

    def run_folder(self, name: str) -> Path:
        base = RUNS[name].base
        if base is not None:  # trained (or loaded) first, so that its seconds are recorded under its own name
            self.run_folder(base)
        folder, seconds = train(name, Path(self.cache_dir), self.fast)
        if name not in self.train_seconds:
            cached = seconds == 0
            recorded = recorded_train_seconds(folder) if cached else round(seconds, 1)
            self.train_seconds[name] = {"seconds": recorded, "from_cache": cached}
        return folder

    def pipeline(self, name: str) -> VAEBMPipeline:
        """The pipeline of training run ``name`` (see :data:`.runs.RUNS`), trained on first use, then cached."""
        if name not in self._pipelines:
            self._pipelines[name] = load_pipeline(self.run_folder(name))
        return self._pipelines[name]

    def evaluation(self, run: str, dataset: str, num_samples: int, chain_lengths: tuple[int, ...]) -> dict:
        """:func:`~vaebm_hub.evaluation.evaluate_pipeline` of run ``run`` (no OOD sets), memoised; figures
        go to ``<output_dir>/figures/<run>/``."""
        key = (run, dataset, num_samples, tuple(chain_lengths))
        if key not in self._evaluations:
            self._evaluations[key] = evaluate_pipeline(
                self.pipeline(run), dataset, num_samples=num_samples, chain_lengths=chain_lengths,
                ood_set_names=[], seed=self.seed, output_dir=Path(self.output_dir) / "figures" / run,
            )  # fmt: skip
        return self._evaluations[key]
