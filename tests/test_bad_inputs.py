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
        (["--langevin_step_size", "nan"], "--langevin_step_size"),
        (["--buffer_size", "0"], "--buffer_size"),
        (["--data_init_batches", "0"], "--data_init_batches"),
        (["--lr_scheduler", "bogus"], "--lr_scheduler must be one of linear, cosine"),
        (["--adam_beta1", "1.5"], "--adam_beta1"),
        (["--langevin_steps", "0"], "--langevin_steps"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_numeric_flags_fail_before_stage_one(tmp_path, flags, message):
    from vaebm_hub.training import main

    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        main(["--dataset_name", "digits", "--output_dir", str(out), "--report_to", "none", *flags])
    assert not out.exists()  # nothing ran, nothing was written
