"""Unit tests of the trainer's parts against closed forms: replay buffer, IGEBM clipping, KL warm-up/balancing, the
divergence guard, atomic checkpoints, the resumable batch stream, settings precedence and the Hub upload filter."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from conftest import make_tiny_pipeline
from huggingface_hub import constants as hub_constants
from huggingface_hub import metadata_load
from huggingface_hub.utils import filter_repo_objects
from PIL import Image

from vaebm_hub import VAEBMVAE, VAEBMEnergyModel
from vaebm_hub.data import build_train_dataset
from vaebm_hub.presets import get_preset
from vaebm_hub.training import (
    DivergenceGuard,
    ReplayBuffer,
    TrainingDivergedError,
    clip_grad_igebm_,
    parse_args,
    push_trained_pipeline,
    replay_probability,
    write_model_card,
)
from vaebm_hub.training.checkpointing import (
    STATE_FILE,
    commit_directory,
    list_checkpoints,
    remove_stale_temporaries,
    resolve_resume,
    write_atomically,
)
from vaebm_hub.training.config import resolve_preset
from vaebm_hub.training.data_stream import BatchStream, ShardedBatchSampler
from vaebm_hub.training.ebm_stage import negative_images
from vaebm_hub.training.run import card_rows, cpu_thread_hint
from vaebm_hub.training.vae_stage import balanced_kl, kl_balance_weights, kl_coefficient

# ------------------------------------------------------------------------------------------------ replay buffer


def test_replay_buffer_is_fifo_and_capped():
    buffer = ReplayBuffer(capacity=5, dim=2)
    buffer.push(torch.arange(6.0).view(3, 2))
    buffer.push(torch.arange(6.0, 14.0).view(4, 2))
    assert len(buffer) == 5
    # rows 0 and 1 (the oldest) were dropped; the rest stay oldest first
    assert torch.equal(buffer.contents(), torch.arange(4.0, 14.0).view(5, 2))


def test_replay_probability_anneals_linearly_then_saturates():
    assert replay_probability(0, 0.6, 5000) == 0.0
    assert replay_probability(2500, 0.6, 5000) == pytest.approx(0.3)
    assert replay_probability(5000, 0.6, 5000) == pytest.approx(0.6)
    assert replay_probability(10**6, 0.6, 5000) == pytest.approx(0.6)
    assert replay_probability(3, 0.6, 0) == 0.6


def test_replay_rows_come_from_the_buffer_at_the_requested_rate():
    buffer = ReplayBuffer(capacity=100_000, dim=1)
    buffer.push(torch.arange(50_000.0).view(-1, 1))
    fresh = torch.full((20_000, 1), -1.0)
    out = buffer.replace_rows(fresh, 0.3, torch.Generator().manual_seed(0))
    replayed = out[:, 0] >= 0
    assert replayed.float().mean().item() == pytest.approx(0.3, abs=0.01)
    assert torch.unique(out[replayed, 0]).numel() == int(replayed.sum())  # drawn without replacement
    again = buffer.replace_rows(fresh, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_replay_edge_cases_and_state_round_trip():
    fresh = torch.zeros(4, 3)
    empty = ReplayBuffer(capacity=10, dim=3)
    assert empty.replace_rows(fresh, 1.0) is fresh
    buffer = ReplayBuffer(capacity=10, dim=3)
    buffer.push(torch.ones(2, 3))
    assert buffer.replace_rows(fresh, 0.0) is fresh
    assert torch.equal(buffer.replace_rows(fresh, 1.0, torch.Generator().manual_seed(1)), torch.ones(4, 3))
    restored = ReplayBuffer(capacity=10, dim=3)
    restored.load_state_dict(buffer.state_dict())
    assert torch.equal(restored.contents(), buffer.contents())
    with pytest.raises(ValueError, match="shape"):
        buffer.push(torch.ones(2, 4))


# ------------------------------------------------------------------------------------------------ IGEBM clipping


def test_igebm_clipping_bound_is_three_sqrt_vhat_plus_point_one():
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.Adam([param], lr=1e-3, betas=(0.99, 0.999))
    g0 = torch.tensor([1.0, -2.0, 0.5])
    param.grad = g0.clone()
    clip_grad_igebm_(optimizer)  # no Adam state yet: no clipping
    assert torch.equal(param.grad, g0)
    optimizer.step()
    # after one step exp_avg_sq = (1 - beta2) g0^2 and v_hat = g0^2, so the bound is 3 |g0| + 0.1
    param.grad = torch.tensor([100.0, 100.0, -0.2])
    clip_grad_igebm_(optimizer)
    assert torch.allclose(param.grad, torch.tensor([3.1, 6.1, -0.2]))
    optimizer.step()
    g1 = param.grad.clone()
    v_hat = (0.999 * 0.001 * g0**2 + 0.001 * g1**2) / (1 - 0.999**2)
    param.grad = torch.full((3,), -1e3)
    clip_grad_igebm_(optimizer)
    assert torch.allclose(param.grad, -(3 * v_hat.sqrt() + 0.1))


# ------------------------------------------------------------------------------------------------ VAE stage maths


def test_kl_warmup_coefficient():
    assert kl_coefficient(0, 1000, 0.3, 1e-4) == 1e-4
    assert kl_coefficient(150, 1000, 0.3, 1e-4) == pytest.approx(0.5)
    assert kl_coefficient(300, 1000, 0.3, 1e-4) == 1.0
    assert kl_coefficient(999, 1000, 0.3, 1e-4) == 1.0
    assert kl_coefficient(0, 1000, 0.0, 1e-4) == 1.0


def test_kl_balance_weights_grow_as_four_to_the_scale_over_group_count():
    # top scale: 2 groups (4^0 / 2), next: 3 groups (4^1 / 3); divided by the minimum 1/2
    assert torch.allclose(kl_balance_weights([2, 3]), torch.tensor([1, 1, 8 / 3, 8 / 3, 8 / 3]))


def test_balanced_kl_coefficients_are_detached_and_mean_one():
    kl = torch.tensor([[1.0, 4.0], [3.0, 0.0]], requires_grad=True)  # (B=2, G=2)
    alpha = torch.tensor([1.0, 4.0])
    out = balanced_kl(kl, 0.5, alpha)
    gamma = torch.tensor([2.0 + 0.01, 2.0 + 0.01]) / alpha  # mean |KL| per group + 0.01, over alpha
    gamma = gamma / gamma.mean()
    assert torch.allclose(out, 0.5 * (kl.detach() * gamma).sum(dim=1))
    out.sum().backward()
    assert torch.allclose(kl.grad, 0.5 * gamma.expand(2, 2))  # gamma is a constant
    assert torch.allclose(balanced_kl(kl, 1.0, alpha), kl.sum(dim=1))  # no balancing once the warm-up is over


# ------------------------------------------------------------------------------------------------ divergence guard


def test_guard_flags_nonfinite_values_and_blowups_only_after_history():
    guard = DivergenceGuard(watch=("energy_gap",), steady_watch=("energy_gap",), blowup_factor=10, min_history=3)
    assert guard.check({"loss": float("nan")}) == "loss is nan"
    assert guard.check({"loss": 1.0}, weights_finite=False) == "a weight became NaN/Inf"
    assert guard.check({"energy_gap": 500.0}) is None  # no history yet
    for value in (2.0, -3.0):
        assert guard.check({"energy_gap": value}) is None
    # median of |gap| over (500, 2, 3) is 3: the limit is 30
    assert "exceeds" in guard.check({"energy_gap": 31.0})
    assert guard.check({"energy_gap": -29.0}) is None
    assert guard.history["energy_gap"] == [500.0, 2.0, 3.0, 29.0]  # a flagged step never joins the history


def _gap_guard(**kwargs) -> DivergenceGuard:
    return DivergenceGuard(watch=("energy_gap",), steady_watch=("energy_gap",), **kwargs)


def _first_flagged_step(guard: DivergenceGuard, values, checkpoint_every: int | None = None) -> int | None:
    """The first step the guard flags; with ``checkpoint_every``, a checkpoint (which must pass) after every that
    many good steps."""
    for step, value in enumerate(values):
        if guard.check({"energy_gap": float(value)}) is not None:
            return step
        if checkpoint_every and (step + 1) % checkpoint_every == 0:
            assert guard.at_checkpoint() is None  # every stretch stays within the blow-up limit of the last reference
    return None


def test_guard_catches_a_steady_blowup_before_the_first_checkpoint():
    """A stage-2 run whose |gap| grows 5% per step (StackedMNIST without the energy term grew from ~9 to 8e9 in 500
    iterations) never jumps 50x above the running median; the frozen median of the stage's first steps catches it,
    while healthy growth (100x over the run) is left alone. Before this test's fix the guard flagged neither."""
    growth = [5.0 * 1.05**step for step in range(600)]  # 5 -> 2.5e13
    step = _first_flagged_step(_gap_guard(), growth)
    assert step is not None and 5.0 * 1.05**step > 1000 * 5.0 * 1.05**24  # past 1000x the first 50 steps' median
    assert _first_flagged_step(_gap_guard(early_factor=float("inf")), growth) is None
    healthy = [5.0 * 100 ** (step / 599) for step in range(600)]
    assert _first_flagged_step(_gap_guard(), healthy) is None

    guard = _gap_guard()
    _first_flagged_step(guard, healthy[:60])
    restored = _gap_guard()
    restored.load_state_dict(guard.state_dict())  # the early reference survives a checkpoint round trip
    assert restored.early == guard.early and "energy_gap" in restored.early
    unwatched = DivergenceGuard(watch=("energy_gap",))  # the energies' level is free: not checked for growth
    assert _first_flagged_step(unwatched, growth) is None


