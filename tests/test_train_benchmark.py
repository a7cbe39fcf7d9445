"""``benchmarks/train.py`` runs end to end through the real trainer (it builds ``LoopOptions`` itself, so a new
trainer option must reach it: ``divergence_growth_factor`` once broke it without a test noticing)."""

from __future__ import annotations

import json
import sys

import pytest
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
