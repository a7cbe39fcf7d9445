"""``benchmarks/reproduce.py --fast``: every claim runs end to end through the package trainer on tiny sizes, and
its JSON has the documented schema with sane values (the full-size numbers are in docs/results.md)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from reproduction import CLAIMS, run_claims
from reproduction.claim_gain import ROW_KEYS, gap_closed, mean_rows
from reproduction.runner import write_report
from reproduction.runs import FLAGS_FILE, RUNS, SECONDS_FILE, training_tasks

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reproduce  # noqa: E402


def finite_nonnegative(value) -> bool:
    return value is not None and math.isfinite(value) and value >= 0


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproduce")
    argv = ["--fast", "--output_dir", str(root / "results"), "--cache_dir", str(root / "cache"),
            "--docs", str(root / "docs" / "results.md")]  # fmt: skip
    assert reproduce.main(argv) == 0
    results = {c: json.loads((root / "results" / f"reproduce_{c}.json").read_text()) for c in CLAIMS}
    results["meta"] = json.loads((root / "results" / "reproduce_meta.json").read_text())
    return root, results


def test_every_claim_writes_its_json_with_a_target_verdict(fast_run):
    _, results = fast_run
    for claim, result in ((c, results[c]) for c in CLAIMS):
        assert result["claim"] == claim and result["fast"] is True
        assert isinstance(result["target_met"], bool) and result["target"] and result["title"]


def test_sample_quality_claims_report_finite_fd_and_unit_interval_precision_recall(fast_run):
    _, results = fast_run
    rows = results[1]["datasets"]["digits"]["rows"] + results[2]["rows"] + results[3]["rows"]
    assert [r["langevin_steps"] for r in results[1]["datasets"]["digits"]["rows"]] == [0, 2]
    assert {r["space"] for r in results[2]["rows"]} == {"eps", "x"}
    for row in rows:
        assert finite_nonnegative(row["fd_clf"]) and finite_nonnegative(row["fd_floor"])
        assert 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1
    assert math.isfinite(results[1]["datasets"]["digits"]["gap_closed"])


def test_mode_counts_lie_in_0_to_1000_and_kept_fractions_in_the_unit_interval(fast_run):
    _, results = fast_run
    for row in [results[3]["real_stacks"], *results[3]["rows"]]:
        assert 0 <= row["modes"] <= 1000 and 0 <= row["kept_fraction"] <= 1
        assert row["reverse_kl"] is None or row["reverse_kl"] >= -1e-9


def test_mode_coverage_writes_a_real_vae_vaebm_grid_and_links_it_in_the_report(fast_run):
    from PIL import Image

    root, results = fast_run
    stacks = results[3]["datasets"]["stacked_digits"]
    grid = root / "results" / stacks["figure"]
    with Image.open(grid) as image:
        assert image.mode == "RGB" and image.width > 2 * image.height  # three panels side by side
    assert "stacked_digits: real | VAE | VAEBM samples" in (root / "docs" / "results.md").read_text()


def test_ood_aurocs_lie_in_the_unit_interval_for_every_set_and_score(fast_run):
    _, results = fast_run
    auroc = results[4]["datasets"]["digits"]["auroc"]
    assert {"uniform", "constant", "shuffled", "inverted", "interp", "mnist_8x8"} <= set(auroc)
    for scores in auroc.values():
        assert set(scores) == {"log_h", "energy", "vae_elbo"}
        assert all(0 <= v <= 1 for v in scores.values())


def test_toy_reports_mixture_metrics_against_the_true_mixture(fast_run):
    _, results = fast_run
    true = results[5]["true_samples"]
    assert true["modes_covered"] == 25 and true["high_quality_fraction"] > 0.95
    for row in results[5]["rows"]:
        assert 0 <= row["high_quality_fraction"] <= 1 and 0 <= row["modes_covered"] <= 25


def test_report_and_cache_are_written_and_a_rerun_reuses_the_trained_pipelines(fast_run):
    root, _ = fast_run
    report = (root / "docs" / "results.md").read_text()
    assert "python benchmarks/reproduce.py --fast" in report and "not FID" in report
    for claim in CLAIMS:
        assert f"## {claim}." in report
    assert (root / "cache" / "digits-fast" / FLAGS_FILE).is_file()
    results = run_claims([5], fast=True, output_dir=root / "results", cache_dir=root / "cache", docs_path=None)
    meta = json.loads((root / "results" / "reproduce_meta.json").read_text())
    record = meta["train_seconds"]["gaussians25"]
    assert record["from_cache"] and record["seconds"] > 0 and results[5]["claim"] == 5
    # the report's header is the last command's; the claims it did not rerun name the command that produced them
    again = write_report(root / "results", root / "docs" / "again.md").read_text()
    first = "python benchmarks/reproduce.py --fast"
    assert results[5]["command"] == "make reproduce" and again.index("```bash\nmake reproduce\n```") > 0
    assert f"(claims 1, 2, 3, 4, 6: `{first}" in again and f"claims 1, 2, 3, 4, 6: `{first}" not in report


def test_the_report_calls_a_run_from_scratch_measured_and_one_with_cached_runs_an_estimate_from_above():
    from reproduction.results_doc import _from_scratch

    scratch = {
        "wall_seconds": 3300.0,
        "workers": 2,
        "train_seconds": {"mnist": {"seconds": 2200.0, "from_cache": False}},
    }
    assert _from_scratch(scratch) == "This was from scratch (training + evaluation): 55 min."
    cached = {
        **scratch,
        "train_seconds": {**scratch["train_seconds"], "digits": {"seconds": 600.0, "from_cache": True}},
    }
    assert "at most about 60 min" in _from_scratch(cached) and "estimate from above" in _from_scratch(cached)


def test_the_timeline_records_when_each_task_ran_and_no_evaluation_starts_before_its_training(fast_run):
    _, results = fast_run
    meta = results["meta"]
    timeline = meta["timeline_minutes"]
    assert {f"train:{name}" for name in meta["train_seconds"]} <= set(timeline)
    assert {key for key in timeline if key.startswith("claim:")} >= {"claim:1,2,6", "claim:4", "claim:5"}
    for begin, end in timeline.values():
        assert 0 <= begin <= end <= meta["wall_seconds"] / 60 + 0.1
    # the digits runs are needed by claims 1, 2, 6 and 4: those evaluations start once they are trained
    trained = max(timeline[key][1] for key in ("train:digits", "train:digits_x_space"))
    assert timeline["claim:1,2,6"][0] >= trained - 0.1 and timeline["claim:4"][0] >= timeline["train:digits"][1] - 0.1
    assert list(timeline) == sorted(timeline, key=lambda key: timeline[key][0])  # in order of their start


def test_every_run_is_trained_once_in_the_worker_processes_then_loaded_from_the_cache(fast_run):
    root, results = fast_run
    trained = results["meta"]["train_seconds"]
    assert set(trained) == set(RUNS) - {"mnist", "stacked_mnist"}  # --fast claims read the 8x8 runs only
    assert all(not r["from_cache"] and r["seconds"] > 0 for r in trained.values())
    for name in trained:  # the workers wrote each run's cache record
        assert (root / "cache" / f"{name}-fast" / FLAGS_FILE).is_file()
    for name, record in trained.items():  # the cache records the task's training: no claim trained it again
        recorded = json.loads((root / "cache" / f"{name}-fast" / SECONDS_FILE).read_text())
        assert abs(recorded - record["seconds"]) < 0.2 * record["seconds"] + 0.5
    assert training_tasks(sorted(trained), root / "cache", fast=True) == []  # all cached: nothing is retrained
    # a one-shot iterator of names is read once, not once per run (the old code saw it empty after the first run)
    folder = root / "cache" / "gaussians25-fast"
    (folder / FLAGS_FILE).rename(folder / "flags.bak")  # gaussians25 looks untrained
    try:
        assert [t.key for t in training_tasks(iter(["digits", "gaussians25"]), root / "cache", fast=True)] == [
            "train:gaussians25"
        ]
    finally:
        (folder / "flags.bak").rename(folder / FLAGS_FILE)


def test_evaluating_in_this_process_gives_the_worker_processes_results(fast_run, tmp_path):
    root, results = fast_run
    again = run_claims([3, 5], fast=True, output_dir=tmp_path, cache_dir=root / "cache", docs_path=None, max_workers=1)

    def measured(result: dict, tolerance: float | None = None) -> list[dict]:
        def value(v):
            return pytest.approx(v, rel=tolerance) if tolerance and isinstance(v, float) else v

        return [{k: value(v) for k, v in row.items() if k != "sampling_seconds"} for row in result["rows"]]

    for claim in (3, 5):  # float32 features: equal up to rounding across processes
        assert again[claim]["rows"] and measured(again[claim]) == measured(results[claim], tolerance=1e-6)
    assert json.loads((tmp_path / "reproduce_meta.json").read_text())["workers"] == 1


def test_a_changed_preset_invalidates_the_cached_run(fast_run, monkeypatch):
    import dataclasses

    from reproduction import runs

    root, _ = fast_run
    folder = root / "cache" / "digits-fast"
    settings = runs.trainer_settings(RUNS["digits"], root / "cache", fast=True)
    assert runs._cached(folder, settings)
    digits = runs.get_preset("digits")
    changed = dataclasses.replace(digits, sampling=dataclasses.replace(digits.sampling, num_inference_steps=99))
    monkeypatch.setattr(runs, "get_preset", lambda name: changed if name == "digits" else digits)
    assert not runs._cached(folder, settings)  # the old code compared the flags alone and reused the stale run


def test_a_cache_record_written_before_a_preset_field_existed_still_matches_at_the_fields_default(fast_run):
    from reproduction import runs

    root, _ = fast_run
    folder = root / "cache" / "digits-fast"
    settings = runs.trainer_settings(RUNS["digits"], root / "cache", fast=True)
    path = folder / FLAGS_FILE
    written = path.read_text()
    record = json.loads(written)
    try:
        for section, field, still_cached in (
            ("ebm_training", "ema_decay", True),  # the digits preset keeps the default (0: no EMA)
            ("sampling", "decoder_output", False),  # digits sets "sample", not the default "mean"
        ):
            older = {**record["preset"], section: {k: v for k, v in record["preset"][section].items() if k != field}}
            path.write_text(json.dumps({**record, "preset": older}))
            assert runs._cached(folder, settings) is still_cached  # the first was False: an exact comparison
    finally:
        path.write_text(written)


def test_claim_2_starts_both_spaces_from_the_same_images_and_refuses_a_stale_x_space_run(fast_run, tmp_path):
    from reproduction import claim_sampling_space
    from reproduction.context import Context

    from vaebm_hub import VAEBMPipeline

    root, results = fast_run
    rows = {(r["space"], r["langevin_steps"]): r for r in results[2]["rows"]}
    assert results[2]["decoder_output"] == "sample"  # the digits preset's images
    assert rows["eps", 0]["fd_clf"] == pytest.approx(rows["x", 0]["fd_clf"], rel=1e-5)  # the same K = 0 images
    context = Context(fast=True, cache_dir=root / "cache", output_dir=tmp_path)
    stale = VAEBMPipeline.from_pipe(context.pipeline("digits_x_space"), decoder_output="mean")
    context._pipelines["digits_x_space"] = stale  # an x-space run trained when its chains started from means
    with pytest.raises(RuntimeError, match="delete .*digits_x_space-fast to retrain it"):
        claim_sampling_space.run(context)


def test_claim_1_scores_the_mean_of_its_draws_each_from_its_own_seed_and_keeps_each_draws_verdict(
    monkeypatch, tmp_path
):
    from reproduction import claim_gain, context

    calls = []

    def fake_evaluation(pipe, dataset, *, num_samples, chain_lengths, ood_set_names, seed, output_dir):
        calls.append((seed, output_dir))
        # K = 2 closes 0.9 of the VAE's gap in draw 0 (seed 5) and 0.5 in draw 1
        vae, chain = [(10.0, 1.0), (30.0, 15.0)][seed - 5]
        rows = [{key: 0.5 for key in ROW_KEYS} | {"langevin_steps": k, "fd_minus_floor": fd, "fd_rand_minus_floor": fd}
                for k, fd in zip(chain_lengths, (vae, chain))]  # fmt: skip
        return {"rows": rows, "meta": {"classifier_test_accuracy": 0.9}}

    monkeypatch.setattr(context, "evaluate_pipeline", fake_evaluation)
    ctx = context.Context(fast=True, cache_dir=tmp_path, output_dir=tmp_path, seed=5)
    ctx._pipelines["digits"] = object()
    digits = claim_gain.run(ctx)["datasets"]["digits"]
    assert [seed for seed, _ in calls] == [5, 6] and calls[0][1] is not None and calls[1][1] is None
    assert digits["num_draws"] == 2 and [r["fd_minus_floor"] for r in digits["rows"]] == [20.0, 8.0]
    assert digits["gap_closed"] == pytest.approx(0.6)
    assert [v["spaces"]["clf"]["gap_closed"] for v in digits["draw_verdicts"]] == pytest.approx([0.9, 0.5])
    assert [v["met"] for v in digits["draw_verdicts"]] == [True, False]


def test_claim_1_scores_each_pipeline_at_its_own_default_chain_length_too():
    from types import SimpleNamespace

    from reproduction import claim_gain

    from vaebm_hub.schedulers import LangevinScheduler

    def lengths(default: int) -> tuple[int, ...]:
        pipe = SimpleNamespace(scheduler=LangevinScheduler(default_num_inference_steps=default))
        return claim_gain.chain_lengths(pipe)

    assert lengths(50) == (0, 10, 30, 50, 100)
    assert lengths(30) == claim_gain.CHAIN_LENGTHS == (0, 10, 30, 100)


def test_mean_rows_keeps_missing_values_missing_and_refuses_draws_of_other_chain_lengths():
    draws = [[{"langevin_steps": 0, "fd": 1.0, "kl": None}], [{"langevin_steps": 0, "fd": 3.0, "kl": 0.5}]]
    means = mean_rows(draws)
    assert means == [{"langevin_steps": 0, "fd": 2.0, "kl": None}] and isinstance(means[0]["langevin_steps"], int)
    with pytest.raises(ValueError, match="chain lengths"):
        mean_rows([[{"langevin_steps": 0}], [{"langevin_steps": 10}]])


def test_gap_closed_is_the_share_of_the_vae_gap_removed_by_the_best_chain():
    rows = [{"langevin_steps": 0, "fd_minus_floor": 20.0}, {"langevin_steps": 10, "fd_minus_floor": 8.0},
            {"langevin_steps": 30, "fd_minus_floor": 5.0}]  # fmt: skip
    assert gap_closed(rows) == (0.75, 30)


def test_unknown_claims_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown claims"):
        run_claims([9], fast=True, output_dir=tmp_path, cache_dir=tmp_path, docs_path=None)
