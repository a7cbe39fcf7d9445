"""End-to-end training runs on CPU with tiny configs: ``accelerate launch`` per stage, two processes, resume after
``kill -9`` equal to an uninterrupted run, the divergence guard, the Hub push path and the demo's code path."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from accelerate.utils import write_basic_config
from conftest import sample_without_the_package
from safetensors.torch import load_file

from vaebm_hub import VAEBMVAE, VAEBMPipeline
from vaebm_hub.training import TrainingDivergedError, main
from vaebm_hub.training.checkpointing import list_checkpoints, read_state

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = str(ROOT / "examples" / "train.py")
TINY = [
    "--dataset_name", "digits", "--train_batch_size", "8", "--ebm_n_channel", "4", "--langevin_steps", "2",
    "--sample_langevin_steps", "2", "--num_sample_images", "4", "--data_init_batches", "1", "--report_to", "none",
]  # fmt: skip


ONE_SCALE_VAE = {"in_channels": 1, "sample_size": 8, "num_latent_scales": 1}  # the digits preset has two


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **extra}


def run(cmd: list[str], extra_env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, env=env(**(extra_env or {})), capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture(scope="module")
def accelerate_config(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("accelerate") / "default_config.json"
    write_basic_config(mixed_precision="no", save_location=str(path))
    return str(path)


def launch(config: str, *args: str, launcher_args: tuple[str, ...] = (), extra_env=None):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, *launcher_args, TRAIN_SCRIPT]
    return run(cmd + list(args), extra_env)


def kill_during_checkpoint_write(cmd: list[str], output_dir: Path, checkpoint: str) -> None:
    """Start ``cmd`` and ``kill -9`` it from outside while it writes ``checkpoint``: as soon as the checkpoint's
    temporary folder appears the process is frozen (SIGSTOP), checked to be mid-write, then killed."""
    tmp, final = output_dir / f".tmp-{checkpoint}", output_dir / checkpoint
    process = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    try:
        while not tmp.is_dir():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{cmd} ended before writing {checkpoint}: {process.stderr.read()[-3000:]!r}")
            time.sleep(0.0002)
        process.send_signal(signal.SIGSTOP)
        assert tmp.is_dir() and not final.exists(), "the write finished before the process could be frozen"
    finally:
        process.kill()
        process.wait()
        process.stderr.close()


def weights(folder: Path) -> dict[str, torch.Tensor]:
    (file,) = list(folder.glob("*.safetensors"))
    return load_file(file)


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> None:
    """Bitwise equal weights, or with ``atol`` equal within that absolute tolerance."""
    assert a.keys() == b.keys()
    for key in a:
        if atol == 0.0:
            assert torch.equal(a[key], b[key]), key
        else:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=key)


def test_accelerate_launch_stage_vae_then_stage_ebm(accelerate_config, tmp_path):
    vae_dir, ebm_dir = tmp_path / "vae", tmp_path / "ebm"
    launch(accelerate_config, *TINY, "--stage", "vae", "--output_dir", str(vae_dir), "--max_train_steps", "2")
    pipe = VAEBMPipeline.from_pretrained(vae_dir)
    images = torch.rand(3, 1, 8, 8)
    assert torch.equal(pipe.energy(images), torch.zeros(3))  # stage vae ships a placeholder EBM with E == 0
    assert [s for s, _ in list_checkpoints(vae_dir)] == [2] and (vae_dir / "samples" / "vae-000002.png").is_file()

    launch(
        accelerate_config, *TINY, "--stage", "ebm", "--vae_name_or_path", str(vae_dir), "--output_dir",
        str(ebm_dir), "--max_train_steps", "2",
    )  # fmt: skip
    trained = VAEBMPipeline.from_pretrained(ebm_dir)
    assert_same_weights(weights(ebm_dir / "vae"), weights(vae_dir / "vae"))  # the VAE stayed frozen
    assert not torch.equal(trained.energy(images), torch.zeros(3))
    assert read_state(ebm_dir / "checkpoint-2")["stage"] == "ebm"
    assert (ebm_dir / "checkpoint-2" / "frozen_vae" / "config.json").is_file()
    assert (ebm_dir / "samples" / "ebm-000002.png").is_file()


def test_accelerate_launch_stage_all_bf16_with_tensorboard(accelerate_config, tmp_path):
    out = tmp_path / "all"
    steps = ["--vae_max_train_steps", "2", "--ebm_max_train_steps", "2", "--mixed_precision", "bf16"]
    launch(accelerate_config, *TINY, "--stage", "all", "--output_dir", str(out), *steps, "--report_to", "tensorboard")
    pipe = VAEBMPipeline.from_pretrained(out)
    assert pipe(2, num_inference_steps=2, output_type="np").images.shape == (2, 8, 8, 1)
    assert [(s, read_state(p)["stage"]) for s, p in list_checkpoints(out)] == [(2, "vae"), (4, "ebm")]
    assert list((out / "logs").rglob("events.out.tfevents*")), "TensorBoard logs are missing"
    card = (out / "README.md").read_text()
    assert "library_name: diffusers" in card and "pipeline_tag: unconditional-image-generation" in card
    assert "trust_remote_code=True" in card and 'VAEBMPipeline.from_pretrained("' in card
    # The trainer saves the published layout: plain diffusers loads it without the package, with the same chain.
    results = sample_without_the_package({"trained": out}, tmp_path)
    expected = pipe(batch_size=2, num_inference_steps=2, output_type="pt", generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(results["trained/None"][0], expected.images, rtol=0, atol=1e-6)


def test_two_process_cpu_run(accelerate_config, tmp_path):
    out = tmp_path / "ddp"
    launch(
        accelerate_config, *TINY, "--stage", "all", "--output_dir", str(out), "--vae_max_train_steps", "2",
        "--ebm_max_train_steps", "2",
        launcher_args=("--multi_gpu", "--num_processes", "2", "--main_process_port", "0"),
        extra_env={"ACCELERATE_USE_CPU": "1"},
    )  # fmt: skip
    VAEBMPipeline.from_pretrained(out)
    last = out / "checkpoint-4"
    assert read_state(last)["num_processes"] == 2
    assert {p.name for p in last.glob("trainer_state_*.pt")} == {"trainer_state_0.pt", "trainer_state_1.pt"}


def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path):
    """kill -9 during checkpoint writes in both stages, resume with `latest`: same final weights as straight
    (on a one-scale VAE; two scales drift, see the xfail test below)."""
    (tmp_path / "vae.json").write_text(json.dumps(ONE_SCALE_VAE))
    args = [
        *TINY, "--vae_config", str(tmp_path / "vae.json"), "--stage", "all", "--vae_max_train_steps", "3",
        "--ebm_max_train_steps", "4", "--checkpointing_steps", "1", "--checkpoints_total_limit", "2", "--use_ema",
        "--ebm_ema_decay", "0.5", "--vae_spectral_reg_coeff", "0.01", "--random_flip", "--replay_anneal_steps", "1",
        "--gradient_accumulation_steps", "2",
    ]  # fmt: skip
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run([sys.executable, TRAIN_SCRIPT, *args, "--output_dir", str(straight)])

    cmd = [sys.executable, TRAIN_SCRIPT, *args, "--output_dir", str(resumed), "--resume_from_checkpoint", "latest"]
    for kill_at, last_good in (("checkpoint-2", 1), ("checkpoint-6", 5)):  # mid stage 1, then mid stage 2
        kill_during_checkpoint_write(cmd, resumed, kill_at)
        assert (resumed / f".tmp-{kill_at}").is_dir() and not (resumed / kill_at).exists()
        assert list_checkpoints(resumed)[-1][0] == last_good
    run(cmd)

    for part in ("vae", "ebm"):
        assert_same_weights(weights(resumed / part), weights(straight / part))
    assert [s for s, _ in list_checkpoints(resumed)] == [6, 7]  # pruned to the newest two
    assert not list(resumed.glob(".tmp-*"))


def test_stage_two_resumed_on_a_two_scale_vae_ends_within_float_rounding_of_the_straight_run(tmp_path):
    """On a two-scale VAE the resumed stage 2 ends bitwise equal on some CPUs and ~4e-9 away on others (it was a strict
    xfail until a CPU on which it is exact made it pass): equal up to float32 rounding, far below what a wrongly
    restored optimiser, buffer or random state moves (the weights change by ~1e-4 per step)."""
    args = [*TINY, "--stage", "all", "--vae_max_train_steps", "3", "--ebm_max_train_steps", "4",
            "--checkpointing_steps", "1", "--checkpoints_total_limit", "2"]  # fmt: skip
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run([sys.executable, TRAIN_SCRIPT, *args, "--output_dir", str(straight)])
    cmd = [sys.executable, TRAIN_SCRIPT, *args, "--output_dir", str(resumed), "--resume_from_checkpoint", "latest"]
    kill_during_checkpoint_write(cmd, resumed, "checkpoint-6")
    run(cmd)
    assert_same_weights(weights(resumed / "ebm"), weights(straight / "ebm"), atol=1e-7)


def test_divergence_guard_rolls_back_then_gives_up_without_saving_nan(tmp_path, capsys):
    vae_dir, out = tmp_path / "vae", tmp_path / "out"
    torch.manual_seed(0)
    VAEBMVAE().save_pretrained(vae_dir)
    args = [
        *TINY, "--stage", "ebm", "--vae_name_or_path", str(vae_dir), "--output_dir", str(out),
        "--max_train_steps", "8", "--checkpointing_steps", "1", "--learning_rate", "1e3",
        "--divergence_max_retries", "2", "--divergence_lr_factor", "0.1",
    ]  # fmt: skip
    # the fix names stage 2's own flags (the message named the shared --learning_rate and no energy bound before)
    gave_up = r"Giving up; the last good checkpoint is .*checkpoint-.*--ebm_learning_rate.*--energy_l2_coeff"
    with pytest.raises(TrainingDivergedError, match=gave_up):
        main(args)
    log = capsys.readouterr().out
    assert "scaled by 0.1 (retry 1/2)" in log and "scaled by 0.01 (retry 2/2)" in log
    saved = [path for _, path in list_checkpoints(out)] + list(out.glob("checkpoint-*-start"))
    assert saved
    for path in saved:
        for name, tensor in weights(path).items():
            assert torch.isfinite(tensor).all(), f"{path.name}/{name} holds a non-finite weight"
    assert not (out / "model_index.json").exists()


def test_push_to_hub_uploads_only_the_pipeline(tmp_path, monkeypatch):
    from huggingface_hub import constants as hub_constants

    from vaebm_hub.hub import push

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, *, folder_path, allow_patterns, **kwargs):
            calls.append(("upload_folder", allow_patterns, (Path(folder_path) / "README.md").read_text()))

    monkeypatch.setattr(push, "HfApi", FakeApi)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)  # the fake API stands in for the network
    out = tmp_path / "out"
    main([*TINY, "--stage", "vae", "--max_train_steps", "1", "--output_dir", str(out), "--push_to_hub",
          "--hub_model_id", "me/vaebm-digits", "--hub_token", "hf_x", "--hub_private_repo",
          "--checkpointing_steps", "1"])  # fmt: skip
    assert any(path.name.startswith("checkpoint-") for path in out.iterdir())
    early, (_, token), (_, repo_id, create), (_, sent, card) = calls[:2], *calls[2:]
    assert [c[0] for c in early] == ["init", "create_repo"]  # the repo is made before step 1, as diffusers does
    assert (token, repo_id, create["private"]) == ("hf_x", "me/vaebm-digits", True)
    assert "README.md" in sent and "vae/diffusion_pytorch_model.safetensors" in sent
    assert not any(name.startswith(("checkpoint", "logs", "samples/")) for name in sent)
    assert 'from_pretrained("me/vaebm-digits")' in card and "hf_x" not in card


def test_push_to_hub_offline_fails_before_training(tmp_path):
    from huggingface_hub.errors import OfflineModeIsEnabled

    out = tmp_path / "out"
    with pytest.raises(OfflineModeIsEnabled, match="HF_HUB_OFFLINE"):
        main([*TINY, "--stage", "vae", "--max_train_steps", "1", "--output_dir", str(out), "--push_to_hub",
              "--hub_model_id", "me/vaebm-digits"])  # fmt: skip
    assert not out.exists() or not any(out.iterdir())


def test_demo_code_path_at_tiny_size(tmp_path, monkeypatch):
    import demo

    monkeypatch.setenv("VAEBM_HUB_CACHE", str(tmp_path / "cache"))
    metrics = demo.run_demo(tmp_path / "demo", fast=True)
    assert [r["langevin_steps"] for r in metrics["rows"]] == list(demo.FAST_CHAIN_LENGTHS)
    assert all(r["fd_clf"] > 0 and 0 <= r["precision"] <= 1 for r in metrics["rows"])
    assert json.loads((tmp_path / "demo" / "metrics.json").read_text())["fd_classifier_floor"] > 0
    assert (tmp_path / "demo" / "samples.png").is_file() and (tmp_path / "demo" / "metrics.md").is_file()
    VAEBMPipeline.from_pretrained(tmp_path / "demo" / "pipeline")


def test_epoch_flags_save_the_model_and_log_the_run_summary(tmp_path, caplog, monkeypatch):
    out = tmp_path / "out"
    saves = []
    run_module = importlib.import_module("vaebm_hub.training.run")
    original = run_module.save_pipeline
    monkeypatch.setattr(run_module, "save_pipeline", lambda *args: (saves.append(1), original(*args)))
    with caplog.at_level("INFO"):
        main([
            *TINY, "--stage", "vae", "--train_batch_size", "512", "--vae_num_epochs", "2",
            "--save_model_epochs", "1", "--output_dir", str(out),
        ])  # fmt: skip
    assert len(saves) == 3  # after epoch 1, after epoch 2, and at the end of the stage
    assert "***** Running training: stage vae *****" in caplog.text and "Total optimization steps = 6" in caplog.text
    VAEBMPipeline.from_pretrained(out)
