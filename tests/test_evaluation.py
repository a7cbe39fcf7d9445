"""Offline evaluation metrics: closed forms, seeded determinism, cache round trip, and the sanity orderings measured in
docs/offline_data_and_metrics.md on sklearn's 8×8 digits."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter
from scipy.stats import multivariate_normal
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from vaebm_hub.data import gaussian_grid_centres, load_array_dataset
from vaebm_hub.evaluation import (
    ClassifierConfig,
    auroc,
    class_mix_kl,
    constant_images,
    default_cache_dir,
    fd_classifier,
    fd_floor,
    frechet_distance,
    gaussian_mixture_metrics,
    get_feature_classifier,
    interpolated,
    inverted,
    kernel_distance,
    make_ood_set,
    mixture_log_density,
    pixel_shuffled,
    precision_recall,
    sample_quality,
    stack_digits,
    stacked_mode_count,
    stacked_mode_count_from_proba,
    train_feature_classifier,
    uniform_noise,
)

TINY = ClassifierConfig(epochs=1)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These nets are tiny: one thread avoids the oversubscription that slows them several-fold on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return (data.images / 16.0).astype(np.float32)[:, None], data.target


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("classifiers")


@pytest.fixture(scope="module")
def classifier(digits, cache_dir):
    return get_feature_classifier("digits", *digits, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def sanity_sets(digits) -> dict[str, np.ndarray]:
    """Two disjoint 800-image real sets and the degraded sets of the doc's sanity table."""
    x, y = digits
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    real_a, real_b = x[order[:800]], x[order[800:1600]]
    return {
        "real_a": real_a,
        "real_b": real_b,
        "noisy": np.clip(real_b + rng.normal(0.0, 0.15, real_b.shape), 0, 1).astype(np.float32),
        "blurred": uniform_filter(real_b, size=(1, 1, 3, 3), mode="constant"),
        "one_class": x[y == 1],
        "uniform": uniform_noise(real_b, seed=1),
    }