def test_guard_catches_a_steady_blowup_after_checkpoints():
    """With a checkpoint every 50 steps the reference moves up with the run (each stretch grows 1.05^50 = 11x, under
    the 50x blow-up limit), so only the frozen median of the stage's first steps can catch the growth. The old guard
    dropped that test at the first checkpoint: a 25-Gaussians run with the trainer's default checkpoints every 500
    steps grew its loss to -5e5 unflagged, where the same run without intermediate checkpoints was caught."""
    growth = [5.0 * 1.05**step for step in range(600)]
    flagged = _first_flagged_step(_gap_guard(), growth, checkpoint_every=50)
    limit = 1000 * statistics.median(growth[:50])  # the frozen median of the stage's first 50 steps
    assert flagged is not None and growth[flagged - 1] <= limit < growth[flagged]  # the first step past it
    healthy = [5.0 * 100 ** (step / 599) for step in range(600)]
    assert _first_flagged_step(_gap_guard(), healthy, checkpoint_every=50) is None


def test_the_growth_factor_flag_reaches_the_guard_and_must_exceed_one(tmp_path):
    from vaebm_hub.training.run import plan_run

    config = parse_args(["--dataset_name", "digits", "--output_dir", str(tmp_path), "--divergence_growth_factor", "5"])
    assert {s: o.divergence_growth_factor for s, o in plan_run(config).loops.items()} == {"vae": 5.0, "ebm": 5.0}
    with pytest.raises(ValueError, match=r"--divergence_growth_factor must be > 1 \('inf' turns it off\)"):
        _gap_guard(early_factor=1.0)


