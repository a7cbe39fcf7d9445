"""Runs on a CUDA device (skipped without one; CI has none): the trainer's CPU generators meeting accelerator tensors.

Found on an H200: the MNIST preset's stage 2 (Bernoulli draws among the negatives) stopped at its first iteration
with "Expected a 'cuda' device type for generator but found 'cpu'".
"""

from __future__ import annotations

import pytest
import torch

from vaebm_hub import VAEBMPipeline
from vaebm_hub.training import train
from vaebm_hub.training.ebm_stage import bernoulli_draws

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_bernoulli_draws_of_accelerator_means_come_from_the_cpu_generator():
    means = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    on_cpu = bernoulli_draws(means, 0.5, torch.Generator().manual_seed(1))
    on_gpu = bernoulli_draws(means.cuda(), 0.5, torch.Generator().manual_seed(1))
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu)  # the same bits on every device
    assert set(on_gpu[:3].unique().tolist()) <= {0.0, 1.0}


def test_mnist_preset_trains_both_stages_and_samples_on_the_accelerator(tmp_path):
    out = train(
        tmp_path / "m", dataset_name="mnist", vae_max_train_steps=3, ebm_max_train_steps=3, train_batch_size=8,
        ebm_n_channel=4, langevin_steps=2, sample_langevin_steps=2, num_sample_images=4, data_init_batches=1,
        report_to="none",
    )  # fmt: skip
    pipe = VAEBMPipeline.from_pretrained(out).to("cuda")
    images = pipe(batch_size=4, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert images.images.shape == (4, 1, 32, 32)
    assert torch.isfinite(images.images).all()
