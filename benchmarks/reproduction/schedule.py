"""Run tasks in worker processes, each once the tasks it needs have finished (the reproduction's training runs and
claim evaluations overlap instead of running one phase after the other)."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm


@dataclass(frozen=True)
class Task:
    """``function(*args)`` once every task in ``needs`` (keys) has finished. ``function`` must be a module-level
    function (workers are spawned processes)."""

    key: str
    function: Callable[..., Any]
    args: tuple = ()
    needs: tuple[str, ...] = ()


def _check(tasks: Sequence[Task]) -> None:
    """Unique keys, known dependencies and no cycle, before anything runs."""
    keys = [t.key for t in tasks]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise ValueError(f"task keys must be unique, got {duplicated} more than once")
    missing = sorted({n for t in tasks for n in t.needs} - set(keys))
    if missing:
        raise ValueError(f"tasks need {missing}, which are not in the task list")
    resolved, remaining = set(), list(tasks)
    while remaining:
        free = [t for t in remaining if set(t.needs) <= resolved]
        if not free:
            raise ValueError(f"dependency cycle among {sorted(t.key for t in remaining)}")
        resolved |= {t.key for t in free}
        remaining = [t for t in remaining if t.key not in resolved]


def run_tasks(
    tasks: Sequence[Task],
    max_workers: int = 2,
    *,
    on_finish: Callable[[str, Any], None] | None = None,
    desc: str = "tasks",
) -> dict[str, tuple[Any, float]]:
    """Run ``tasks`` in at most ``max_workers`` worker processes (``1``: in this process, in order); a free worker
    takes the earliest ready task in the list. ``on_finish(key, result)`` runs here as each task finishes. Returns
    ``{key: (result, seconds from its start to its end)}``.

    A failing task does not stop the others: the tasks that need it (directly or not) are skipped, every other task
    runs, then the first failure is raised. Duplicate keys, unknown dependencies and cycles raise ``ValueError``
    before anything runs."""
    _check(tasks)
    pending, done, failed, skipped = list(tasks), {}, {}, set()  # failed: {key: exception}
    # no rate or ETA: tasks last from seconds to tens of minutes
    bar = tqdm(
        total=len(tasks),
        desc=desc,
        disable=not tasks,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
    )

    def take_ready(limit: int) -> list[Task]:
        while blocked := [t for t in pending if set(t.needs) & (set(failed) | skipped)]:  # transitively
            for task in blocked:
                pending.remove(task)
                skipped.add(task.key)
                bar.update()
        ready = [t for t in pending if set(t.needs) <= set(done)][:limit]
        for task in ready:
            pending.remove(task)
        return ready

    def finish(task: Task, outcome: Any, seconds: float, error: BaseException | None) -> None:
        if error is not None:
            failed[task.key] = error
            tqdm.write(f"{task.key} failed after {seconds:.0f} s: {error!r}")
        else:
            done[task.key] = (outcome, seconds)
            if on_finish is not None:
                on_finish(task.key, outcome)
            bar.set_postfix_str(f"{task.key} {seconds:.0f} s")
        bar.update()

    try:
        if max_workers <= 1:
            while ready := take_ready(1):
                start = time.perf_counter()
                try:
                    outcome, error = ready[0].function(*ready[0].args), None
                except Exception as exc:  # noqa: BLE001 - reported, then raised after the independent tasks
                    outcome, error = None, exc
                finish(ready[0], outcome, time.perf_counter() - start, error)
        else:
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=max_workers, mp_context=spawn) as pool:
                running: dict[Future, tuple[Task, float]] = {}
                while True:
                    for task in take_ready(max_workers - len(running)):
                        running[pool.submit(task.function, *task.args)] = (task, time.perf_counter())
                    if not running:
                        break
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        task, start = running.pop(future)
                        error = future.exception()
                        finish(task, None if error else future.result(), time.perf_counter() - start, error)
    finally:
        bar.close()
    if failed:
        first = next(iter(failed))
        raise RuntimeError(
            f"task {first} failed ({len(failed)} failed in all: {sorted(failed)}); skipped what needs them: "
            f"{sorted(skipped)}"
        ) from failed[first]
    return done