def test_guard_lowers_the_learning_rate_then_gives_up():
    guard = DivergenceGuard(watch=(), max_retries=2, lr_factor=0.1)
    assert guard.on_divergence("loss is nan", 7, "checkpoint-5") == pytest.approx(0.1)
    assert guard.on_divergence("loss is nan", 7, "checkpoint-5") == pytest.approx(0.01)
    with pytest.raises(TrainingDivergedError, match="Giving up.*checkpoint-5.*--divergence_max_retries"):
        guard.on_divergence("loss is nan", 7, "checkpoint-5")
    restored = DivergenceGuard(watch=())
    restored.load_state_dict(guard.state_dict())
    assert (restored.retries, restored.lr_scale) == (2, pytest.approx(0.01))


def test_the_give_up_message_names_the_stage_flags_and_the_growth_factor_only_for_growth():
    from vaebm_hub.training.ebm_stage import EBMStage
    from vaebm_hub.training.vae_stage import VAEStage

    stage_flags = {EBMStage: ("--ebm_learning_rate", "--energy_l2_coeff"), VAEStage: ("--vae_learning_rate",)}
    for stage, flags in stage_flags.items():
        guard = DivergenceGuard(watch=(), max_retries=0, fix=stage.divergence_fix)
        with pytest.raises(TrainingDivergedError) as blowup:
            guard.on_divergence("loss is nan", 7, "checkpoint-5")
        message = str(blowup.value)
        assert all(flag in message for flag in flags) and "--divergence_growth_factor" not in message
    guard = _gap_guard(max_retries=0)
    reasons = (guard.check({"energy_gap": 5.0 * 1.05**step}) for step in range(400))  # 5% per step: flagged at 167
    reason = next(r for r in reasons if r is not None)
    with pytest.raises(TrainingDivergedError, match=r"raise --divergence_growth_factor \('inf'"):
        guard.on_divergence(reason, 399, "checkpoint-5")


