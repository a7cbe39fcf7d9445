"""Mode-coverage metrics: StackedMNIST-style mode counts, the class mix of classified samples, and the 25-Gaussians
toy.

The mode counts reduce samples to a histogram over known modes and report how many modes are hit and the reverse KL
KL(p_model ‖ uniform) = Σ_m p_m log(p_m · M) over the M modes (0 for perfect balance, log(M / k) for k equally hit).
The class mix (:func:`class_mix_kl`) compares the samples' histogram of classes with the real data's instead.

The plug-in KL of N samples over many modes is biased upwards: its entropy term is biased by about −(k − 1) / (2N)
for k modes hit (Miller 1955), 0.12 nats for 3900 samples over 1000 modes, where exact draws from the uniform
distribution score 0.12 instead of 0. ``reverse_kl`` stays the plug-in value (the estimator of the StackedMNIST papers,
which use 26,000 samples); ``reverse_kl_corrected`` subtracts Miller–Madow's (k − 1) / (2N), so that models scored on
different sample sizes, or with different kept fractions, compare (it can fall a little below 0 for a near-uniform
histogram).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from .classifier import ArrayLike, FeatureClassifier


def _histogram_summary(mode_ids: np.ndarray, num_modes: int, min_count: int = 1) -> dict[str, float]:
    """Modes with ≥ ``min_count`` samples, the plug-in reverse KL to uniform and its Miller–Madow correction (the
    module docstring); both KLs are NaN when there are no samples."""
    counts = np.bincount(mode_ids, minlength=num_modes)
    if counts.sum() == 0:
        return {"modes": 0, "reverse_kl": math.nan, "reverse_kl_corrected": math.nan}
    p = counts[counts > 0] / counts.sum()
    reverse_kl = float(np.sum(p * np.log(p * num_modes)))
    return {
        "modes": int((counts >= min_count).sum()),
        "reverse_kl": reverse_kl,
        "reverse_kl_corrected": reverse_kl - (len(p) - 1) / (2 * float(counts.sum())),
    }


def stack_digits(images: np.ndarray, num_stacks: int, seed: int = 0) -> np.ndarray:
    """Stack 3 independently drawn single-channel images as channels: (N, 1, H, W) → (num_stacks, 3, H, W)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"expected single-channel images (N, 1, H, W), got shape {images.shape}")
    picks = np.random.default_rng(seed).integers(0, len(images), size=(num_stacks, 3))
    return images[picks, 0]


def stacked_mode_count(stacks: ArrayLike, classifier: FeatureClassifier, threshold: float = 0.5) -> dict[str, float]:
    """Mode count of (N, C, H, W) stacks: classify each channel; mode = Σ_j c_j · K^(C−1−j) (= 100·c0 + 10·c1 + c2).

    A stack is kept only if every channel's top class probability exceeds ``threshold``; without this gate pure noise
    "covers" hundreds of modes. Returns ``{"modes", "reverse_kl", "reverse_kl_corrected", "marginal_kl",
    "kept_fraction"}``, all but the last over the kept stacks (the KLs are NaN if nothing is kept): the mode count and
    reverse KLs over K^C modes, and ``marginal_kl``, the sum over channels of each channel's class histogram's plug-in
    KL to uniform over K. The plug-in ``reverse_kl`` is exactly ``marginal_kl`` plus the plug-in total correlation of
    the channels' labels, which carries nearly all of the sample-size bias: ``reverse_kl_corrected − marginal_kl`` is
    the channels' dependence to within about C(K − 1) / (2N). The two say whether a model's KL is its channels' own
    mix of classes or the channels depending on each other.
    """
    if np.ndim(stacks) != 4:
        raise ValueError(f"expected stacks of shape (N, C, H, W), got {np.shape(stacks)}")
    probs = np.stack([classifier.predict_proba(stacks[:, c : c + 1]) for c in range(stacks.shape[1])], axis=1)
    return stacked_mode_count_from_proba(probs, threshold)