def _with_sample_moments(rng: np.random.Generator, n: int, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """n samples whose sample mean is exactly ``mean`` and sample covariance exactly diag(std²)."""
    z = rng.normal(size=(n, len(mean)))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    return mean + z * std


# --- Fréchet distance ---------------------------------------------------------------------------------------------


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu_a, mu_b = rng.normal(size=6), rng.normal(size=6)
    std_a, std_b = rng.uniform(0.5, 2.0, 6), rng.uniform(0.5, 2.0, 6)
    a = _with_sample_moments(rng, 500, mu_a, std_a)
    b = _with_sample_moments(rng, 300, mu_b, std_b)
    # With diagonal covariances tr(Σa + Σb − 2(ΣaΣb)^½) = Σ_i (σa_i − σb_i)².
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((std_a - std_b) ** 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_is_zero_for_identical_sets_even_with_dead_units():
    feats = np.maximum(np.random.default_rng(1).normal(size=(100, 128)), 0.0)
    feats[:, :20] = 0.0  # dead ReLU units and N < d: singular covariance
    assert abs(frechet_distance(feats, feats)) < 1e-6


def test_frechet_distance_rejects_mismatched_features():
    with pytest.raises(ValueError, match="same d"):
        frechet_distance(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((10, 3), np.nan), np.zeros((10, 3)))


# --- classifier ---------------------------------------------------------------------------------------------------


def test_classifier_training_is_deterministic_for_a_seed(digits):
    first, acc_first = train_feature_classifier(*digits, TINY)
    second, acc_second = train_feature_classifier(*digits, TINY)
    other, _ = train_feature_classifier(*digits, ClassifierConfig(epochs=1, seed=1))
    state, state_again, state_other = first.state_dict(), second.state_dict(), other.state_dict()
    assert all(torch.equal(state[name], state_again[name]) for name in state)
    assert acc_first == acc_second
    assert not torch.equal(state["head.weight"], state_other["head.weight"])


def test_classifier_is_accurate_on_held_out_digits(classifier, digits):
    assert classifier.accuracy > 0.95
    x = digits[0][:50]
    assert classifier.features(x).shape == (50, 128)
    np.testing.assert_allclose(classifier.predict_proba(x).sum(axis=1), 1.0, rtol=1e-6)


def test_classifier_cache_round_trip_loads_without_training(classifier, digits, cache_dir):
    assert not classifier.loaded_from_cache
    (weights,) = cache_dir.glob("digits-*.safetensors")
    mtime = weights.stat().st_mtime_ns
    again = get_feature_classifier("digits", *digits, cache_dir=cache_dir)
    assert again.loaded_from_cache and again.accuracy == classifier.accuracy
    assert weights.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.features(digits[0][:20]), classifier.features(digits[0][:20]))
    # A different config is a different cache entry.
    assert not get_feature_classifier("digits", *digits, cache_dir=cache_dir, config=TINY).loaded_from_cache
    assert len(list(cache_dir.glob("digits-*.json"))) == 2


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VAEBM_HUB_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "classifiers"


def test_classifier_rejects_multichannel_input_and_bad_names(classifier, digits):
    with pytest.raises(ValueError, match="channel"):
        classifier.features(np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="file names"):
        get_feature_classifier("../digits", *digits, config=TINY)


# --- sanity ordering on digits ------------------------------------------------------------------------------------


def test_fd_classifier_orders_the_sanity_sets(classifier, sanity_sets):
    real = sanity_sets["real_a"]
    floor = fd_floor(real, sanity_sets["real_b"], classifier)["fd_classifier_floor"]
    fd = {name: fd_classifier(real, sanity_sets[name], classifier)["fd_classifier"] for name in sanity_sets}
    assert fd["real_b"] == pytest.approx(floor)
    assert floor < fd["noisy"] < min(fd["blurred"], fd["one_class"], fd["uniform"])
    assert min(fd["blurred"], fd["one_class"], fd["uniform"]) > 10 * floor


def test_precision_recall_separates_quality_from_coverage(classifier, sanity_sets):
    real = classifier.features(sanity_sets["real_a"])
    pr = {name: precision_recall(real, classifier.features(sanity_sets[name])) for name in sanity_sets}
    assert pr["real_b"]["precision"] > 0.8 and pr["real_b"]["recall"] > 0.8
    assert pr["noisy"]["precision"] < pr["real_b"]["precision"]
    assert pr["one_class"]["precision"] > 0.8 and pr["one_class"]["recall"] < 0.2  # sharp but collapsed
    assert pr["uniform"]["precision"] < 0.5 and pr["blurred"]["recall"] < 0.2


def test_kernel_distance_is_zero_for_one_distribution_and_positive_otherwise(classifier, sanity_sets):
    rng = np.random.default_rng(0)
    a, b, shifted = rng.normal(size=(1000, 16)), rng.normal(size=(1000, 16)), rng.normal(0.3, 1.0, (1000, 16))
    same = kernel_distance(a, b, subset_size=300, num_subsets=10)
    assert abs(same["kernel_distance"]) < 3 * same["kernel_distance_std"] + 1e-3
    assert kernel_distance(a, shifted, subset_size=300, num_subsets=10)["kernel_distance"] > 0.1
    # Standardising with the reference statistics makes the distance invariant to the features' per-unit scale.
    scale = rng.uniform(0.1, 10.0, 16)
    assert kernel_distance(a * scale, shifted * scale, subset_size=300, num_subsets=10) == pytest.approx(
        kernel_distance(a, shifted, subset_size=300, num_subsets=10)
    )
    real = classifier.features(sanity_sets["real_a"])
    floor = kernel_distance(real, classifier.features(sanity_sets["real_b"]), subset_size=150)["kernel_distance"]
    collapsed = kernel_distance(real, classifier.features(sanity_sets["one_class"]), subset_size=150)
    assert collapsed["kernel_distance"] > floor + 10 * collapsed["kernel_distance_std"]


def test_kernel_distance_rejects_oversized_subsets():
    with pytest.raises(ValueError, match="subset_size"):
        kernel_distance(np.zeros((50, 4)), np.zeros((40, 4)), subset_size=45)


# --- mode counts --------------------------------------------------------------------------------------------------


def test_stacked_mode_count_real_collapsed_and_noise(classifier, digits):
    x, y = digits
    real = stacked_mode_count(stack_digits(x, 5000, seed=0), classifier)
    assert real["modes"] >= 980 and real["reverse_kl"] < 0.15 and real["kept_fraction"] > 0.95
    collapsed = stacked_mode_count(stack_digits(x[y < 5], 5000, seed=1), classifier)
    assert collapsed["modes"] <= 150 and collapsed["reverse_kl"] > math.log(1000 / 150)
    noise = stacked_mode_count(uniform_noise(np.zeros((5000, 3, 8, 8), np.float32), seed=2), classifier)
    assert noise["kept_fraction"] < 0.01 and noise["modes"] <= 50


def _one_hot_stacks(mode_ids: np.ndarray) -> np.ndarray:
    """Class probabilities (N, 3, 10) of stacks whose channels are certainly the digits of ``mode_ids``."""
    return np.eye(10)[np.stack([mode_ids // 100, mode_ids // 10 % 10, mode_ids % 10], axis=1)]


def test_reverse_kl_and_its_miller_madow_correction_in_closed_form():
    counts = stacked_mode_count_from_proba(_one_hot_stacks(np.array([7, 7, 123, 999])))
    plug_in = 0.5 * math.log(0.5 * 1000) + 2 * 0.25 * math.log(0.25 * 1000)
    assert counts["modes"] == 3 and counts["reverse_kl"] == pytest.approx(plug_in, abs=1e-12)
    assert counts["reverse_kl_corrected"] == pytest.approx(plug_in - (3 - 1) / (2 * 4), abs=1e-12)


def test_corrected_reverse_kl_removes_the_small_sample_bias_of_uniform_draws():
    # 4000 exact draws from the uniform distribution over 1000 modes: the true KL is 0, the plug-in scores ~0.13.
    for seed in range(3):
        counts = stacked_mode_count_from_proba(_one_hot_stacks(np.random.default_rng(seed).integers(0, 1000, 4000)))
        assert counts["reverse_kl"] > 0.1 and abs(counts["reverse_kl_corrected"]) < 0.03


def test_reverse_kl_splits_into_the_channels_marginal_kls_and_their_dependence():
    # channel 0 always a 3, channels 1 and 2 every pair once: independent channels, the whole KL is channel 0's mix
    mixed = stacked_mode_count_from_proba(_one_hot_stacks(300 + np.arange(100)))
    assert mixed["reverse_kl"] == pytest.approx(math.log(10), abs=1e-12)
    assert mixed["marginal_kl"] == pytest.approx(math.log(10), abs=1e-12)
    # the three channels always equal: each channel uniform, the whole KL is their dependence (log 100 for 10 modes)
    tied = stacked_mode_count_from_proba(_one_hot_stacks(111 * np.arange(10)))
    assert tied["marginal_kl"] == pytest.approx(0.0, abs=1e-12)
    assert tied["reverse_kl"] == pytest.approx(math.log(100), abs=1e-12)
    # only kept stacks count: a stack with one unsure channel (its others confident 5s) drops out of both KLs
    dropped = _one_hot_stacks(np.array([555]))
    dropped[0, 2] = 0.1
    gated = stacked_mode_count_from_proba(np.concatenate([_one_hot_stacks(np.array([0, 0])), dropped]))
    assert gated["kept_fraction"] == pytest.approx(2 / 3) and gated["marginal_kl"] == pytest.approx(3 * math.log(10))
    assert gated["reverse_kl"] == pytest.approx(math.log(1000))
    assert math.isnan(stacked_mode_count_from_proba(np.full((2, 3, 10), 0.1))["marginal_kl"])


def test_class_mix_kl_in_closed_form_per_channel():
    one_hot = np.eye(10)
    samples = one_hot[[0, 0, 1, 2]][:, None]  # (4, 1, 10): half 0s, a quarter each 1s and 2s
    reference = one_hot[np.repeat(np.arange(10), 10)][:, None]  # uniform; Jeffreys' half count keeps it uniform
    expected = 0.5 * math.log(0.5 / 0.1) + 2 * 0.25 * math.log(0.25 / 0.1)
    assert class_mix_kl(samples, reference) == pytest.approx(expected, abs=1e-12)
    assert class_mix_kl(reference, reference) == pytest.approx(0.0, abs=1e-12)
    two_channels = np.concatenate([samples, one_hot[[0, 1, 2, 3]][:, None]], axis=1)  # the second channel: 4 classes
    second = 4 * 0.25 * math.log(0.25 / 0.1)
    assert class_mix_kl(two_channels, np.repeat(reference, 2, axis=1)) == pytest.approx((expected + second) / 2)


def test_probabilities_from_features_are_the_classifiers_own(classifier, digits):
    x = digits[0][:300]
    from_features = classifier.proba_from_features(classifier.features(x))
    np.testing.assert_allclose(from_features, classifier.predict_proba(x), rtol=0, atol=1e-6)


def test_sample_quality_counts_modes_and_confidence_as_the_classifier_does(classifier, digits):
    x, y = digits
    stacks, reference = stack_digits(x[y < 5], 400, seed=1), stack_digits(x, 400, seed=2)
    quality = sample_quality(stacks, reference, "stacked_digits", classifier=classifier, floor_reference=reference)
    expected = stacked_mode_count(stacks, classifier)
    assert {k: quality[k] for k in expected} == pytest.approx(expected)
    probs = np.stack([classifier.predict_proba(stacks[:, c : c + 1]) for c in range(3)], axis=1)
    assert quality["confident_fraction"] == pytest.approx((probs.max(axis=2) > 0.9).all(axis=1).mean())
    # digits 0-4 only: half the classes, KL ~ log 2 from a balanced reference; the reference itself ~0
    assert quality["class_kl"] == pytest.approx(math.log(2), abs=0.1)
    itself = sample_quality(reference, reference, "stacked_digits", classifier=classifier, floor_reference=reference)
    assert itself["class_kl"] == pytest.approx(0.0, abs=1e-4)  # not 0: the half counts of the reference


def test_stack_digits_draws_channels_from_the_set(digits):
    x = digits[0][:10]
    stacks = stack_digits(x, 7, seed=3)
    assert stacks.shape == (7, 3, 8, 8)
    assert all(any(np.array_equal(channel, image[0]) for image in x) for channel in stacks.reshape(-1, 8, 8))
    np.testing.assert_array_equal(stacks, stack_digits(x, 7, seed=3))


def _mixture_samples(centres: np.ndarray, sigma: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return centres[rng.integers(len(centres), size=n)] + sigma * rng.normal(size=(n, 2))


def test_gaussian_mixture_metrics_on_exact_samples():
    centres, sigma = gaussian_grid_centres(), 0.05
    metrics = gaussian_mixture_metrics(_mixture_samples(centres, sigma, 10_000, seed=0), centres, sigma)
    assert metrics["high_quality_fraction"] == pytest.approx(1 - math.exp(-4.5), abs=0.005)
    assert metrics["modes_covered"] == 25 and metrics["reverse_kl"] < 0.01
    # E[log p] ≈ E[log N(x; μ_k, σ²I)] − log 25 = −log(2πσ²) − 1 − log 25 (other components negligible).
    expected = -math.log(2 * math.pi * sigma**2) - 1 - math.log(25)
    assert metrics["mean_log_density"] == pytest.approx(expected, abs=0.05)


def test_gaussian_mixture_metrics_detect_dropped_modes_and_uniform_samples():
    centres, sigma = gaussian_grid_centres(), 0.05
    dropped = gaussian_mixture_metrics(_mixture_samples(centres[:20], sigma, 10_000, seed=1), centres, sigma)
    assert dropped["modes_covered"] == 20
    assert dropped["reverse_kl"] == pytest.approx(math.log(25 / 20), abs=0.01)
    uniform = np.random.default_rng(2).uniform(-5, 5, (2500, 2))
    spread = gaussian_mixture_metrics(uniform, centres, sigma)
    assert spread["high_quality_fraction"] < 0.05 and spread["mean_log_density"] < -50


def test_gaussian_mixture_modes_covered_respects_min_count():
    centres, sigma = gaussian_grid_centres(np.linspace(-1.5, 1.5, 5)), 0.01
    samples = np.concatenate([_mixture_samples(centres[:24], sigma, 2400, seed=3), centres[24:].repeat(3, axis=0)])
    assert gaussian_mixture_metrics(samples, centres, sigma, min_count=1)["modes_covered"] == 25
    assert gaussian_mixture_metrics(samples, centres, sigma, min_count=5)["modes_covered"] == 24


def test_mixture_log_density_matches_scipy_for_one_component():
    x = np.random.default_rng(4).normal(size=(20, 2))
    expected = multivariate_normal(mean=[0.5, -1.0], cov=0.3**2 * np.eye(2)).logpdf(x)
    np.testing.assert_allclose(mixture_log_density(x, np.array([[0.5, -1.0]]), 0.3), expected, rtol=1e-10)


# --- OOD ----------------------------------------------------------------------------------------------------------


def test_auroc_extremes_and_chance():
    rng = np.random.default_rng(0)
    assert auroc(np.array([2.0, 3.0, 4.0]), np.array([-1.0, 0.0, 1.0])) == 1.0
    assert auroc(np.array([-1.0, 0.0]), np.array([2.0, 3.0])) == 0.0
    assert auroc(rng.normal(size=5000), rng.normal(size=5000)) == pytest.approx(0.5, abs=0.03)


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    scores_in, scores_out = rng.integers(0, 6, 300).astype(float), rng.integers(0, 5, 200).astype(float)
    expected = roc_auc_score(np.r_[np.ones(300), np.zeros(200)], np.r_[scores_in, scores_out])
    assert auroc(scores_in, scores_out) == pytest.approx(expected, rel=1e-12)


def test_ood_builders_keep_shape_and_are_seeded(digits):
    x = digits[0][:64]
    for name in ("uniform", "constant", "shuffled", "inverted", "interp"):
        ood = make_ood_set(name, x, seed=0)
        assert ood.shape == x.shape and ood.dtype == x.dtype and 0 <= ood.min() and ood.max() <= 1
        np.testing.assert_array_equal(ood, make_ood_set(name, x, seed=0))
    assert not np.array_equal(uniform_noise(x, seed=0), uniform_noise(x, seed=1))
    with pytest.raises(ValueError, match="unknown OOD set"):
        make_ood_set("svhn", x)


def test_ood_builders_do_what_they_say(digits):
    x = digits[0][:64]
    np.testing.assert_array_equal(inverted(inverted(x)), x)
    constant = constant_images(x, seed=0)
    assert np.all(constant.max(axis=(1, 2, 3)) == constant.min(axis=(1, 2, 3)))
    shuffled = pixel_shuffled(x, seed=0)
    np.testing.assert_array_equal(np.sort(shuffled.reshape(64, -1), axis=1), np.sort(x.reshape(64, -1), axis=1))
    assert not np.array_equal(shuffled, x)
    # Constant images with distinct values: every output is the mean of two different inputs, each input used twice.
    levels = np.arange(10, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 8, 8), np.float32) / 10
    mixed = interpolated(levels, seed=0)[:, 0, 0, 0]
    assert not np.any(np.isclose(mixed, levels[:, 0, 0, 0]))
    assert mixed.sum() == pytest.approx(levels[:, 0, 0, 0].sum())


def test_random_embedding_is_fixed_and_orders_the_sanity_sets():
    """The second feature space (no training, no data) gives the same features every time and ranks real < blurred
    < uniform noise, as the classifier's space does."""
    from vaebm_hub.evaluation.random_features import RandomEmbedding, random_features

    x, _ = load_array_dataset("digits", "train")
    test, _ = load_array_dataset("digits", "test")
    a = random_features(x[:300])
    np.testing.assert_array_equal(a, random_features(x[:300]))
    torch.testing.assert_close(RandomEmbedding().layers[0].weight, RandomEmbedding().layers[0].weight)
    blurred = torch.nn.functional.avg_pool2d(torch.from_numpy(x[:300]), 3, 1, 1).numpy()
    noise = np.random.default_rng(0).random(x[:300].shape).astype(np.float32)
    reference = random_features(test)
    floor, blur, uniform = (frechet_distance(reference, random_features(s)) for s in (x[:300], blurred, noise))
    assert floor < blur < uniform
    stacks = np.concatenate([x[:8], x[8:16], x[16:24]], axis=1)
    assert random_features(stacks).shape == (8, 3 * 224)


def test_sample_quality_computes_real_features_once_and_never_serves_stale_ones(classifier, digits):
    x, y = digits
    reference, floor, samples = x[:300].copy(), x[300:600], x[600:900]
    fresh = sample_quality(samples, reference, "digits", classifier=classifier, floor_reference=floor)
    calls = []

    def counting(clf):  # a new object with the same weights, as every dataset_classifier() call returns
        clf = copy.deepcopy(clf)
        original = clf.features
        clf.features = lambda images, *a, **k: calls.append(len(images)) or original(images, *a, **k)
        return clf

    again = sample_quality(samples, reference, "digits", classifier=counting(classifier), floor_reference=floor)
    assert again == pytest.approx(fresh, rel=1e-12)
    assert calls == [len(samples)]  # reference and floor came from the memo
    reference[:, :, :4] = 0.0  # the same array object, new content: recomputed, not served from the memo
    edited = sample_quality(samples, reference, "digits", classifier=counting(classifier), floor_reference=floor)
    assert calls == [len(samples), len(reference), len(samples)]
    assert edited["fd_clf"] != pytest.approx(fresh["fd_clf"])
    changed = counting(classifier)
    with torch.no_grad():
        next(changed.net.parameters()).add_(0.01)  # another classifier: its features are not the memoised ones
    calls.clear()
    sample_quality(samples, reference, "digits", classifier=changed, floor_reference=floor)
    assert calls == [len(reference), len(samples), len(floor)]
