"""The training runs behind the reproduction, each a preset plus overrides, and their on-disk cache.

Every run goes through :func:`vaebm_hub.training.train` with a fixed seed. A finished run leaves a saved pipeline in
``<cache_dir>/<name>[-fast]/`` next to ``reproduce_flags.json`` (its settings and the preset they resolve to) and
its training time; a later call with the same settings and preset loads it instead of retraining (anything else
retrains from scratch). ``--fast`` runs are tiny smoke runs with their own folders. :func:`training_tasks` makes the
runs a command needs into tasks for :func:`.schedule.run_tasks`, each trained in a worker process on one torch thread
(every run is seeded, so the result does not depend on the order).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vaebm_hub.pipelines import VAEBMPipeline
from vaebm_hub.presets import get_preset
from vaebm_hub.training import train as train_pipeline

from .schedule import Task

FLAGS_FILE = "reproduce_flags.json"
SECONDS_FILE = "reproduce_train_seconds.json"
COMMON = dict(seed=0, report_to="none", checkpointing_steps=100000, num_sample_images=16)
FAST = dict(
    vae_max_train_steps=3, ebm_max_train_steps=2, train_batch_size=16, langevin_steps=2, ebm_n_channel=8,
    data_init_batches=1,
)  # fmt: skip


@dataclass(frozen=True)
class TrainingRun:
    """A named trainer run: a preset (by default the dataset's own, ``vaebm_hub.presets``) plus ``overrides`` named
    like the trainer's flags. ``base`` names a run whose saved VAE this one trains its EBM on (``stage="ebm"``);
    every run trains on one torch thread (8x8 models run fastest on one; two runs share the 2 cores)."""

    name: str
    overrides: dict = field(default_factory=dict)
    base: str | None = None


# :func:`training_tasks` lists the runs in this order, and a free worker takes the first ready task, so the longest
# run goes first (longest-first scheduling). MNIST's chain is the critical path. From scratch on the 2-core machine
# with nothing else running (2026-12-07, ``reproduce_meta.json``'s ``timeline_minutes``: 54.6 min), MNIST trained
# from 0 to 37.7 min and the toy after it; the other worker trained StackedMNIST (to 24.8), the digits runs (to 37.3)
# and stacked digits. Claims 1, 2 and 6 then ran from 42.4 to 53.7 and claim 3 from 42.6 to 54.3. The digits runs
# (the digits run 570 s with 1000 stage-2 iterations) come right after StackedMNIST because claim 1 waits on them:
# after the stacked 8x8 digits and the toy they ended at 52.4 min and the command at 67.2 (other work sharing the
# machine); MNIST third, after the stacked runs and the toy, took 69.3.
RUNS: dict[str, TrainingRun] = {
    run.name: run
    for run in (
        # The default command of claim 6: the mnist preset as it is.
        TrainingRun("mnist", dict(dataset_name="mnist")),
        TrainingRun("stacked_mnist", dict(dataset_name="stacked_mnist")),
        TrainingRun("digits", dict(dataset_name="digits")),
        # The ablation: an EBM on x alone, trained with x-space chains from the same frozen digits VAE.
        TrainingRun("digits_x_space", dict(dataset_name="digits", sampling_space="x"), base="digits"),
        TrainingRun("stacked_digits", dict(dataset_name="stacked_digits")),
        TrainingRun("gaussians25", dict(dataset_name="gaussians25")),
    )
}


def run_folder(cache_dir: Path, name: str, fast: bool) -> Path:
    return Path(cache_dir) / (f"{name}-fast" if fast else name)


def trainer_settings(run: TrainingRun, cache_dir: Path, fast: bool) -> dict:
    """The keyword arguments of :func:`vaebm_hub.training.train` for ``run`` (``--fast`` sizes win)."""
    settings = {**COMMON, **run.overrides}
    if run.base is not None:
        settings.update(stage="ebm", vae_name_or_path=str(run_folder(cache_dir, run.base, fast)))
    return {**settings, **(FAST if fast else {})}


def _as_json(value: object) -> object:
    """``value`` as JSON reads it back (tuples become lists)."""
    return json.loads(json.dumps(value))


def preset_record(dataset: str) -> dict:
    """Dataset ``dataset``'s preset as JSON sees it (tuples become lists)."""
    return _as_json(get_preset(dataset).to_dict())


def same_preset(recorded: object, dataset: str) -> bool:
    """Whether a preset recorded by an earlier run (:func:`preset_record`) is ``dataset``'s current one. A section
    field the record lacks counts as its default: fields are added with the default that keeps the earlier
    behaviour (e.g. ``Sampling.decoder_output = "mean"``), so such a record still describes the same run."""
    if not isinstance(recorded, dict):
        return False
    preset, filled = get_preset(dataset), dict(recorded)
    for name in (f.name for f in dataclasses.fields(preset)):
        section = getattr(preset, name)
        if dataclasses.is_dataclass(section) and isinstance(recorded.get(name), dict):
            fields = dataclasses.fields(section)
            defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
            filled[name] = _as_json({**defaults, **recorded[name]})
    return filled == _as_json(preset.to_dict())


def cache_record(settings: dict) -> dict:
    """What a cached run must match: its trainer settings and the preset they resolve to, so that a change to
    ``vaebm_hub.presets`` retrains the runs it affects instead of reusing stale pipelines."""
    return {"settings": settings, "preset": preset_record(settings["dataset_name"])}


def _cached(folder: Path, settings: dict) -> bool:
    path = folder / FLAGS_FILE
    if not ((folder / "model_index.json").is_file() and path.is_file()):
        return False
    record = json.loads(path.read_text())
    return record.get("settings") == settings and same_preset(record.get("preset"), settings["dataset_name"])


def train(name: str, cache_dir: Path, fast: bool = False) -> tuple[Path, float]:
    """Train run ``name`` (and the run it builds on) unless cached; returns its folder and the seconds spent
    training now (0 when loaded from the cache), on one torch thread."""
    run = RUNS[name]
    seconds = train(run.base, cache_dir, fast)[1] if run.base is not None else 0.0
    folder, settings = run_folder(cache_dir, name, fast), trainer_settings(run, cache_dir, fast)
    if _cached(folder, settings):
        return folder, seconds
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FLAGS_FILE).unlink(missing_ok=True)  # written again only once this training run has finished
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        train_pipeline(folder, overwrite_output_dir=True, **settings)
    finally:
        torch.set_num_threads(previous_threads)
    seconds += time.perf_counter() - start
    (folder / SECONDS_FILE).write_text(json.dumps(round(time.perf_counter() - start, 1)))
    (folder / FLAGS_FILE).write_text(json.dumps(cache_record(settings), indent=2))
    return folder, seconds


