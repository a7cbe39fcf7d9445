"""The benchmark scripts that no other test runs still run against the package, on their smallest settings, with
their results written to a temporary folder. ``benchmarks/train.py`` once built the trainer's ``LoopOptions`` by
hand, and a new trainer option (``divergence_growth_factor``) broke it without a test noticing."""

from __future__ import annotations

import json
import sys

import chain_precision
import conversion_accuracy
import evaluation_sampling
import half_precision
import pytest
import robustness
import train


def test_the_training_benchmark_runs_end_to_end_and_writes_its_report(tmp_path, monkeypatch):
    digits = next(name for name in train.CONFIGS if name.startswith("digits"))
    monkeypatch.setattr(train, "CONFIGS", {digits: train.CONFIGS[digits]})
    monkeypatch.setattr(train, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py", "--repeats", "1", "--iterations", "1", "--threads", "1"])
    train.main()
    result = json.loads((tmp_path / "train.json").read_text())["results"][digits]
    rates = result["ebm_steps_per_second"]
    assert set(rates) == {"baseline (all three)", *(f"baseline without {w}" for w in train.WASTE), train.EAGER,
                          "trainer", train.CHANNELS_LAST}  # fmt: skip
    assert all(rate > 0 for rate in rates.values()) and result["vae_steps_per_second"] > 0
    assert result["ebm_speedup"] == pytest.approx(rates["trainer"] / rates["baseline (all three)"], rel=1e-2)
    assert digits in (tmp_path / "train.md").read_text()


def test_the_conversion_accuracy_benchmark_reproduces_the_official_outputs(tmp_path, monkeypatch):
    monkeypatch.setattr(conversion_accuracy, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["conversion_accuracy.py"])
    conversion_accuracy.main()
    errors = json.loads((tmp_path / "conversion_accuracy.json").read_text())
    assert {f"ebm_{layout}" for layout in conversion_accuracy.EBM_LAYOUTS} <= set(errors)
    worst = max(error for fixture in errors.values() for error in fixture.values())
    assert worst < 1e-3  # float32 rounding of summed log-densities; a wrong conversion is off by orders more


def test_the_half_precision_benchmark_moves_the_chain_in_every_dtype(tmp_path, monkeypatch):
    monkeypatch.setattr(half_precision, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["half_precision.py", "--steps", "2", "--num_samples", "64"])
    half_precision.main()
    rows = json.loads((tmp_path / "half_precision.json").read_text())["rows"]
    assert set(rows) == {"float32", "bfloat16", "float16"}
    assert rows["float32"]["max_diff_vs_float32"] == 0.0
    assert all(row["eps_displacement"] > 0 and row["fd_clf"] > 0 for row in rows.values())


def test_the_robustness_catalogue_runs_and_handles_its_cases(tmp_path, monkeypatch):
    monkeypatch.setattr(robustness, "RESULTS", tmp_path)
    robustness.main(["--label", "smoke", "--cases", "pipeline/numpy*,trainer/--lr_scheduler*"])
    cases = json.loads((tmp_path / "robustness_smoke.json").read_text())["cases"]
    assert cases and {case["outcome"] for case in cases} <= {"clear", "ok"}, cases


def test_the_chain_precision_benchmark_times_both_dtypes_and_measures_the_gradient_error(tmp_path, monkeypatch):
    monkeypatch.setattr(chain_precision, "RESULTS", tmp_path)
    argv = ["chain_precision.py", "--repeats", "1", "--iterations", "1", "--threads", "1"]
    monkeypatch.setattr(sys, "argv", argv)
    chain_precision.main()
    report = json.loads((tmp_path / "chain_precision.json").read_text())
    row = report["seconds_per_step"]["1"]
    assert row["float32"] > 0 and row["bfloat16"] > 0
    assert row["ratio"] == pytest.approx(row["bfloat16"] / row["float32"])
    assert 0 < report["gradient_error"]["relative_error_dE"] < 3e-2
    assert "bfloat16 chains" in (tmp_path / "chain_precision.md").read_text()


def test_the_evaluation_sampling_benchmark_draws_the_same_samples_from_one_chain(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluation_sampling, "RESULTS", tmp_path)
    argv = ["--presets", "digits", "--num_samples", "8", "--repeats", "1", "--chain_lengths", "0", "2", "3"]
    evaluation_sampling.main(argv)
    result = json.loads((tmp_path / "evaluation_sampling.json").read_text())["presets"]["digits"]
    steps = {"one call per length": 5, "one chain (sample_images_at)": 3}
    assert result["identical_samples"] and result["chain_steps"] == steps
    assert result["ratio"] > 0 and "sample_images_at" in (tmp_path / "evaluation_sampling.md").read_text()
