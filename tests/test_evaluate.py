"""``evaluation.report`` (sampling, quality, OOD, the whole report), ``vaebm-hub evaluate`` and Inception FID on a
self-made weights file. Everything runs offline on the bundled 8×8 digits, the 2-D toy and tiny seeded pipelines."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
import types

import numpy as np
import pytest
import torch
from conftest import make_tiny_pipeline
from PIL import Image

from vaebm_hub import VAEBMMLPVAE, LangevinScheduler, VAEBMEnergyMLP, VAEBMPipeline
from vaebm_hub.cli import main
from vaebm_hub.data import load_array_dataset
from vaebm_hub.evaluation import (
    SCORE_NAMES,
    InceptionFID,
    dataset_classifier,
    evaluate_pipeline,
    inception_fid,
    ood_auroc,
    ood_scores,
    sample_images,
    sample_images_at,
    sample_quality,
    uniform_noise,
    write_energy_histogram,
)

IMAGE_KEYS = {"fd_clf", "fd_floor", "fd_minus_floor", "kernel_distance", "precision", "recall", "classifier_accuracy"}
ROW_KEYS = IMAGE_KEYS | {"langevin_steps", "model", "num_samples", "sampling_seconds", "energy_mean"}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The nets here are tiny: one thread avoids oversubscribing the shared CPU (several-fold faster, measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield threads
    torch.set_num_threads(threads)


@pytest.fixture
def all_torch_threads(one_torch_thread):
    """InceptionV3 at 299×299 is big enough to gain from the threads the conftest allows."""
    torch.set_num_threads(one_torch_thread)
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("classifiers")


@pytest.fixture(scope="module")
def classifier(cache_dir):
    return dataset_classifier("digits", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def digits():
    """Held-out test images (359) and two disjoint slices of the train split, all (N, 1, 8, 8)."""
    train, _ = load_array_dataset("digits", "train")
    test, _ = load_array_dataset("digits", "test")
    return test, train[:300], train[300:]


@pytest.fixture(scope="module")
def fitted_pipeline():
    """The tiny digits pipeline whose VAE took 25 Adam steps on the ELBO (~2 s): enough to tell digits from noise."""
    pipe = make_tiny_pipeline()
    x = torch.from_numpy(load_array_dataset("digits", "train")[0])
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(pipe.vae.parameters(), lr=2e-3)
    pipe.vae.train()
    for _ in range(25):
        loss = -pipe.vae.elbo(x[torch.randint(0, len(x), (64,), generator=generator)], generator=generator).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    pipe.vae.eval()
    return pipe


def toy_pipeline() -> VAEBMPipeline:
    torch.manual_seed(0)
    pipe = VAEBMPipeline(vae=VAEBMMLPVAE(), ebm=VAEBMEnergyMLP(), scheduler=LangevinScheduler(step_size=1e-2))
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---------------------------------------------------------------------------------------------------- quality
def test_real_images_score_at_the_floor_and_noise_far_above(digits, classifier):
    test, real, floor = digits
    noise = np.random.default_rng(0).random(real.shape, dtype=np.float32)
    good = sample_quality(real, test, "digits", classifier=classifier, floor_reference=floor)
    bad = sample_quality(noise, test, "digits", classifier=classifier, floor_reference=floor)
    assert IMAGE_KEYS <= good.keys() and good["num_samples"] == 300 and good["num_floor"] == 300
    assert good["fd_floor"] == pytest.approx(bad["fd_floor"])  # the floor depends on the real sets only
    assert abs(good["fd_minus_floor"]) < 0.1 * bad["fd_minus_floor"]
    assert good["precision"] > 0.8 and good["recall"] > 0.7 and bad["precision"] < 0.2
    assert good["kernel_distance"] < 0.1 * bad["kernel_distance"]
    assert good["classifier_accuracy"] > 0.9
    # the pipeline's channels-last output layout gives the same numbers as the data's channels-first one
    channels_last = sample_quality(real.transpose(0, 2, 3, 1), test, "digits", classifier=classifier,
                                   floor_reference=floor)  # fmt: skip
    assert channels_last == good


def test_stacked_digits_add_the_gated_mode_count(classifier):
    test, _ = load_array_dataset("stacked_digits", "test")
    train, _ = load_array_dataset("stacked_digits", "train")
    noise = np.random.default_rng(0).random((200, 3, 8, 8), dtype=np.float32)
    real = sample_quality(
        train[:200], test[:400], "stacked_digits", classifier=classifier, floor_reference=train[200:]
    )
    bad = sample_quality(noise, test[:400], "stacked_digits", classifier=classifier, floor_reference=train[200:])
    assert {"modes", "reverse_kl", "kept_fraction"} <= real.keys()
    assert real["kept_fraction"] > 0.8 and real["modes"] > 100
    assert bad["kept_fraction"] < 0.1 and bad["fd_minus_floor"] > 10 * abs(real["fd_minus_floor"])


def test_gaussians25_reports_the_mixture_metrics():
    train, _ = load_array_dataset("gaussians25", "train")
    test, _ = load_array_dataset("gaussians25", "test")
    true = sample_quality(train, test, "gaussians25")
    noise = sample_quality(np.random.default_rng(0).uniform(-5, 5, (2500, 2)), test, "gaussians25")
    assert true["high_quality_fraction"] == pytest.approx(1 - np.exp(-4.5), abs=0.01)  # the analytic 3σ share in 2-D
    assert true["modes_covered"] == true["reference_modes_covered"] == 25
    assert noise["high_quality_fraction"] < 0.05 and noise["mean_log_density"] < true["mean_log_density"] - 50
    assert "fd_clf" not in true


@pytest.mark.parametrize(
    ("samples", "reference", "dataset", "match"),
    [
        (np.zeros((0, 8, 8, 1)), None, "digits", "samples is empty"),
        (np.full((8, 8, 8, 1), np.nan), None, "digits", "NaN or Inf values in 8 of 8 rows.*lower the step size"),
        (np.zeros((8, 16, 16, 1)), None, "digits", r"shape \(1, 16, 16\).*reference images are \(1, 8, 8\)"),
        (np.zeros((8, 1, 8, 8)), None, "cifar10", "Unknown dataset 'cifar10'.*digits"),
        (np.full((8, 1, 8, 8), 255.0), None, "digits", r"must lie in \[0, 1\].*divide uint8"),
        (np.zeros((8, 5, 5, 5)), None, "digits", "no channel axis of size 1 or 3"),
        (np.zeros((8, 3)), np.zeros((8, 2)), "gaussians25", r"shape \(N, 2\)"),
        (np.zeros((8, 3, 8, 8)), np.zeros((8, 3, 8, 8)), "digits", "cannot be compared with dataset 'digits'"),
    ],
)
def test_bad_inputs_raise_errors_that_name_the_problem(digits, classifier, samples, reference, dataset, match):
    reference = digits[0] if reference is None else reference
    with pytest.raises(ValueError, match=match):
        sample_quality(samples, reference, dataset, classifier=classifier, floor_reference=digits[2])


# ---------------------------------------------------------------------------------------------------- sampling
def test_sample_images_is_seeded_batched_and_starts_every_chain_length_from_the_same_noise(tiny_pipeline):
    first, seconds = sample_images(tiny_pipeline, 10, 2, batch_size=4, seed=0)
    again, _ = sample_images(tiny_pipeline, 10, 2, batch_size=4, seed=0)
    other, _ = sample_images(tiny_pipeline, 10, 2, batch_size=4, seed=1)
    assert first.shape == (10, 8, 8, 1) and 0 <= first.min() and first.max() <= 1 and seconds > 0
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    # K = 0 decodes the initial noise of each batch's generator, the same noise the K = 2 chains start from
    vae, _ = sample_images(tiny_pipeline, 10, 0, batch_size=4, seed=0)
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([0, 0]).generate_state(1, np.uint64)[0]))
    eps = tiny_pipeline.vae.sample_noise(4, generator=generator)
    np.testing.assert_allclose(vae[:4], tiny_pipeline.vae.generate(eps).permute(0, 2, 3, 1).detach().numpy())
    with pytest.raises(ValueError, match="sets \\['generator'\\] itself"):
        sample_images(tiny_pipeline, 4, 1, generator=torch.Generator())


def _counting_energy_calls(pipe) -> list[int]:
    """A one-item list counting the energy network's forward passes (one per ULA step and batch, plus MALA's)."""
    calls = [0]
    pipe.ebm.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("metropolis", [False, True])
def test_sample_images_at_reads_every_length_off_one_chain_as_separate_calls_draw_them(metropolis):
    pipe = make_tiny_pipeline(step_size=2e-2, metropolis=metropolis)
    separate = {k: sample_images(pipe, 10, k, batch_size=4, seed=3)[0] for k in (0, 2, 5)}
    calls = _counting_energy_calls(pipe)
    drawn = sample_images_at(pipe, 10, (5, 0, 2, 5), batch_size=4, seed=3)
    assert list(drawn) == [5, 0, 2]  # the caller's order, once each
    for k, (samples, seconds) in drawn.items():
        np.testing.assert_array_equal(samples, separate[k])
        assert seconds > 0
    assert not np.allclose(drawn[2][0], drawn[5][0])
    # one chain of 5 steps per batch (three batches), not 2 + 5: ULA evaluates the energy once per step,
    # MALA once more at the start
    assert calls[0] == 3 * (5 + metropolis)


def test_sample_images_at_draws_each_length_on_its_own_where_a_chain_is_not_a_prefix_of_a_longer_one():
    pipe = make_tiny_pipeline(step_size=2e-2)
    pipe.scheduler = LangevinScheduler.from_config(
        pipe.scheduler.config, step_size_schedule="geometric", final_step_size=2e-3
    )
    separate = {k: sample_images(pipe, 6, k, batch_size=4, seed=0)[0] for k in (2, 5)}
    drawn = sample_images_at(pipe, 6, (2, 5), batch_size=4, seed=0)
    for k in (2, 5):  # K = 2 runs 2e-2 then 2e-3; within K = 5 its second step is 2e-2 * 0.1 ** 0.25
        np.testing.assert_array_equal(drawn[k][0], separate[k])
    flat = make_tiny_pipeline(step_size=2e-2)
    calls = _counting_energy_calls(flat)
    sample_images_at(flat, 6, (2, 5), batch_size=4, seed=0, drop_nonfinite=True)  # drops chains by the whole run
    assert calls[0] == 2 * (2 + 5)
    with pytest.raises(ValueError, match="sample_images_at sets \\['latents'\\] itself"):
        sample_images_at(flat, 4, (1, 2), latents=torch.zeros(4, flat.vae.noise_dim))


def test_sample_images_returns_points_for_a_vector_pipeline():
    points, _ = sample_images(toy_pipeline(), 6, 1)
    assert points.shape == (6, 2)


# ---------------------------------------------------------------------------------------------------- OOD
def test_ood_auroc_separates_digits_from_uniform_noise_by_the_elbo(fitted_pipeline, digits):
    in_dist = digits[0][:64]
    result = ood_auroc(fitted_pipeline, in_dist, {"uniform": uniform_noise(in_dist)})
    assert set(result) == {"uniform"} and set(result["uniform"]) == set(SCORE_NAMES)
    assert all(0.0 <= value <= 1.0 for value in result["uniform"].values())
    assert result["uniform"]["vae_elbo"] > 0.9 and result["uniform"]["log_h"] > 0.9
    scores = ood_scores(fitted_pipeline, in_dist, method="iwae")
    np.testing.assert_allclose(scores["log_h"], scores["vae_elbo"] + scores["energy"])  # log h = log p − E
    np.testing.assert_allclose(-scores["energy"], fitted_pipeline.energy(torch.from_numpy(in_dist)).double())
    with pytest.raises(ValueError, match="'elbo' or 'iwae'"):
        ood_scores(fitted_pipeline, in_dist, method="exact")


# ---------------------------------------------------------------------------------------------------- whole report
def test_evaluate_cli_writes_the_files_and_matches_evaluate_pipeline(tmp_path, cache_dir, capsys):
    pipe = make_tiny_pipeline()
    pipe.save_pretrained(tmp_path / "pipe")
    out = tmp_path / "eval"
    main(["evaluate", str(tmp_path / "pipe"), "--dataset", "digits", "--output_dir", str(out), "--num_samples", "24",
          "--chain_lengths", "2", "--ood_sets", "uniform,inverted", "--cache_dir", str(cache_dir)])  # fmt: skip
    printed = capsys.readouterr().out
    assert "FD_clf" in printed and "not FID" in printed and "OOD AUROC vs inverted" in printed

    def strict(constant):
        raise AssertionError(f"metrics.json holds {constant}, which is not JSON")

    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=strict)
    assert {"dataset", "num_samples", "seed", "classifier_accuracy", "classifier_test_accuracy", "versions"} <= set(
        metrics["meta"]
    )
    assert [row["langevin_steps"] for row in metrics["rows"]] == [0, 2]  # the VAE row is always added
    assert all(ROW_KEYS <= row.keys() for row in metrics["rows"])
    assert set(metrics["ood"]) == {"uniform", "inverted"} and set(metrics["ood"]["uniform"]) == set(SCORE_NAMES)
    for name in ("samples.png", "energy_histogram.png"):
        assert Image.open(out / name).size[0] > 100

    ood_sets = ["uniform", "inverted"]
    direct = evaluate_pipeline(pipe, "digits", num_samples=24, chain_lengths=[2], ood_set_names=ood_sets,
                               data_root=cache_dir)  # fmt: skip
    for row in metrics["rows"] + direct["rows"]:
        row.pop("sampling_seconds")
    assert direct["rows"] == metrics["rows"] and direct["ood"] == metrics["ood"]
    reseeded = evaluate_pipeline(pipe, "digits", num_samples=24, chain_lengths=[2], ood_set_names=[], seed=1,
                                 data_root=cache_dir)  # fmt: skip
    assert reseeded["rows"][1]["fd_clf"] != direct["rows"][1]["fd_clf"] and reseeded["ood"] == {}


def test_evaluate_pipeline_on_the_2d_toy(tmp_path):
    result = evaluate_pipeline(
        toy_pipeline(), "gaussians25", num_samples=100, chain_lengths=(0, 3), output_dir=tmp_path
    )
    assert [row["langevin_steps"] for row in result["rows"]] == [0, 3] and result["ood"] == {}
    assert {"high_quality_fraction", "modes_covered", "reverse_kl", "mean_log_density"} <= result["rows"][1].keys()
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "energy_histogram.png").is_file()


def test_evaluate_pipeline_rejects_bad_requests_before_sampling(tiny_pipeline, tmp_path):
    with pytest.raises(ValueError, match="cannot be compared with dataset 'mnist'"):
        evaluate_pipeline(tiny_pipeline, "mnist")
    with pytest.raises(ValueError, match="unknown OOD sets \\['svhn'\\]"):
        evaluate_pipeline(tiny_pipeline, "digits", ood_set_names=["svhn"])
    with pytest.raises(ValueError, match="every chain length must be an integer >= 0"):
        evaluate_pipeline(tiny_pipeline, "digits", chain_lengths=[-1])
    with pytest.raises(ValueError, match="'gaussians25' has none"):
        evaluate_pipeline(toy_pipeline(), "gaussians25", ood_set_names=["uniform"])
    with pytest.raises(FileNotFoundError, match="Inception weights .* not found.*download"):
        evaluate_pipeline(tiny_pipeline, "digits", inception_weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="energies is empty"):
        write_energy_histogram(tmp_path / "e.png", {})


# ---------------------------------------------------------------------------------------------------- Inception
def _import_inception_extractor():
    """torch-fidelity's InceptionV3 class, importing the package with torchvision stand-ins if torchvision is absent.

    torch-fidelity's ``__init__`` imports torchvision for its CLIP/VGG/dataset helpers, never for InceptionV3; the
    CPU-only torch here has no matching torchvision build. The stand-ins are removed right after the import, so
    torchmetrics (imported later by ``inception_fid``) sees no torchvision and skips its torchvision-based metrics.
    """
    if importlib.util.find_spec("torch_fidelity") is None:
        pytest.skip("torch-fidelity is not installed (pip install --no-deps torch-fidelity)")
    if importlib.util.find_spec("torchvision") is None and "torch_fidelity" not in sys.modules:
        names = ("torchvision", "torchvision.datasets", "torchvision.transforms", "torchvision.transforms.functional")
        for name in names:
            sys.modules[name] = types.ModuleType(name)
            sys.modules[name].__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        sys.modules["torchvision.datasets"].__dict__.update(CIFAR10=object, STL10=object, CIFAR100=object)
        try:
            import torch_fidelity  # noqa: F401
        finally:
            for name in names:
                del sys.modules[name]
    from torch_fidelity import feature_extractor_inceptionv3

    return feature_extractor_inceptionv3


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """A randomly initialised torch-fidelity InceptionV3 state dict saved to a file (nothing is downloaded).

    He-normal initialisation keeps the activations alive through the 40-odd layers (the default init shrinks them
    to ~1e-7), so the features, and the FIDs, differ between image sets.
    """
    module = _import_inception_extractor()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "load_state_dict_from_url", lambda *args, **kwargs: {})
        patch.setattr(module.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state_dict: None)
        torch.manual_seed(0)
        net = module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for layer in net.modules():
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("inception") / "weights-inception-random.pth"
    torch.save(net.state_dict(), path)
    return path


def test_inception_fid_runs_on_local_weights(inception_weights, digits, all_torch_threads):
    reference = digits[0][:4]
    noise = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)  # channels-last, like pipeline output
    fid = InceptionFID(reference, inception_weights)
    value = fid(noise)  # one compute only: torchmetrics' 2048-d eigendecomposition takes ~10 s on this CPU
    assert np.isfinite(value) and value > 0
    assert int(fid.metric.real_features_num_samples) == 4  # the reference statistics survive for the next call


def test_inception_fid_rejects_a_file_that_is_not_inception_weights(tmp_path, digits):
    _import_inception_extractor()
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match="is not torch-fidelity's InceptionV3 state dict"):
        inception_fid(digits[0][:2], digits[0][:2], garbage)


def test_inception_fid_errors_name_the_fix(tmp_path, monkeypatch, digits):
    images = digits[0][:2]
    with pytest.raises(FileNotFoundError, match="weights-inception-2015-12-05-6726825d.pth"):
        inception_fid(images, images, tmp_path / "missing.pth")
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "torchmetrics.image.fid", None)  # as if torchmetrics were not installed
    with pytest.raises(ModuleNotFoundError, match="pip install 'vaebm-hub\\[evaluation\\]'"):
        inception_fid(images, images, weights)
    with pytest.raises(ValueError, match="FID needs at least 2 per set"):
        inception_fid(images[:1], images, weights)