def train_key(name: str) -> str:
    """The :class:`~.schedule.Task` key of training run ``name``."""
    return f"train:{name}"


def _train_in_worker(name: str, cache_dir: str, fast: bool) -> float:
    """Task function of :func:`training_tasks`: train ``name`` on one torch thread; the seconds it took."""
    return train(name, Path(cache_dir), fast)[1]


def with_bases(names: Iterable[str]) -> set[str]:
    """``names`` and the runs they build on."""
    names = set(names)
    return names | {RUNS[n].base for n in names if RUNS[n].base is not None}


def is_cached(name: str, cache_dir: Path, fast: bool = False) -> bool:
    """Whether run ``name`` is trained with its current settings and preset in ``cache_dir``."""
    return _cached(run_folder(cache_dir, name, fast), trainer_settings(RUNS[name], cache_dir, fast))


def training_tasks(names: Iterable[str], cache_dir: Path, fast: bool = False) -> list[Task]:
    """One task per run in ``names`` (and the runs they build on) that is not cached, in :data:`RUNS` order; a run
    built on another needs that run's task when it trains too (the cache semantics are those of :func:`train`)."""
    names = with_bases(names)  # once: ``names`` may be a one-shot iterator
    todo = [n for n in RUNS if n in names and not is_cached(n, cache_dir, fast)]
    needs = {n: (train_key(RUNS[n].base),) if RUNS[n].base in todo else () for n in todo}
    return [Task(train_key(n), _train_in_worker, (n, str(cache_dir), fast), needs[n]) for n in todo]


def recorded_train_seconds(folder: Path) -> float | None:
    """How long the run that trained the cached pipeline in ``folder`` took (its own stages only), if recorded."""
    path = Path(folder) / SECONDS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def load_pipeline(folder: Path) -> VAEBMPipeline:
    """A trained run's pipeline for evaluation, its convolutions in channels-last layout as the trainer runs them on
    a CPU (Langevin chains about 1.45x faster on StackedMNIST's models; samples equal to 3e-6)."""
    pipe = VAEBMPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    if pipe.device.type == "cpu":
        pipe.enable_channels_last()
    return pipe