def test_guard_flags_an_energy_network_that_gives_every_input_the_same_energy():
    guard = DivergenceGuard(watch=(), collapse_watch=(("energy_spread", "energy_pos"),))
    assert "collapsed" in guard.check({"energy_spread": 0.0, "energy_pos": -0.4})
    assert "collapsed" in guard.check({"energy_spread": 1e-3, "energy_pos": 2e3})  # rounding at that level
    assert guard.check({"energy_spread": 1e-3, "energy_pos": 0.5}) is None  # small but real differences
    assert guard.check({"energy_pos": 0.5}) is None  # a stage that does not report the spread
    from vaebm_hub.training.ebm_stage import EBMStage

    assert ("energy_spread", "energy_pos") in EBMStage.collapse_watch


# ------------------------------------------------------------------------------------------------ checkpoints


def test_interrupted_checkpoint_write_never_touches_the_last_good_one(tmp_path):
    good = tmp_path / "checkpoint-2"

    def write_weights(value):
        def write(tmp):
            (tmp / "weights.txt").write_text(value)

        return write

    write_atomically(good, write_weights("good"), {"step": 2}, is_main_process=True, barrier=lambda: None)

    def crash(tmp):
        (tmp / "weights.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(tmp_path / "checkpoint-4", crash, {"step": 4}, is_main_process=True, barrier=lambda: None)
    assert [p.name for _, p in list_checkpoints(tmp_path)] == ["checkpoint-2"]
    assert resolve_resume(tmp_path, "latest") == good
    assert (tmp_path / ".tmp-checkpoint-4").is_dir()
    remove_stale_temporaries(tmp_path)
    assert not (tmp_path / ".tmp-checkpoint-4").exists()
    # rewriting an existing checkpoint replaces it as a whole
    write_atomically(good, write_weights("new"), {"step": 2}, is_main_process=True, barrier=lambda: None)
    assert (good / "weights.txt").read_text() == "new" and (good / STATE_FILE).is_file()
    replacement = tmp_path / "staged"
    replacement.mkdir()
    commit_directory(replacement, good)
    assert list(good.iterdir()) == []


def test_resume_argument_errors(tmp_path):
    assert resolve_resume(tmp_path, "latest") is None
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        resolve_resume(tmp_path, "checkpoint-3")


# ------------------------------------------------------------------------------------------------ batch stream


def test_batch_stream_resumes_exactly_and_shards_disjointly():
    dataset = build_train_dataset("digits", None, resolution=None, channels=None)
    straight = BatchStream(dataset, 16, seed=3, random_flip=True)
    batches = [next(straight) for _ in range(8)]
    resumed = BatchStream(dataset, 16, seed=3, start=5, random_flip=True)
    for k in range(5, 8):
        assert torch.equal(next(resumed), batches[k])
    n = len(dataset)
    rank0, rank1 = (ShardedBatchSampler(n, 16, 3, r, 2) for r in range(2))
    per_epoch = n // 32
    seen = [i for m in range(per_epoch) for i in rank0.indices(m) + rank1.indices(m)]
    assert len(seen) == len(set(seen)) == per_epoch * 32  # one epoch: no sample twice, across both processes
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ShardedBatchSampler(10, 16, 0, 0, 1)


# ------------------------------------------------------------------------------------------------ negatives


def test_negatives_are_decoder_mean_or_sample():
    torch.manual_seed(0)
    vae = VAEBMVAE().eval()
    eps = vae.sample_noise(3, generator=torch.Generator().manual_seed(0))
    eps_z, eps_x = vae.split_noise(eps)
    decoder = vae.output_distribution(vae.decode_noise(eps_z).logits)
    assert torch.allclose(negative_images(vae, eps, use_mu_cd=True), 0.5 * decoder.mu + 0.5)
    assert torch.allclose(negative_images(vae, eps, use_mu_cd=False), decoder.rsample(eps_x))


# ------------------------------------------------------------------------------------------------ settings


def ebm_settings(flags, shape=(1, 8, 8)):
    return resolve_preset(parse_args(flags), shape).ebm_training


def vae_settings(flags, shape=(1, 8, 8)):
    return resolve_preset(parse_args(flags), shape).vae_training


def test_explicit_flags_override_the_preset_which_overrides_dataset_defaults():
    settings = ebm_settings(["--dataset_name", "digits", "--preset", "cifar10", "--ebm_learning_rate", "1e-3"])
    cifar = get_preset("cifar10")
    assert settings.learning_rate == 1e-3
    assert (settings.layout, settings.n_channel, settings.use_mu_cd) == ("cifar32", 128, False)
    assert settings.langevin_step_size == cifar.ebm_training.langevin_step_size
    settings = ebm_settings(["--dataset_name", "digits", "--use_mu_cd", "--no-use_buffer", "--learning_rate", "0.5"])
    assert settings.use_mu_cd and not settings.use_buffer and settings.learning_rate == 0.5
    stage1 = vae_settings(["--dataset_name", "digits", "--max_train_steps", "40", "--vae_learning_rate", "0.1"])
    assert (stage1.max_train_steps, stage1.learning_rate, stage1.lr_warmup_steps) == (40, 0.1, 2)


def test_gaussians25_defaults_are_the_settings_that_train_the_toy():
    """NVAE's Adamax lr 1e-2 diverges on the toy's MLP VAE; the defaults are the tuned ones of docs/results.md."""
    flags = ["--dataset_name", "gaussians25"]
    stage1, stage2 = vae_settings(flags, (2,)), ebm_settings(flags, (2,))
    sampling = resolve_preset(parse_args(flags), (2,)).sampling
    assert (stage1.learning_rate, stage1.max_train_steps) == (2e-3, 10000)
    assert (stage2.learning_rate, stage2.max_train_steps, stage2.pixel_noise) == (3e-4, 10000, False)
    assert stage2.langevin_step_size == sampling.step_size == "auto"  # from the decoder's scale
    assert vae_settings(["--dataset_name", "digits"]).learning_rate == 1e-2


def test_a_vae_config_without_a_class_name_keeps_the_presets_class(tmp_path):
    """The old code took NVAE for any --vae_config without _class_name: an MLP config for the toy then failed with
    "the 'gaussians25' preset's NVAE models images"."""
    (tmp_path / "mlp.json").write_text(json.dumps({"latent_dim": 2, "hidden_dim": 256, "num_layers": 3}))
    flags = ["--dataset_name", "gaussians25", "--vae_config", str(tmp_path / "mlp.json")]
    preset = resolve_preset(parse_args(flags), (2,))
    assert preset.vae_class == "VAEBMMLPVAE" and preset.vae == {"latent_dim": 2, "hidden_dim": 256, "num_layers": 3}
    (tmp_path / "nvae.json").write_text(json.dumps({"_class_name": "VAEBMVAE", "num_latent_scales": 1}))
    flags = ["--dataset_name", "gaussians25", "--vae_config", str(tmp_path / "nvae.json")]
    assert resolve_preset(parse_args(flags), (2,)).vae_class == "VAEBMVAE"  # an explicit class still wins


# ------------------------------------------------------------------------------------------------ Hub upload


class RecordingApi:
    """Records the upload: which files of the staged folder the allow-list lets through."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, *, folder_path, allow_patterns, **kwargs):
        staged = sorted(p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file())
        self.calls.append(("upload_folder", list(filter_repo_objects(staged, allow_patterns=allow_patterns))))
        return "commit"


def test_trained_card_has_a_license_zero_valued_flags_and_each_stages_effective_settings(tmp_path):
    make_tiny_pipeline().save_pretrained(tmp_path)
    config = parse_args(["--dataset_name", "digits", "--seed", "0", "--ebm_learning_rate", "3e-5"])
    rows = card_rows(config, resolve_preset(config, (1, 8, 8)), ["vae", "ebm"])
    card = write_model_card(tmp_path, rows, dataset_name="digits").read_text()
    meta = metadata_load(tmp_path / "README.md")
    assert meta["license"] == "apache-2.0"  # the Hub shows "unknown" without one
    assert "| `seed` | 0 |" in card  # a 0-valued flag is still a setting
    assert "| `ebm_training.learning_rate` | 3e-05 |" in card
    for key in ("vae_training.learning_rate", "vae_training.batch_size", "vae_training.max_train_steps",
                "ebm_training.batch_size", "ebm_training.max_train_steps"):  # fmt: skip
        assert f"| `{key}` |" in card, key
    config = parse_args(["--dataset_name", "digits", "--hub_license", "mit"])
    write_model_card(tmp_path, card_rows(config, resolve_preset(config, (1, 8, 8)), ["ebm"]), license="mit")
    assert metadata_load(tmp_path / "README.md")["license"] == "mit"


def test_push_uploads_the_pipeline_card_and_grid_but_never_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)  # the fake API stands in for the network
    make_tiny_pipeline().save_pretrained(tmp_path)
    junk = ["checkpoint-4/model.safetensors", ".tmp-checkpoint-6/model.safetensors", "logs/vaebm_hub/events.out"]
    for name in junk + ["samples/ebm-000004.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    Image.new("RGB", (8, 8)).save(tmp_path / "samples" / "ebm-000004.png")
    config = parse_args(["--dataset_name", "digits", "--push_to_hub", "--hub_model_id", "me/vaebm", "--seed", "3"])
    rows = card_rows(config, resolve_preset(config, (1, 8, 8)), ["vae", "ebm"])
    card = write_model_card(tmp_path, rows, dataset_name="digits", repo_id=config.hub_model_id).read_text()
    assert "me/vaebm" in card and "| `seed` | 3 |" in card and "samples.png" in card and "hub_token" not in card

    api = RecordingApi()
    assert push_trained_pipeline(tmp_path, config.hub_model_id, api=api) == "commit"
    (_, repo_id, create_kwargs), (_, sent) = api.calls
    assert repo_id == "me/vaebm" and create_kwargs["exist_ok"]
    assert {"model_index.json", "README.md", "samples.png", "vae/config.json", "ebm/config.json"} <= set(sent)
    assert "vae/diffusion_pytorch_model.safetensors" in sent and "scheduler/scheduler_config.json" in sent
    assert not any(name.startswith(("checkpoint", ".tmp", "logs", "samples/")) for name in sent)


# ------------------------------------------------------------------------------------------------ diffusers' flags


def test_train_unconditional_flags_are_accepted_with_their_meaning():
    config = parse_args(
        ["--dataset_name", "digits", "--num_epochs", "2", "--adam_beta1", "0.8", "--adam_beta2", "0.95",
         "--adam_epsilon", "1e-6", "--ebm_adam_beta1", "0.5", "--eval_batch_size", "9", "--logger", "none",
         "--save_images_epochs", "1", "--save_model_epochs", "1"]
    )  # fmt: skip
    settings = resolve_preset(config, (1, 8, 8), num_samples=1438)
    batches = -(-1438 // 64)  # ceil: the digits preset's batch of 64
    assert settings.vae_training.max_train_steps == settings.ebm_training.max_train_steps == 2 * batches
    assert (settings.vae_training.adam_beta1, settings.vae_training.adam_beta2) == (0.8, 0.95)
    assert (settings.ebm_training.adam_beta1, settings.ebm_training.adam_eps) == (0.5, 1e-6)
    assert config.num_sample_images == 9 and config.report_to == "none"
    with pytest.raises(ValueError, match="--max_train_steps or --num_epochs"):
        parse_args(["--dataset_name", "digits", "--num_epochs", "2", "--max_train_steps", "5"])


def test_a_tracker_that_is_not_installed_fails_before_training():
    with pytest.raises(ValueError, match="pip install wandb"):
        parse_args(["--dataset_name", "digits", "--report_to", "wandb"])
    with pytest.raises(ValueError, match="pip install wandb"):
        parse_args(["--dataset_name", "digits", "--logger", "wandb"])


def test_a_save_to_disk_folder_is_a_dataset_name(tmp_path):
    import datasets

    images = [Image.fromarray((np.random.default_rng(i).random((8, 8)) * 255).astype(np.uint8)) for i in range(4)]
    datasets.Dataset.from_dict({"image": images}).cast_column("image", datasets.Image()).save_to_disk(tmp_path / "ds")
    dataset = build_train_dataset(str(tmp_path / "ds"), None, resolution=None, channels=None)
    assert len(dataset) == 4 and tuple(dataset.sample_shape) == (1, 8, 8)


def test_a_builtin_dataset_name_resolves_to_its_own_preset_not_an_nvae_alias():
    """ "mnist" is both our CPU preset and an NVAE ``args.dataset`` name; the dataset's own preset wins."""
    assert get_preset("mnist").name == "mnist" and get_preset("celeba_64").name == "celeba64"
    assert resolve_preset(parse_args(["--dataset_name", "mnist"]), (1, 32, 32)).ebm_training.n_channel == 48


def test_a_cpu_run_on_fewer_threads_than_its_cores_is_told_how_to_use_them(monkeypatch):
    previous = torch.get_num_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)  # 8 logical CPUs
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 8 if logical else 4)  # on 4 physical cores
    try:
        torch.set_num_threads(1)  # what `accelerate launch` without a config gives every process
        hint = cpu_thread_hint(torch.device("cpu"), local_processes=1)
        assert hint is not None and "1 torch thread(s) of the 4 CPU cores" in hint
        assert "accelerate config default" in hint and "--num_cpu_threads_per_process 4" in hint
        assert "--num_cpu_threads_per_process 2" in cpu_thread_hint(torch.device("cpu"), local_processes=2)
        assert cpu_thread_hint(torch.device("cpu"), local_processes=4) is None  # one core each: nothing to gain
        assert cpu_thread_hint(torch.device("cuda"), local_processes=1) is None
        torch.set_num_threads(4)
        assert cpu_thread_hint(torch.device("cpu"), local_processes=1) is None
    finally:
        torch.set_num_threads(previous)


