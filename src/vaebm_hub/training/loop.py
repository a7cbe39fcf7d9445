"""The one Accelerate training loop both stages run on.

A stage (:class:`TrainingStage`) supplies its model, optimizer, learning-rate schedule and the loss of one
micro-batch; the loop does everything else: gradient accumulation, the divergence guard and its rollbacks,
checkpoints (``save_state`` plus per-process trainer state, written atomically), tracker logs, the progress bar and
sample grids. Steps count optimizer steps; checkpoint folders are named by the *global* step (stage 2 continues
stage 1's count under ``--stage all``), so ``--resume_from_checkpoint latest`` finds the right stage.
"""

from __future__ import annotations

import hashlib
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..figures import sample_panels
from ..pipelines.checks import read_weight_shapes
from ..presets import EBMTraining, VAETraining
from .checkpointing import (
    checkpoint_dir,
    list_checkpoints,
    prune_checkpoints,
    read_state,
    verify_checkpoint,
    write_atomically,
)
from .data_stream import BatchStream, ShardedBatchSampler
from .divergence import GENERIC_FIX, DivergenceGuard

RANK_STATE_FILE = "trainer_state_{}.pt"
logger = get_logger(__name__)


def make_generator(seed: int, purpose: str, process_index: int = 0) -> torch.Generator:
    """A CPU generator seeded from ``(seed, purpose, process_index)`` — independent streams, reproducible runs."""
    digest = hashlib.sha256(f"{seed}/{purpose}/{process_index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def first_batches(dataset: Dataset, batch_size: int, num_batches: int, seed: int) -> torch.Tensor:
    """The first ``num_batches`` batches of a single-process stream, concatenated (the same on every process)."""
    sampler = ShardedBatchSampler(len(dataset), batch_size, seed, 0, 1)
    return torch.stack([dataset[i] for m in range(num_batches) for i in sampler.indices(m)])


class TrainingStage(ABC):
    """One training stage. After :meth:`prepare`, ``model``, ``optimizer`` and ``lr_scheduler`` are the objects
    returned by ``accelerator.prepare``."""

    name: str
    watch: tuple[str, ...]  # metrics the divergence guard checks for blow-ups
    steady_watch: tuple[str, ...] = ()  # those it also checks for steady growth against the stage's first steps
    collapse_watch: tuple[tuple[str, str], ...] = ()  # (spread, level): a spread ~0 = the model ignores its input
    divergence_fix: str = GENERIC_FIX  # the flags that help when the guard gives up, as a clause
    settings: VAETraining | EBMTraining  # read here: max_train_steps, batch_size
    model: nn.Module
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler

    @abstractmethod
    def prepare(self, accelerator: Accelerator, dataset: Dataset, fresh: bool) -> None:
        """Build the optimizer and schedule, run first-time initialisation if ``fresh``, ``accelerator.prepare``."""

    @abstractmethod
    def training_loss(self, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss of one micro-batch at optimizer step ``step`` (0-based) and detached scalar metrics to log."""

    def before_optimizer_step(self) -> None:
        """Runs on synchronising micro-steps after the backward pass (e.g. gradient clipping)."""
        return None

    def after_optimizer_step(self) -> None:
        """Runs after every optimizer step (e.g. an EMA update)."""
        return None

    @abstractmethod
    def state_dict(self) -> dict:
        """This process's stage state that ``save_state`` does not cover (generators, buffers, EMA)."""

    @abstractmethod
    def load_state_dict(self, state: dict) -> None: ...

    def write_checkpoint_extras(self, directory: Path) -> None:
        """Main process: extra files a checkpoint of this stage needs (e.g. the frozen VAE)."""
        return None

    @abstractmethod
    def sample_panels(self) -> dict[str, torch.Tensor]:
        """Named sample batches for the sample grid (images ``(N, C, H, W)`` in [0, 1] or points ``(N, 2)``)."""


@dataclass
class LoopOptions:
    output_dir: Path
    seed: int
    step_offset: int  # global step at which this stage starts
    gradient_accumulation_steps: int
    checkpointing_steps: int
    checkpoints_total_limit: int | None
    save_images_steps: int | None
    dataloader_num_workers: int
    random_flip: bool
    divergence_max_retries: int
    divergence_lr_factor: float
    divergence_threshold: float
    divergence_growth_factor: float
    save_model_steps: int | None = None  # also save the pipeline (``on_save_model``) every N steps


def gradient_norm(parameters) -> torch.Tensor:
    """Total L2 norm of the gradients (0-d tensor)."""
    norms = [p.grad.detach().norm() for p in parameters if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def weights_finite(model: nn.Module) -> torch.Tensor:
    return torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all()


class StageRunner:
    """Runs one stage from its start (or a checkpoint) to ``settings.max_train_steps``."""

    def __init__(
        self,
        accelerator: Accelerator,
        stage: TrainingStage,
        dataset: Dataset,
        options: LoopOptions,
        on_save_model: Callable[[], None] | None = None,
    ):
        self.accelerator, self.stage, self.dataset, self.options = accelerator, stage, dataset, options
        self.on_save_model = on_save_model
        self.guard = DivergenceGuard(
            watch=stage.watch,
            steady_watch=stage.steady_watch,
            collapse_watch=stage.collapse_watch,
            max_retries=options.divergence_max_retries,
            lr_factor=options.divergence_lr_factor,
            blowup_factor=options.divergence_threshold,
            early_factor=options.divergence_growth_factor,
            fix=stage.divergence_fix,
        )
        self.step = 0
        self.start_snapshot = options.output_dir / f"checkpoint-{stage.name}-start"

    # ---------------------------------------------------------------- checkpoints
    def _rank_file(self, directory: Path) -> Path:
        return directory / RANK_STATE_FILE.format(self.accelerator.process_index)

    def save(self, directory: Path) -> None:
        acc = self.accelerator

        def write(tmp: Path) -> None:
            acc.save_state(str(tmp))
            state = {"stage": self.stage.state_dict(), "guard": self.guard.state_dict(), "step": self.step}
            torch.save(state, self._rank_file(tmp))
            if acc.is_main_process:
                self.stage.write_checkpoint_extras(tmp)

        meta = {
            "stage": self.stage.name,
            "stage_step": self.step,
            "global_step": self.options.step_offset + self.step,
            "step_offset": self.options.step_offset,
            "num_processes": acc.num_processes,
        }
        write_atomically(directory, write, meta, is_main_process=acc.is_main_process, barrier=acc.wait_for_everyone)

    def load(self, directory: Path, keep_guard: bool = False) -> None:
        """Restore a checkpoint of this stage. With ``keep_guard`` (a rollback) the guard's retry count and learning
        rate scale stay as they are, and the restored learning rate is rescaled to that scale."""
        meta = read_state(directory)
        if meta["stage"] != self.stage.name:
            raise ValueError(f"{directory} is a checkpoint of the {meta['stage']!r} stage, not {self.stage.name!r}")
        if meta["num_processes"] != self.accelerator.num_processes:
            raise ValueError(
                f"{directory} was written by {meta['num_processes']} process(es); resume it with the same "
                f"--num_processes (got {self.accelerator.num_processes})."
            )
        self._check_shapes(directory)
        self.accelerator.load_state(str(directory))
        state = torch.load(self._rank_file(directory), weights_only=True)
        self.stage.load_state_dict(state["stage"])
        self.step = int(state["step"])
        if keep_guard:  # a rollback: the checkpoint's statistics, this run's retry count and learning-rate scale
            retries, lr_scale = self.guard.retries, self.guard.lr_scale
            self.guard.load_state_dict(state["guard"])
            self.guard.retries, self.guard.lr_scale = retries, lr_scale
            self._rescale_learning_rate(lr_scale / float(state["guard"]["lr_scale"]))
        else:
            self.guard.load_state_dict(state["guard"])

    def _check_shapes(self, directory: Path) -> None:
        """A checkpoint written with other settings (e.g. another ``--ebm_n_channel``) fails here with the tensor
        that differs, not in ``load_state_dict`` with a page of shapes."""
        model = self.accelerator.unwrap_model(self.stage.model)
        expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
        for key, shape in read_weight_shapes(sorted(directory.glob("model*.safetensors"))).items():
            if key not in expected or expected[key] != shape:
                raise ValueError(
                    f"{directory} was written with other settings than this run's: its {key} has shape "
                    f"{shape}, the model built from the flags {expected.get(key, 'has no such tensor')}. "
                    "Resume with the flags of the run that wrote it (e.g. the same --ebm_n_channel), or start "
                    "over with --overwrite_output_dir."
                )

    def _rescale_learning_rate(self, factor: float) -> None:
        scheduler = getattr(self.stage.lr_scheduler, "scheduler", self.stage.lr_scheduler)
        scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]
        for group in self.stage.optimizer.param_groups:
            group["lr"] *= factor
            if "initial_lr" in group:
                group["initial_lr"] *= factor

    def last_good_checkpoint(self) -> Path:
        """The newest checkpoint of this stage at or before the current step that verifies
        (:func:`~.checkpointing.verify_checkpoint`: readable, complete, finite), else the stage-start snapshot;
        checkpoints that do not verify are skipped with a message."""
        offset = self.options.step_offset
        for global_step, path in reversed(list_checkpoints(self.options.output_dir)):
            if not offset <= global_step <= offset + self.step or read_state(path)["stage"] != self.stage.name:
                continue
            reason = verify_checkpoint(path)
            if reason is None:
                return path
            self.accelerator.print(f"[divergence guard] not rolling back to {path.name}: {reason}")
        return self.start_snapshot

    # ---------------------------------------------------------------- the loop
    def run(self, resume: Path | None) -> None:
        acc, stage, opts = self.accelerator, self.stage, self.options
        stage.prepare(acc, self.dataset, fresh=resume is None)
        if resume is not None:
            self.load(resume)
        else:
            self.save(self.start_snapshot)
        max_steps = stage.settings.max_train_steps
        self._log_summary(max_steps)
        stream = self._stream()
        progress = tqdm(
            total=max_steps, initial=self.step, desc=f"stage {stage.name}", disable=not acc.is_local_main_process
        )
        while self.step < max_steps:
            logs = self.optimizer_step(stream)
            reason = self._diverged(logs)
            if reason is not None:
                stream = self._roll_back(reason, progress)
                continue
            self.step += 1
            global_step = opts.step_offset + self.step
            progress.update(1)
            progress.set_postfix(loss=f"{logs['loss']:.4g}")
            lr = self.stage.lr_scheduler.get_last_lr()[0]
            acc.log({**{f"{stage.name}/{k}": v for k, v in logs.items()}, f"{stage.name}/lr": lr}, step=global_step)
            if self.step % opts.checkpointing_steps == 0 or self.step == max_steps:
                reason = self.guard.at_checkpoint()
                if reason is not None:
                    self.step -= 1  # this step is not kept
                    progress.n = self.step
                    stream = self._roll_back(reason, progress)
                    continue
                self.save(checkpoint_dir(opts.output_dir, global_step))
                if acc.is_main_process:
                    prune_checkpoints(opts.output_dir, opts.checkpoints_total_limit)
            if (opts.save_images_steps and self.step % opts.save_images_steps == 0) or self.step == max_steps:
                self.write_samples(global_step)
            if opts.save_model_steps and self.step % opts.save_model_steps == 0 and self.on_save_model is not None:
                self.on_save_model()
        progress.close()
        acc.wait_for_everyone()
        if acc.is_main_process and self.start_snapshot.exists():
            shutil.rmtree(self.start_snapshot)

    def _log_summary(self, max_steps: int) -> None:
        """diffusers' "***** Running training *****" block, per stage."""
        acc, opts, batch = self.accelerator, self.options, self.stage.settings.batch_size
        total_batch = batch * acc.num_processes * opts.gradient_accumulation_steps
        for line in (
            f"***** Running training: stage {self.stage.name} *****",
            f"  Num examples = {len(self.dataset)}",
            f"  Instantaneous batch size per device = {batch}",
            f"  Total train batch size (w. parallel, distributed & accumulation) = {total_batch}",
            f"  Gradient Accumulation steps = {opts.gradient_accumulation_steps}",
            f"  Total optimization steps = {max_steps} (starting at {self.step})",
        ):
            logger.info(line, main_process_only=True)

    def _stream(self) -> BatchStream:
        acc, opts = self.accelerator, self.options
        return BatchStream(
            self.dataset,
            self.stage.settings.batch_size,
            seed=opts.seed,
            process_index=acc.process_index,
            num_processes=acc.num_processes,
            start=self.step * opts.gradient_accumulation_steps,
            num_workers=opts.dataloader_num_workers,
            random_flip=opts.random_flip,
            device=acc.device,
        )

    def optimizer_step(self, stream: BatchStream) -> dict[str, float]:
        """``gradient_accumulation_steps`` micro-batches and one optimizer step; metrics averaged over processes."""
        acc, stage = self.accelerator, self.stage
        totals: dict[str, torch.Tensor] = {}
        for _ in range(self.options.gradient_accumulation_steps):
            batch = next(stream)
            with acc.accumulate(stage.model):
                with acc.autocast():
                    loss, metrics = stage.training_loss(batch, self.step)
                acc.backward(loss)
                if acc.sync_gradients:
                    totals["grad_norm"] = gradient_norm(stage.model.parameters()).to(acc.device)
                    stage.before_optimizer_step()
                stage.optimizer.step()
                stage.lr_scheduler.step()
                stage.optimizer.zero_grad(set_to_none=True)
            for key, value in {"loss": loss.detach(), **metrics}.items():
                value = value.to(acc.device, torch.float32) / self.options.gradient_accumulation_steps
                totals[key] = totals.get(key, 0.0) + value
        stage.after_optimizer_step()
        names = list(totals)
        values = torch.stack([totals[k].reshape(()) for k in names] + [weights_finite(stage.model).float()])
        gathered = acc.gather(values).reshape(acc.num_processes, -1)
        means = gathered[:, :-1].mean(dim=0).tolist()
        logs = dict(zip(names, means))
        logs["weights_finite"] = float(gathered[:, -1].min())
        return logs

    def _diverged(self, logs: dict[str, float]) -> str | None:
        finite = logs.pop("weights_finite") == 1.0
        return self.guard.check(logs, weights_finite=finite)

    def _roll_back(self, reason: str, progress: tqdm) -> BatchStream:
        target = self.last_good_checkpoint()
        global_step = self.options.step_offset + self.step + 1
        lr_scale = self.guard.on_divergence(reason, global_step, str(target))
        self.accelerator.print(
            f"\n[divergence guard] step {global_step}: {reason}. Rolling back to {target.name} with the learning "
            f"rate scaled by {lr_scale:g} (retry {self.guard.retries}/{self.guard.max_retries})."
        )
        self.load(target, keep_guard=True)
        progress.n = self.step
        progress.refresh()
        return self._stream()

    def write_samples(self, global_step: int) -> None:
        """Main process: the stage's sample panels as ``samples/<stage>-<step>.png`` (and to TensorBoard)."""
        if not self.accelerator.is_main_process:
            return
        figure = sample_panels(self.stage.sample_panels())
        directory = self.options.output_dir / "samples"
        directory.mkdir(parents=True, exist_ok=True)
        figure.save(directory / f"{self.stage.name}-{global_step:06d}.png")
        for tracker in self.accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.log_images({f"{self.stage.name}/samples": np.asarray(figure)}, global_step, dataformats="HWC")