def stacked_mode_count_from_proba(probs: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """:func:`stacked_mode_count` from the channels' class probabilities ``(N, C, K)``, already computed."""
    num_classes = probs.shape[2]
    kept = (probs.max(axis=2) > threshold).all(axis=1)
    place_values = num_classes ** np.arange(probs.shape[1] - 1, -1, -1)
    labels = probs[kept].argmax(axis=2)  # (kept, C)
    marginal_kls = [_histogram_summary(channel, num_classes)["reverse_kl"] for channel in labels.T]
    return {
        **_histogram_summary(labels @ place_values, num_classes ** probs.shape[1]),
        "marginal_kl": float(sum(marginal_kls)),
        "kept_fraction": float(kept.mean()),
    }


def class_mix_kl(sample_probs: np.ndarray, reference_probs: np.ndarray) -> float:
    """How far the samples' mix of classes is from the real data's: KL(q_samples ‖ q_reference) between the
    histograms of the classifier's top class, averaged over channels; probabilities ``(N, C, K)``.

    0 when the model draws each class as often as the data (the classifier's mistakes enter both sides alike). A
    sampler that drifts towards some classes (e.g. short-run chains towards thin digits) raises it while FD and
    precision may still improve. The reference histogram has half a count added per class (Jeffreys), so that a class
    missing from a small reference keeps the KL finite; the plug-in bias is about (K − 1) / (2N), 0.009 for 500
    samples over 10 classes.
    """
    num_classes = sample_probs.shape[2]
    kls = []
    for channel in range(sample_probs.shape[1]):
        q = np.bincount(sample_probs[:, channel].argmax(axis=1), minlength=num_classes) / len(sample_probs)
        r = np.bincount(reference_probs[:, channel].argmax(axis=1), minlength=num_classes) + 0.5
        r = r / r.sum()
        hit = q > 0
        kls.append(float(np.sum(q[hit] * np.log(q[hit] / r[hit]))))
    return float(np.mean(kls))


def _squared_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """‖x_n − μ_m‖², (N, M)."""
    return ((x[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)


def mixture_log_density(x: np.ndarray, centres: np.ndarray, sigma: float) -> np.ndarray:
    """log p(x) for the equal-weight mixture (1/M) Σ_m N(x; μ_m, σ²I); x (N, D), centres (M, D) → (N,)."""
    log_normaliser = math.log(len(centres)) + x.shape[1] * math.log(sigma * math.sqrt(2 * math.pi))
    return logsumexp(-_squared_distances(x, centres) / (2 * sigma**2), axis=1) - log_normaliser


def gaussian_mixture_metrics(
    samples: np.ndarray, centres: np.ndarray, sigma: float, num_sigmas: float = 3.0, min_count: int = 1
) -> dict[str, float]:
    """Mode-collapse metrics for (N, 2) samples of a mixture with (M, 2) ``centres`` and per-axis std ``sigma``.

    - ``high_quality_fraction``: share within ``num_sigmas``·σ of the nearest centre (for exact samples in 2-D this
      is 1 − exp(−num_sigmas²/2) ≈ 0.989 at 3σ);
    - ``modes_covered``: centres that receive ≥ ``min_count`` high-quality samples;
    - ``reverse_kl``: KL(histogram of the high-quality samples' nearest centres ‖ uniform over M), NaN if none, and
      ``reverse_kl_corrected``, its Miller–Madow correction (the module docstring);
    - ``mean_log_density``: E_samples[log p_true(x)] under the true mixture.
    """
    samples, centres = np.asarray(samples, dtype=np.float64), np.asarray(centres, dtype=np.float64)
    if samples.ndim != 2 or centres.ndim != 2 or samples.shape[1] != centres.shape[1]:
        raise ValueError(f"expected samples (N, D) and centres (M, D), same D; got {samples.shape}, {centres.shape}")
    sq = _squared_distances(samples, centres)
    nearest = sq.argmin(axis=1)
    high_quality = sq[np.arange(len(samples)), nearest] <= (num_sigmas * sigma) ** 2
    histogram = _histogram_summary(nearest[high_quality], len(centres), min_count)
    return {
        "high_quality_fraction": float(high_quality.mean()),
        "modes_covered": histogram["modes"],
        "reverse_kl": histogram["reverse_kl"],
        "reverse_kl_corrected": histogram["reverse_kl_corrected"],
        "mean_log_density": float(mixture_log_density(samples, centres, sigma).mean()),
    }