def test_the_saved_sampler_takes_mala_from_the_sampling_preset_else_from_the_training_chains():
    from vaebm_hub.training.components import make_pipeline

    def resolved(dataset, *flags):
        shape = (1, 32, 32) if dataset == "mnist" else (1, 8, 8)
        preset = resolve_preset(parse_args(["--dataset_name", dataset, *flags]), shape)
        vae = VAEBMVAE(**{**preset.vae, "in_channels": 1, "sample_size": shape[-1]})
        ebm = VAEBMEnergyModel(in_channels=1, sample_size=shape[-1], layout=preset.ebm_training.layout)
        pipe = make_pipeline(vae, ebm, preset.ebm_training, preset.sampling)
        assert preset.sampling.metropolis == pipe.scheduler.config.metropolis  # resolved: the model card shows it
        return preset.ebm_training.metropolis, pipe.scheduler.config.metropolis

    assert resolved("digits") == (False, False)  # VAEBM: plain Langevin everywhere
    assert resolved("digits", "--langevin_metropolis") == (True, True)  # the training chains' setting, as before
    assert resolved("digits", "--sample_metropolis") == (False, True)  # the saved sampler alone
    assert resolved("digits", "--langevin_metropolis", "--no-sample_metropolis") == (True, False)
    assert resolved("mnist") == (False, True)  # the preset trains with Langevin and samples with MALA
    assert resolved("mnist", "--no-langevin_metropolis") == (False, False)  # the flag covers both, as its step does
    # x-space chains clip images, which MALA cannot: the preset's MALA sampler is dropped, and asking for it fails
    assert resolved("mnist", "--sampling_space", "x") == (False, False)
    with pytest.raises(ValueError, match="MALA .* cannot run x-space chains"):
        resolved("digits", "--sampling_space", "x", "--sample_metropolis")


