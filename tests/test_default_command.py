"""Claim 6 measured directly: ``benchmarks/default_command.py`` runs the README's default command through
``accelerate launch`` with a default config, and claim 6 counts its result only for the bare command and the current
``mnist`` preset."""

from __future__ import annotations

import json
from pathlib import Path

import default_command
import pytest
from reproduction import claim_wall_time
from reproduction.claim_wall_time import COMMAND, DATASET, DIRECT_RESULT, direct_result
from reproduction.context import Context
from reproduction.results_doc import SECTIONS
from reproduction.runs import preset_record

SPACE = {"gap_closed": 0.8, "best_langevin_steps": 30, "longest_no_worse": True}
VERDICT = {"vae_confident_fraction": 0.6, "spaces": {"clf": SPACE, "rand": SPACE}, "met": True}


def write_direct(folder: Path, **changes) -> None:
    result = {"command": COMMAND, "preset": preset_record(DATASET), "seconds": 1500.0, "stage_1_seconds": 900.0,
              "stage_2_seconds": 600.0, "threads": 2, "machine": "x86_64, 2 physical cores", "cores": 2,
              "device": "cpu", "torch": "2.13.0", "launched_as": "accelerate launch ...",
              "rows": [{"langevin_steps": 0}, {"langevin_steps": 100}], "verdict": VERDICT}  # fmt: skip
    (folder / DIRECT_RESULT).write_text(json.dumps({**result, **changes}))


def test_a_direct_result_counts_only_for_the_scored_bare_command_on_2_cpu_cores_and_the_current_preset(tmp_path):
    assert direct_result(tmp_path) == (None, "missing")
    write_direct(tmp_path)
    assert direct_result(tmp_path)[1] == "current"
    current = preset_record(DATASET)
    # a record written before a section field existed describes the same run when the field is at its default
    older = {**current, "sampling": {k: v for k, v in current["sampling"].items() if k != "decoder_output"}}
    write_direct(tmp_path, preset=older)
    assert direct_result(tmp_path)[1] == "current"  # was "stale": the comparison ignored the field's default
    dropped = "bernoulli_negative_fraction"  # 0.5 in mnist's preset, 0 by default
    not_default = {**current, "ebm_training": {k: v for k, v in current["ebm_training"].items() if k != dropped}}
    stale_preset = {**current, "ebm_training": {**current["ebm_training"], "max_train_steps": 1}}
    for changes, state in (
        (dict(preset=not_default), "stale"),  # a missing field counts as its default, not as the current value
        (dict(preset=stale_preset), "stale"),
        (dict(command=COMMAND + " --ebm_max_train_steps 1"), "other command"),
        (dict(verdict=None), "unscored"),
        (dict(cores=16), "other machine"),
        (dict(device="cuda"), "other machine"),
    ):
        write_direct(tmp_path, **changes)
        if changes.get("verdict", VERDICT) is None:  # --no-score writes no verdict at all
            result = json.loads((tmp_path / DIRECT_RESULT).read_text())
            del result["verdict"]
            (tmp_path / DIRECT_RESULT).write_text(json.dumps(result))
        assert direct_result(tmp_path) == (None, state)


def test_claim_6_takes_time_and_mnist_row_from_a_current_direct_result(tmp_path):
    ctx = Context(cache_dir=tmp_path / "empty-cache", output_dir=tmp_path)  # the fallback would need a cached run
    write_direct(tmp_path)
    assert claim_wall_time.training_runs(ctx) == ()  # nothing to train for it in make reproduce
    result = claim_wall_time.run(ctx)
    assert result["target_met"] and result["direct_result"] == "current" and result["seconds"] == 1500.0
    report = "\n".join(SECTIONS[6](result, tmp_path, tmp_path))
    assert "benchmarks/default_command.py" in report and "**25.0 min**" in report and "row met" in report
    write_direct(tmp_path, seconds=1801.0)
    assert not claim_wall_time.run(ctx)["target_met"]  # over 30 minutes
    write_direct(tmp_path, verdict={**VERDICT, "met": False})
    assert not claim_wall_time.run(ctx)["target_met"]  # claim 1's MNIST row not reached


def test_the_benchmark_times_the_command_through_accelerate_launch_and_writes_its_result(tmp_path):
    tiny = ["--vae_max_train_steps", "2", "--ebm_max_train_steps", "1", "--train_batch_size", "4",
            "--langevin_steps", "1", "--readjust_bn_batches", "1", "--data_init_batches", "1",
            "--num_sample_images", "4", "--report_to", "none"]  # fmt: skip
    out, results = tmp_path / "m", tmp_path / "results"
    argv = ["--output_dir", str(out), "--results", str(results), "--threads", "1", "--no-score", "--", *tiny]
    assert default_command.main(argv) == 0
    result = json.loads((results / DIRECT_RESULT).read_text())
    assert result["command"] == f"{COMMAND} {' '.join(tiny)}" and result["threads"] == 1
    assert "--config_file" in result["launched_as"] and "--num_cpu_threads_per_process 1" in result["launched_as"]
    assert 0 < result["stage_1_seconds"] < result["seconds"] and "verdict" not in result
    assert (out / "model_index.json").is_file() and (results / "default_command.md").is_file()
    assert direct_result(results) == (None, "other command")  # extra flags: not the command claim 6 is about


def test_the_benchmark_deletes_only_an_earlier_training_run_in_its_output_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds no training run"):
        default_command.clear_output_dir(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    (tmp_path / "model_index.json").write_text("{}")
    default_command.clear_output_dir(tmp_path)
    assert not tmp_path.exists()
