"""The catalogue of bad inputs (issue "no silent garbage"): each case ends in a clear error that names the problem
and the fix — or, where diffusers users expect it, is accepted — never in silent garbage or a raw traceback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_tiny_pipeline
from PIL import Image

from vaebm_hub import NonFiniteChainError


@pytest.fixture
def pipe():
    return make_tiny_pipeline()


# ------------------------------------------------------------------------------------------------ sampling arguments
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(step_size="0.01"), TypeError, "step_size must be a number"),
        (dict(num_inference_steps=True), TypeError, "num_inference_steps must be an integer"),
        (dict(num_inference_steps=2.5), TypeError, "num_inference_steps must be an integer"),
        (dict(batch_size="4"), TypeError, "batch_size must be an integer"),
        (dict(temperature=1e6), ValueError, r"temperature must be in \(0, 10\]"),
        (dict(temperature=float("nan")), ValueError, "temperature must be in"),
        (dict(step_size=float("inf")), ValueError, "must be > 0 and finite"),
        (dict(potential=""), ValueError, "potential must be one of"),
        (dict(generator=0), TypeError, r"torch.Generator\(\).manual_seed\(0\)"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_bad_sampling_arguments(pipe, kwargs, error, message):
    with pytest.raises(error, match=message):
        pipe(**{"batch_size": 2, "num_inference_steps": 1, **kwargs})


def test_numpy_counts_and_numpy_latents_are_accepted(pipe):
    eps = pipe.vae.sample_noise(3, generator=torch.Generator().manual_seed(0)).numpy()
    out = pipe(
        latents=eps, num_inference_steps=np.int64(2), generator=torch.Generator().manual_seed(1), output_type="pt"
    )
    assert out.images.shape[0] == 3
    assert len(pipe(batch_size=np.int32(2), num_inference_steps=0).images) == 2


@pytest.mark.parametrize("step_size", [1e3, 1e6])
def test_a_chain_that_leaves_any_sane_range_is_non_finite_in_all_but_name(pipe, step_size):
    with pytest.raises(NonFiniteChainError, match="diverged"):
        pipe(batch_size=2, num_inference_steps=3, step_size=step_size, generator=torch.Generator().manual_seed(0))


def test_a_callback_returning_the_wrong_shape_is_named(pipe):
    with pytest.raises(ValueError, match="callback_on_step_end returned latents of shape"):
        pipe(
            batch_size=2, num_inference_steps=2, callback_on_step_end=lambda p, i, t, d: {"latents": d["latents"][:1]}
        )


# ------------------------------------------------------------------------------------------------ scoring
def test_scores_of_nan_weights_raise_as_sampling_does(pipe):
    with torch.no_grad():
        pipe.ebm.linear.bias.fill_(float("nan"))
    images = torch.rand(3, 1, 8, 8)
    with pytest.raises(NonFiniteChainError, match="energies are NaN/Inf"):
        pipe.energy(images)
    with pytest.raises(NonFiniteChainError, match="log-densities are NaN/Inf"):
        pipe.log_density(images)


def test_scoring_takes_pil_images_and_refuses_an_empty_batch(pipe):
    images = [Image.fromarray((np.random.default_rng(i).random((8, 8)) * 255).astype(np.uint8)) for i in range(2)]
    energies = pipe.energy(images)
    expected = pipe.energy(torch.from_numpy(np.stack([np.asarray(i, np.float32)[None] / 255 for i in images])))
    torch.testing.assert_close(energies, expected)
    with pytest.raises(ValueError, match="no images to score"):
        pipe.energy(torch.empty(0, 1, 8, 8))


# ------------------------------------------------------------------------------------------------ trainer flags
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--learning_rate", "0"], r"--learning_rate \(vae learning_rate\) must be a finite number > 0"),
        (["--ebm_learning_rate", "inf"], "--ebm_learning_rate"),
        (["--spectral_reg_coeff", "nan"], "--spectral_reg_coeff"),
        (["--energy_l2_coeff", "-1"], "--energy_l2_coeff"),
        (["--bernoulli_negative_fraction", "1.5"], "--bernoulli_negative_fraction"),
        (["--reconstruction_positive_fraction", "-0.1"], "--reconstruction_positive_fraction"),
        (["--langevin_step_size", "nan"], "--langevin_step_size"),
        (["--buffer_size", "0"], "--buffer_size"),
        (["--data_init_batches", "0"], "--data_init_batches"),
        (["--lr_scheduler", "bogus"], "--lr_scheduler must be one of linear, cosine"),
        (["--adam_beta1", "1.5"], "--adam_beta1"),
        # torch's Adam refuses a beta of 1 only when stage 2 builds its optimizer, after stage 1 has trained
        (["--ebm_adam_beta1", "1"], r"--ebm_adam_beta1 / --adam_beta1 \(ebm adam_beta1\) must be .* >= 0 and < 1"),
        (["--adam_beta2", "1"], "--adam_beta2"),
        (["--ebm_ema_decay", "1"], r"--ebm_ema_decay \(ebm ema_decay\) must .* < 1, got 1.0 \(0 turns the EMA off\)"),
        (["--ebm_weight_average_fraction", "1.5"], r"--ebm_weight_average_fraction .* <= 1, got 1.5"),
        (["--ebm_ema_decay", "0.9", "--ebm_weight_average_fraction", "0.4"], "set one of them to 0"),
        (["--langevin_steps", "0"], "--langevin_steps"),
        (["--num_sample_images", "0"], "--num_sample_images must be >= 1"),  # was a ZeroDivisionError mid-run
        (["--eval_batch_size", "0"], "--eval_batch_size must be >= 1"),
        (["--use_ema", "--ema_inv_gamma", "nan"], "--ema_inv_gamma"),  # trained to a NaN loss before
        (["--dataloader_num_workers", "-1"], "--dataloader_num_workers must be >= 0"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_numeric_flags_fail_before_stage_one(tmp_path, flags, message):
    from vaebm_hub.training import main

    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        main(["--dataset_name", "digits", "--output_dir", str(out), "--report_to", "none", *flags])
    assert not out.exists()  # nothing ran, nothing was written


def test_bernoulli_negatives_on_a_continuous_decoder_fail_before_stage_one(tmp_path):
    from vaebm_hub.training import main

    out = tmp_path / "out"
    with pytest.raises(ValueError, match="--bernoulli_negative_fraction needs a VAE with a Bernoulli decoder"):
        main(["--dataset_name", "digits", "--output_dir", str(out), "--report_to", "none",
              "--bernoulli_negative_fraction", "0.5"])  # fmt: skip
    assert not out.exists()  # the old code trained stage 1 before stage 2 refused the flag


@pytest.mark.parametrize(
    "text, message",
    [("{not json", "is not valid JSON"), ("[1]", "must hold a JSON object"),
     ('{"num_latent_per_group": -4}', "num_latent_per_group must be an integer >= 1, got -4")],
    ids=["invalid JSON", "a list", "a negative size"],
)  # fmt: skip
def test_a_bad_vae_config_file_fails_before_stage_one(tmp_path, text, message):
    from vaebm_hub.training import main

    (tmp_path / "vae.json").write_text(text)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        main(["--dataset_name", "digits", "--output_dir", str(out), "--report_to", "none",
              "--vae_config", str(tmp_path / "vae.json")])  # fmt: skip
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ checkpoints
TINY_RUN = [
    "--dataset_name", "digits", "--train_batch_size", "8", "--ebm_n_channel", "4", "--langevin_steps", "2",
    "--sample_langevin_steps", "2", "--num_sample_images", "4", "--data_init_batches", "1", "--report_to", "none",
    "--readjust_bn_batches", "2", "--no-channels_last",
]  # fmt: skip


@pytest.fixture(scope="module")
def checkpointed_run(tmp_path_factory):
    from vaebm_hub.training import main

    out = tmp_path_factory.mktemp("run") / "out"
    main([*TINY_RUN, "--vae_max_train_steps", "2", "--ebm_max_train_steps", "3", "--checkpointing_steps", "1",
          "--output_dir", str(out)])  # fmt: skip
    return out


def _truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _random_bytes(path):
    path.write_bytes(np.random.default_rng(0).bytes(len(path.read_bytes())))


def _nan_weights(path):
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in tensors.items()}, path)


CORRUPTIONS = {
    "truncated model.safetensors": ("model.safetensors", _truncate, "model.safetensors cannot be read"),
    "NaN-filled model.safetensors": ("model.safetensors", _nan_weights, "NaN/Inf"),
    "random-byte optimizer.bin": ("optimizer.bin", _random_bytes, "optimizer.bin is not a readable archive"),
    "truncated trainer_state_0.pt": ("trainer_state_0.pt", _truncate, "trainer_state_0.pt"),
    "invalid training_state.json": ("training_state.json", lambda p: p.write_text("{not json"), "not valid JSON"),
    "deleted frozen_vae/": ("frozen_vae", lambda p: __import__("shutil").rmtree(p), "frozen_vae/"),
    "tampered stage": (
        "training_state.json",
        lambda p: p.write_text(p.read_text().replace('"ebm"', '"vea"')),
        "unknown stage 'vea'",
    ),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_resume_skips_a_corrupt_latest_checkpoint_and_names_why(checkpointed_run, tmp_path, case, capsys):
    import shutil

    from vaebm_hub.training.checkpointing import list_checkpoints, resolve_resume, verify_checkpoint

    out = tmp_path / "out"
    shutil.copytree(checkpointed_run, out)
    latest = list_checkpoints(out)[-1][1]
    name, corrupt, reason = CORRUPTIONS[case]
    corrupt(latest / name)
    assert reason in verify_checkpoint(latest)
    previous = list_checkpoints(out)[-2][1]
    assert resolve_resume(out, "latest", verify=verify_checkpoint) == previous
    assert latest.name in capsys.readouterr().err
    with pytest.raises(ValueError, match="cannot be used"):
        resolve_resume(out, str(latest), verify=verify_checkpoint)


def test_resuming_with_other_settings_names_the_tensor(checkpointed_run, tmp_path):
    import shutil

    from vaebm_hub.training import main

    out = tmp_path / "out"
    shutil.copytree(checkpointed_run, out)
    flags = list(TINY_RUN)
    flags[flags.index("--ebm_n_channel") + 1] = "6"
    with pytest.raises(ValueError, match="written with other settings.*--ebm_n_channel"):
        main([*flags, "--vae_max_train_steps", "2", "--ebm_max_train_steps", "4", "--output_dir", str(out),
              "--resume_from_checkpoint", "latest"])  # fmt: skip


def test_a_rollback_walks_back_past_checkpoints_that_do_not_verify(checkpointed_run, tmp_path):
    import shutil

    from vaebm_hub.training.checkpointing import list_checkpoints, verify_checkpoint

    out = tmp_path / "out"
    shutil.copytree(checkpointed_run, out)
    checkpoints = [p for _, p in list_checkpoints(out)]
    _nan_weights(checkpoints[-1] / "model.safetensors")
    assert verify_checkpoint(checkpoints[-1]) is not None and verify_checkpoint(checkpoints[-2]) is None
    # the runner's choice of rollback target (the loop's own helper, on a stage positioned at the last step)
    from vaebm_hub.training.loop import StageRunner

    runner = StageRunner.__new__(StageRunner)
    runner.options = type("Options", (), {"output_dir": out, "step_offset": 2})()
    runner.step, runner.start_snapshot = 3, out / "checkpoint-ebm-start"
    runner.stage = type("Stage", (), {"name": "ebm"})()
    runner.accelerator = type("Acc", (), {"print": staticmethod(print)})()
    assert runner.last_good_checkpoint() == checkpoints[-2]


def test_a_huge_learning_rate_ends_in_an_error_or_a_sane_model_never_a_degenerate_one(tmp_path):
    from vaebm_hub import VAEBMPipeline
    from vaebm_hub.data import load_array_dataset
    from vaebm_hub.training import TrainingDivergedError, main

    def energy_of_data(folder):
        pipe = VAEBMPipeline.from_pretrained(folder)
        return float(pipe.energy(torch.from_numpy(load_array_dataset("digits", "test")[0][:64])).abs().mean())

    common = [*TINY_RUN, "--vae_max_train_steps", "20", "--ebm_max_train_steps", "40", "--checkpointing_steps", "5"]
    main([*common, "--output_dir", str(tmp_path / "normal")])
    try:
        main([*common, "--ebm_learning_rate", "10", "--output_dir", str(tmp_path / "huge")])
    except TrainingDivergedError:
        return
    assert energy_of_data(tmp_path / "huge") < 10 * max(energy_of_data(tmp_path / "normal"), 1.0)


# ------------------------------------------------------------------------------------------------ converter
def _official(name: str):
    from conftest import OFFICIAL

    return OFFICIAL / name / ("checkpoint.pt" if name.startswith("nvae") else "checkpoint.pth")


def test_a_checkpoint_with_corrupted_bytes_fails_its_crc(tmp_path):
    import zipfile

    from vaebm_hub.convert import load_official_nvae

    source = _official("nvae_A_cifar10_normal")
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:  # the largest tensor record: flip 64 bytes in the middle of its data
        info = max(archive.infolist(), key=lambda i: i.file_size)
    middle = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    damaged = tmp_path / "checkpoint.pt"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="CRC .* does not match"):
        load_official_nvae(damaged)


def test_the_converter_refuses_nan_weights_and_mismatched_resolutions(tmp_path):
    import argparse

    from vaebm_hub.convert import convert_official, load_official_nvae

    checkpoint = torch.load(_official("nvae_A_cifar10_normal"), weights_only=False)
    key = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][key] = torch.full_like(checkpoint["state_dict"][key], float("nan"))
    torch.save(checkpoint, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match=f"NaN/Inf values in 1 tensor.*{key}"):
        load_official_nvae(tmp_path / "nan.pt")
    with pytest.raises(ValueError, match=r"\(3, 32, 32\).*celeba64 energy network for \(3, 64, 64\)"):
        convert_official(
            _official("nvae_A_cifar10_normal"), tmp_path / "out", ebm_checkpoint=_official("ebm_celeba64")
        )
    huge = torch.load(_official("nvae_A_cifar10_normal"), weights_only=False)
    huge["args"] = argparse.Namespace(**{**vars(huge["args"]), "num_channels_enc": 40000, "num_channels_dec": 40000})
    torch.save(huge, tmp_path / "huge.pt")
    with pytest.raises(ValueError, match="does not match the architecture"):  # refused on the meta device
        load_official_nvae(tmp_path / "huge.pt")
    nvae = _official("nvae_A_cifar10_normal")
    with pytest.raises(ValueError, match="as NVAE checkpoints do, but was given as the energy network"):
        convert_official(nvae, tmp_path / "swapped", ebm_checkpoint=nvae)  # was "needs the Python global ..."


# ------------------------------------------------------------------------------------------------ loading
@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: _set_index(d, vae=["diffusers", "AutoencoderKL"]), "needs one of vaebm_hub.VAEBMVAE"),
        (lambda d: _set_index(d, **{"..": ["vaebm_hub", "VAEBMVAE"]}), "not a folder name"),
        (lambda d: _set_config(d / "ebm", sample_size=16), "energy network expects 1x16x16"),
        (lambda d: _set_config(d / "vae", num_latent_per_group="eight"), "'num_latent_per_group' must be an integer"),
        (lambda d: _set_config(d / "vae", use_se="yes"), "'use_se' must be true or false"),
        (lambda d: (d / "vae" / "config.json").write_text("[1, 2]"), "holds a JSON list, not an object"),
    ],
    ids=["foreign class", "dotdot component", "sample_size mismatch", "string count", "string flag", "JSON list"],
)
def test_saved_pipelines_that_cannot_work_are_refused_at_load(tmp_path, edit, message):
    from vaebm_hub import VAEBMPipeline

    make_tiny_pipeline().save_pretrained(tmp_path)
    edit(tmp_path)
    with pytest.raises(ValueError, match=message):
        VAEBMPipeline.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "values, message",
    [(dict(step_size="0.01"), "step_size must be a number"),
     (dict(default_num_inference_steps="ten"), "default_num_inference_steps must be an integer")],
)  # fmt: skip
def test_a_hand_edited_scheduler_config_names_the_bad_value(tmp_path, values, message):
    from vaebm_hub import VAEBMPipeline

    make_tiny_pipeline().save_pretrained(tmp_path)
    _set_config(tmp_path / "scheduler", **values)
    with pytest.raises(TypeError, match=message):  # the old code raised "'<' not supported between str and int"
        VAEBMPipeline.from_pretrained(tmp_path)


def _set_index(folder, **entries):
    import json

    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, **entries}))


def _set_config(folder, **values):
    import json

    name = "scheduler_config.json" if folder.name == "scheduler" else "config.json"
    config = json.loads((folder / name).read_text())
    (folder / name).write_text(json.dumps({**config, **values}))


# ------------------------------------------------------------------------------------------------ trainer input
def test_bad_paths_and_sizes_fail_before_training(tmp_path):
    from vaebm_hub.training import main

    afile = tmp_path / "a-file"
    afile.write_text("x")
    with pytest.raises(ValueError, match="--output_dir .* is a file"):
        main(["--dataset_name", "digits", "--output_dir", str(afile)])
    with pytest.raises(ValueError, match="--resolution must be a positive"):
        main(["--dataset_name", "digits", "--resolution", "-8", "--output_dir", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="not a built-in.*digits, mnist"):
        main(["--dataset_name", "digitz", "--output_dir", str(tmp_path / "o")])


def test_a_full_disk_says_so_and_keeps_the_last_checkpoint(tmp_path):
    import errno

    from vaebm_hub.training.checkpointing import list_checkpoints, write_atomically

    def ok(tmp):
        (tmp / "model.safetensors").write_bytes(b"x")

    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    write_atomically(tmp_path / "checkpoint-1", ok, {"stage": "vae"}, is_main_process=True, barrier=lambda: None)
    with pytest.raises(OSError, match="disk full while writing checkpoint-2.*checkpoint-1, is intact"):
        write_atomically(tmp_path / "checkpoint-2", full, {"stage": "vae"}, is_main_process=True, barrier=lambda: None)
    assert [p.name for _, p in list_checkpoints(tmp_path)] == ["checkpoint-1"]
    assert not (tmp_path / ".tmp-checkpoint-2").exists()


def test_the_image_folder_rule_draws_no_bernoulli_negatives():
    from vaebm_hub.presets import PRESETS, preset_for_images

    assert PRESETS["mnist"].ebm_training.bernoulli_negative_fraction > 0
    for shape in ((1, 8, 8), (3, 32, 32)):  # Gaussian decoders: the trainer would refuse the draws before stage 1
        assert preset_for_images(shape).ebm_training.bernoulli_negative_fraction == 0