def test_the_saved_pipeline_takes_its_images_from_the_sampling_preset_unless_the_chains_lack_pixel_noise():
    from vaebm_hub.training.components import make_pipeline

    def saved(*flags):
        preset = resolve_preset(parse_args(["--dataset_name", "digits", *flags]), (1, 8, 8))
        vae = VAEBMVAE(**{**preset.vae, "in_channels": 1, "sample_size": 8})
        ebm = VAEBMEnergyModel(in_channels=1, sample_size=8, layout=preset.ebm_training.layout)
        return make_pipeline(vae, ebm, preset.ebm_training, preset.sampling).config.decoder_output

    assert saved() == "sample"  # the digits preset's images are decoder samples
    assert saved("--sample_decoder_output", "mean") == "mean"  # VAEBM's decoder means
    assert saved("--no-langevin_pixel_noise") == "mean"  # no eps_x in the chains: the preset's choice is dropped
    assert saved("--sampling_space", "x") == "sample"  # the x-space chains start from the same decoder samples
    with pytest.raises(ValueError, match="needs chains that move the pixel noise eps_x, but pixel_noise=False"):
        saved("--no-langevin_pixel_noise", "--sample_decoder_output", "sample")
    assert get_preset("mnist").sampling.decoder_output == "mean"  # Bernoulli: a sample would be binary speckle
