"""The reproduction's task scheduler: dependencies first, results keyed by task, failures and cycles reported, and
the task graph of the full reproduction (an evaluation waits for the runs it reads and nothing else)."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest
from reproduction import CLAIMS
from reproduction.context import Context
from reproduction.runner import claim_tasks
from reproduction.runs import RUNS, train_key
from reproduction.schedule import Task, run_tasks


def _write_then_read(folder: Path) -> list[Task]:
    """A task that reads the file another writes; it fails if it runs before the writer."""
    path = folder / "x.txt"
    return [
        Task("read", Path.read_text, (path,), needs=("write",)),
        Task("sleep", time.sleep, (0.3,)),
        Task("write", Path.write_text, (path, "written"), needs=("sleep",)),
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_task_starts_only_after_the_tasks_it_needs(tmp_path, workers):
    done = run_tasks(_write_then_read(tmp_path), max_workers=workers)
    assert set(done) == {"read", "sleep", "write"}
    assert done["read"][0] == "written" and done["write"][0] == len("written")
    assert all(seconds >= 0 for _, seconds in done.values())  # wall seconds per task


def test_worker_tasks_run_in_other_processes():
    done = run_tasks([Task("a", os.getpid), Task("b", math.sqrt, (16.0,))], max_workers=2)
    assert done["a"][0] != os.getpid() and done["b"][0] == 4.0


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_task_skips_what_needs_it_runs_the_rest_then_raises(tmp_path, workers):
    after, independent = tmp_path / "after.txt", tmp_path / "independent.txt"
    tasks = [
        Task("fails", math.sqrt, (-1.0,)),
        Task("after", Path.write_text, (after, "ran"), needs=("fails",)),
        Task("after_after", Path.read_text, (after,), needs=("after",)),
        Task("independent", Path.write_text, (independent, "ran")),  # listed after the failure
    ]
    finished = []
    with pytest.raises(RuntimeError, match=r"task fails failed.*skipped.*\['after', 'after_after'\]") as error:
        run_tasks(tasks, max_workers=workers, on_finish=lambda key, result: finished.append(key))
    assert isinstance(error.value.__cause__, ValueError)  # the task's own error, chained
    assert not after.exists() and independent.read_text() == "ran" and finished == ["independent"]


@pytest.mark.parametrize("workers", [1, 2])
def test_cycles_unknown_dependencies_and_duplicate_keys_are_refused(workers):
    with pytest.raises(ValueError, match="dependency cycle"):
        run_tasks([Task("a", abs, (1,), needs=("b",)), Task("b", abs, (1,), needs=("a",))], max_workers=workers)
    with pytest.raises(ValueError, match=r"need \['c'\]"):
        run_tasks([Task("a", abs, (1,), needs=("c",))], max_workers=workers)
    with pytest.raises(ValueError, match=r"unique.*\['a'\]"):
        run_tasks([Task("a", abs, (1,)), Task("a", abs, (2,))], max_workers=workers)


def test_each_full_size_evaluation_waits_for_the_runs_it_reads_and_no_other(tmp_path):
    ctx = Context(cache_dir=tmp_path, output_dir=tmp_path)
    tasks = {t.key: t for t in claim_tasks(tuple(CLAIMS), ctx, trained_now=set(RUNS))}
    # claims 1, 2 and 6 share memoised evaluations: one task; claim 3 one task per dataset
    assert set(tasks) == {"claim:1,2,6", "claim:3:stacked_mnist", "claim:3:stacked_digits", "claim:4", "claim:5"}
    assert tasks["claim:3:stacked_mnist"].needs == (train_key("stacked_mnist"),)
    assert tasks["claim:3:stacked_digits"].needs == (train_key("stacked_digits"),)
    assert set(tasks["claim:1,2,6"].needs) == {train_key(r) for r in ("mnist", "digits", "digits_x_space")}
    assert set(tasks["claim:4"].needs) == {train_key(r) for r in ("mnist", "digits")}
    assert tasks["claim:5"].needs == (train_key("gaussians25"),)
    # claim 6 alone still waits for both runs of claim 1, whose verdict it takes
    alone = claim_tasks((6,), ctx, trained_now=set(RUNS))
    assert [t.key for t in alone] == ["claim:6"] and set(alone[0].needs) == {train_key("mnist"), train_key("digits")}
    # the x-space run waits for the VAE it builds on; runs loaded from the cache are not waited for
    (x_space,) = claim_tasks((2,), ctx, trained_now={"digits"})
    assert x_space.needs == (train_key("digits"),)
    cached = {t.key: t for t in claim_tasks((3,), ctx, trained_now={"stacked_digits"})}
    assert cached["claim:3:stacked_mnist"].needs == () and cached["claim:3:stacked_digits"].needs != ()


def test_a_claim_reading_a_run_that_is_not_trained_fails_instead_of_training_it(tmp_path):
    ctx = Context(cache_dir=tmp_path, output_dir=tmp_path)
    with pytest.raises(RuntimeError, match=r"'digits' is not in the cache.*training_runs"):
        ctx.pipeline("digits")
