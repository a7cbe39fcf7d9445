"""Evaluate a VAEBM pipeline in one place: sampling, sample quality, OOD detection and the report's figures.

Every number comes from the small metric modules beside this one; this module only wires them to a pipeline and a
built-in dataset (:mod:`vaebm_hub.data`):

* image datasets — FD_clf (Fréchet distance in the features of a classifier trained on the same data, *not* FID)
  beside its real-vs-real floor at the same sample size, kernel distance and precision/recall in the same features;
  for the ``stacked_*`` datasets also the confidence-gated mode count. Each channel of a stack is classified on its
  own and the per-channel features are concatenated.
* ``gaussians25`` — share within 3σ, modes covered, reverse KL and E[log p_true] under the true mixture.
* OOD — AUROC of −E(x), log p_vae(x) and log h(x) = log p_vae(x) − E(x) on synthetic OOD sets built from the test
  split (``evaluation.ood``).

Images are accepted channels-last ``(N, H, W, C)`` (the pipeline's ``output_type="np"``) or channels-first
``(N, C, H, W)`` (:func:`vaebm_hub.data.load_array_dataset`); the layout is read from where the axis of size 1 or 3 is.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from ..data import GAUSSIANS25_SIGMA, gaussian_grid_centres, load_array_dataset
from ..data.builtin import BUILTIN_DATASETS, MNIST_PADDED_SIZE, NATIVE_SAMPLE_SHAPES, PADDABLE_DATASETS
from .classifier import FeatureClassifier, get_feature_classifier
from .frechet import frechet_distance
from .kernel import kernel_distance
from .modes import gaussian_mixture_metrics, stacked_mode_count
from .ood import OOD_SETS, auroc, make_ood_set
from .precision_recall import precision_recall

SCORE_NAMES = ("energy", "vae_elbo", "log_h")
DEFAULT_CHAIN_LENGTHS = (0, 10, 30, 100)
KERNEL_SUBSET_SIZE = 500
GRID_SIZE = 64
MIN_SAMPLES = 4  # precision/recall with k = 3 neighbours needs k + 1 points per set
STACKED_DATASETS = ("stacked_digits", "stacked_mnist")
# Call arguments that sample_images sets itself.
_OWNED_CALL_KWARGS = ("batch_size", "num_inference_steps", "generator", "output_type", "return_dict", "latents")


# ---------------------------------------------------------------------------------------------------- input checks
def check_array(array: object, name: str, *, hint: str = "") -> np.ndarray:
    """``array`` as a non-empty, finite float32 numpy array, else a ``ValueError`` naming ``name`` and ``hint``."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 0 or len(array) == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); pass at least {MIN_SAMPLES} rows.")
    bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if bad.any():
        raise ValueError(f"{name} has NaN or Inf values in {int(bad.sum())} of {len(array)} rows. {hint}".rstrip())
    return array


def channels_first(images: object, name: str = "images", *, hint: str = "") -> np.ndarray:
    """Checked images ``(N, C, H, W)`` float32 in [0, 1] from channels-last or channels-first input (C ∈ {1, 3})."""
    images = check_array(images, name, hint=hint)
    if images.ndim != 4:
        raise ValueError(
            f"{name} must be images (N, H, W, C) or (N, C, H, W), got shape {images.shape}; "
            "2-D points are only evaluated for dataset 'gaussians25'."
        )
    if images.shape[1] not in (1, 3):
        if images.shape[3] not in (1, 3):
            raise ValueError(f"{name} has shape {images.shape}: no channel axis of size 1 or 3 at position 1 or 3.")
        images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    if images.min() < 0 or images.max() > 1:
        raise ValueError(
            f"{name} has values in [{images.min():.3g}, {images.max():.3g}]; images must lie in [0, 1] "
            "(divide uint8 images by 255)."
        )
    return images


def _check_dataset(dataset: str) -> None:
    if dataset not in BUILTIN_DATASETS:
        raise ValueError(
            f"Unknown dataset {dataset!r}: evaluation needs a built-in dataset with a held-out split, one of "
            f"{BUILTIN_DATASETS}."
        )


def reference_options(dataset: str, sample_shape: Sequence[int]) -> dict:
    """Loader options (``{"pad": True}`` or ``{}``) under which ``dataset`` yields items of ``sample_shape``.

    Raises a ``ValueError`` when no such option exists, e.g. a 28×28 pipeline evaluated on ``digits``.
    """
    _check_dataset(dataset)
    native, shape = NATIVE_SAMPLE_SHAPES[dataset], tuple(sample_shape)
    if shape == native:
        return {}
    if dataset in PADDABLE_DATASETS and shape == (native[0], MNIST_PADDED_SIZE, MNIST_PADDED_SIZE):
        return {"pad": True}
    allowed = [native] + ([(native[0], MNIST_PADDED_SIZE, MNIST_PADDED_SIZE)] if dataset in PADDABLE_DATASETS else [])
    raise ValueError(
        f"Samples of shape {shape} cannot be compared with dataset {dataset!r}, whose items are "
        f"{' or '.join(map(str, allowed))}. Evaluate a pipeline trained on {dataset!r} (or pick the dataset the "
        "pipeline was trained on)."
    )


def _check_count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------------------- sampling
def _batch_seed(seed: int, batch: int) -> int:
    """A 64-bit seed per (seed, batch) pair, so that different seeds never share a batch's random stream."""
    return int(np.random.SeedSequence([seed, batch]).generate_state(1, dtype=np.uint64)[0])


def sample_images(
    pipe,
    num_samples: int,
    num_inference_steps: int,
    *,
    batch_size: int = 250,
    seed: int = 0,
    **call_kwargs,
) -> tuple[np.ndarray, float]:
    """Draw ``num_samples`` samples with ``num_inference_steps`` Langevin steps; returns (samples, wall seconds).

    Samples are ``(N, H, W, C)`` floats in [0, 1] for image pipelines and ``(N, D)`` for vector (MLP VAE)
    pipelines, as ``pipe(output_type="np")`` returns them. Batch ``b`` uses its own ``torch.Generator`` seeded from
    ``(seed, b)``, so the result is a function of ``(seed, batch_size)`` only, and the initial noise is the same for
    every chain length: K = 0 (the VAE) and K > 0 rows start from identical ε. ``call_kwargs`` go to the pipeline
    (``step_size``, ``temperature``, ``potential``, ``drop_nonfinite``, ...); with ``drop_nonfinite=True`` fewer
    than ``num_samples`` rows may come back.
    """
    num_samples = _check_count(num_samples, "num_samples", 1)
    num_inference_steps = _check_count(num_inference_steps, "num_inference_steps", 0)
    batch_size = _check_count(batch_size, "batch_size", 1)
    seed = _check_count(seed, "seed", 0)
    owned = sorted(set(call_kwargs) & set(_OWNED_CALL_KWARGS))
    if owned:
        raise ValueError(f"sample_images sets {owned} itself; pass num_samples, num_inference_steps, batch_size, seed")
    sizes = [min(batch_size, num_samples - start) for start in range(0, num_samples, batch_size)]
    start = time.perf_counter()
    batches = []
    for b, size in enumerate(sizes):
        generator = torch.Generator().manual_seed(_batch_seed(seed, b))
        out = pipe(
            batch_size=size,
            num_inference_steps=num_inference_steps,
            generator=generator,
            output_type="np",
            **call_kwargs,
        )
        batches.append(out.images)
    samples = np.concatenate(batches)
    return samples, time.perf_counter() - start


# ---------------------------------------------------------------------------------------------------- quality
def _base_dataset(dataset: str) -> str:
    """The single-channel dataset whose classifier scores ``dataset`` (stacks are classified channel by channel)."""
    return dataset.removeprefix("stacked_")


def dataset_classifier(
    dataset: str, image_size: int | None = None, *, cache_dir: str | os.PathLike | None = None
) -> FeatureClassifier:
    """The evaluation classifier of a built-in image dataset, trained on (or loaded from the cache for) the train
    split of its single-channel base (``digits`` or ``mnist``); ``image_size=32`` uses MNIST zero-padded to 32×32."""
    _check_dataset(dataset)
    if dataset == "gaussians25":
        raise ValueError("'gaussians25' is scored against the true mixture; it has no classifier")
    base = _base_dataset(dataset)
    size = image_size or NATIVE_SAMPLE_SHAPES[base][-1]
    options = reference_options(base, (1, size, size))
    images, labels = load_array_dataset(base, "train", **options)
    return get_feature_classifier(base, images, labels, cache_dir=cache_dir)


def _features(classifier: FeatureClassifier, images: np.ndarray) -> np.ndarray:
    """Classifier features (N, C · d): each channel classified on its own, the channels' features concatenated."""
    return np.concatenate([classifier.features(images[:, c : c + 1]) for c in range(images.shape[1])], axis=1)


def _subsample(array: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    if len(array) <= size:
        return array
    return array[np.sort(np.random.default_rng(seed).choice(len(array), size, replace=False))]


def _mixture_quality(samples: object, reference: object) -> dict:
    nonfinite_hint = "The Langevin chains diverged: lower the step size, or sample with drop_nonfinite=True."
    samples = check_array(samples, "samples", hint=nonfinite_hint)
    reference = check_array(reference, "reference")
    if samples.ndim != 2 or samples.shape[1] != 2 or reference.shape[1:] != (2,):
        raise ValueError(
            f"'gaussians25' compares 2-D points: expected samples and reference of shape (N, 2), got "
            f"{samples.shape} and {reference.shape}."
        )
    centres = gaussian_grid_centres()
    metrics = {"num_samples": len(samples), **gaussian_mixture_metrics(samples, centres, GAUSSIANS25_SIGMA)}
    true = gaussian_mixture_metrics(reference, centres, GAUSSIANS25_SIGMA)
    metrics.update({f"reference_{key}": value for key, value in true.items()})
    return metrics


def sample_quality(
    samples: np.ndarray,
    reference: np.ndarray,
    dataset: str,
    *,
    classifier: FeatureClassifier | None = None,
    floor_reference: np.ndarray | None = None,
) -> dict:
    """Quality of ``samples`` against held-out real ``reference`` data of the built-in ``dataset``.

    Image datasets (channels-last or channels-first, see the module docstring) give:

    * ``fd_clf``: FD between classifier features of ``reference`` and ``samples``;
    * ``fd_floor``: FD between ``reference`` and as many real images as there are samples, drawn (seed 0) from
      ``floor_reference`` (default: the dataset's train split), so ``fd_minus_floor`` = ``fd_clf`` − ``fd_floor``
      is ≈ 0 for samples as good as real data;
    * ``kernel_distance`` (± ``kernel_distance_std``), ``precision``, ``recall`` (k = 3) in the same features;
    * ``classifier_accuracy``: the classifier's held-out accuracy; ``num_samples``, ``num_reference``,
      ``num_floor``;
    * stacked datasets add the gated mode count: ``modes``, ``reverse_kl``, ``kept_fraction``.

    ``gaussians25`` (points ``(N, 2)``) gives ``high_quality_fraction``, ``modes_covered``, ``reverse_kl`` and
    ``mean_log_density`` of the samples, and the same keys prefixed ``reference_`` for the real points.
    ``classifier`` defaults to :func:`dataset_classifier` (trained once, then cached).
    """
    _check_dataset(dataset)
    if dataset == "gaussians25":
        return _mixture_quality(samples, reference)
    nonfinite_hint = "The Langevin chains diverged: lower the step size, or sample with drop_nonfinite=True."
    samples = channels_first(samples, "samples", hint=nonfinite_hint)
    reference = channels_first(reference, "reference")
    if samples.shape[1:] != reference.shape[1:]:
        raise ValueError(
            f"samples are images of shape {samples.shape[1:]} (C, H, W) but the reference images are "
            f"{reference.shape[1:]}; compare samples with real data of the same size and channel count."
        )
    options = reference_options(dataset, samples.shape[1:])
    for array, name in ((samples, "samples"), (reference, "reference")):
        if len(array) < MIN_SAMPLES:
            raise ValueError(f"{name} has {len(array)} images; precision/recall needs at least {MIN_SAMPLES}.")
    if floor_reference is None:
        floor_reference, _ = load_array_dataset(dataset, "train", **options)
    floor = _subsample(channels_first(floor_reference, "floor_reference"), len(samples))
    if floor.shape[1:] != reference.shape[1:] or len(floor) < 2:
        raise ValueError(
            f"floor_reference must hold at least 2 real images of shape {reference.shape[1:]}, got {floor.shape}."
        )
    if classifier is None:
        classifier = dataset_classifier(dataset, samples.shape[-1])

    real, fake, floor_features = (_features(classifier, x) for x in (reference, samples, floor))
    fd, fd_floor = frechet_distance(real, fake), frechet_distance(real, floor_features)
    metrics = {
        "num_samples": len(samples),
        "num_reference": len(reference),
        "num_floor": len(floor),
        "fd_clf": fd,
        "fd_floor": fd_floor,
        "fd_minus_floor": fd - fd_floor,
        **kernel_distance(real, fake, subset_size=min(KERNEL_SUBSET_SIZE, len(real), len(fake))),
        **precision_recall(real, fake),
        "classifier_accuracy": float(classifier.accuracy),
    }
    if dataset in STACKED_DATASETS:
        metrics.update(stacked_mode_count(samples, classifier))
    return metrics


# ---------------------------------------------------------------------------------------------------- OOD
def _pipeline_inputs(pipe, data: object, name: str) -> np.ndarray:
    """``data`` in the layout the pipeline scores: (N, C, H, W) for image VAEs, (N, D) for vector VAEs."""
    if len(pipe.vae.data_shape) == 3:
        return channels_first(data, name)
    return check_array(data, name)


@torch.no_grad()
def ood_scores(
    pipe, images: np.ndarray, *, method: str = "elbo", batch_size: int = 250, seed: int = 0
) -> dict[str, np.ndarray]:
    """Per-example scores (N,) float64, each higher for more in-distribution inputs:

    * ``"energy"``: −E(x);
    * ``"vae_elbo"``: log p_vae(x), estimated by the ELBO (``method="elbo"``) or the IWAE bound (``"iwae"``);
    * ``"log_h"``: log p_vae(x) − E(x), VAEBM's unnormalised log-density (log Z cancels in AUROC).

    The posterior samples of the bound are drawn from one generator seeded with ``seed``.
    """
    batch_size = _check_count(batch_size, "batch_size", 1)
    if method not in ("elbo", "iwae"):
        raise ValueError(f"method must be 'elbo' or 'iwae', got {method!r}")
    data = torch.from_numpy(_pipeline_inputs(pipe, images, "images"))
    generator = torch.Generator().manual_seed(_check_count(seed, "seed", 0))
    log_h = [
        pipe.log_density(chunk, method=method, generator=generator).double().cpu() for chunk in data.split(batch_size)
    ]
    energy, log_h = _energies(pipe, data, batch_size), torch.cat(log_h).numpy()
    return {"energy": -energy, "vae_elbo": log_h + energy, "log_h": log_h}


@torch.no_grad()
def _energies(pipe, data: np.ndarray | torch.Tensor, batch_size: int) -> np.ndarray:
    """E(x) (N,) float64 of data in the pipeline's layout (see ``_pipeline_inputs``)."""
    data = torch.as_tensor(_pipeline_inputs(pipe, data, "images") if isinstance(data, np.ndarray) else data)
    return torch.cat([pipe.energy(chunk).double().cpu() for chunk in data.split(batch_size)]).numpy()


def ood_auroc(pipe, in_dist: np.ndarray, ood_sets: Mapping[str, np.ndarray], **kw) -> dict[str, dict[str, float]]:
    """``{ood set: {score: AUROC}}`` of in-distribution ``in_dist`` against each OOD set (``kw`` → ``ood_scores``);
    0.5 is chance, 1 a perfect detector."""
    if not ood_sets:
        raise ValueError("ood_sets is empty; pass e.g. {'uniform': evaluation.uniform_noise(images)}")
    scores_in = ood_scores(pipe, in_dist, **kw)
    results = {}
    for name, images in ood_sets.items():
        scores_out = ood_scores(pipe, images, **kw)
        results[name] = {score: auroc(scores_in[score], scores_out[score]) for score in SCORE_NAMES}
    return results


# ---------------------------------------------------------------------------------------------------- figures
def write_energy_histogram(path: str | os.PathLike, energies: Mapping[str, np.ndarray]) -> Path:
    """Overlaid, normalised histograms of the energies E(x) of each named set on shared bins (matplotlib, Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not energies:
        raise ValueError("energies is empty; pass e.g. {'real (test)': E_real, 'VAE': E_vae, 'VAEBM': E_vaebm}")
    arrays = {name: check_array(values, f"energies[{name!r}]").ravel() for name, values in energies.items()}
    bins = np.histogram_bin_edges(np.concatenate(list(arrays.values())), bins=40)
    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, values in arrays.items():
        axes.hist(values, bins=bins, density=True, alpha=0.5, label=f"{name} (n={len(values)})")
    axes.set_xlabel("energy E(x)  (lower = more data-like)")
    axes.set_ylabel("density")
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def write_sample_grid(path: str | os.PathLike, panels: Mapping[str, np.ndarray]) -> Path:
    """Labelled side-by-side panels (``training.images.sample_panels``): images as grids, 2-D points as
    histograms. Images may be channels-last or channels-first."""
    from ..training.images import sample_panels

    tensors = {
        name: torch.from_numpy(channels_first(x, name) if np.ndim(x) == 4 else check_array(x, name))
        for name, x in panels.items()
    }
    sizes = [x.shape[-1] for x in tensors.values() if x.dim() == 4]
    scale = max(1, math.ceil(GRID_SIZE / max(sizes))) if sizes else 1
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sample_panels(tensors, scale=scale).save(path)
    return path


# ---------------------------------------------------------------------------------------------------- whole report
def _versions() -> dict[str, str]:
    found = {}
    for package in ("vaebm-hub", "torch", "diffusers", "numpy", "scipy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def _jsonable(value: object) -> object:
    """Numpy scalars → Python numbers, NaN/Inf → None (strict JSON), recursively."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _chain_lengths(chain_lengths: Iterable[int]) -> list[int]:
    """Unique chain lengths in the given order, with K = 0 (the VAE baseline) always first."""
    lengths = [_check_count(k, "every chain length", 0) for k in chain_lengths]
    return [0] + [k for k in dict.fromkeys(lengths) if k != 0]


def _ood_names(dataset: str, ood_set_names: Iterable[str] | None) -> list[str]:
    if dataset == "gaussians25":
        if ood_set_names:
            raise ValueError("the OOD sets are image transforms; 'gaussians25' has none (pass ood_set_names=None)")
        return []
    names = list(OOD_SETS) if ood_set_names is None else list(ood_set_names)
    unknown = sorted(set(names) - set(OOD_SETS))
    if unknown:
        raise ValueError(f"unknown OOD sets {unknown}; choose from {sorted(OOD_SETS)}")
    return names


def _test_accuracy(classifier: FeatureClassifier, images: np.ndarray, labels: np.ndarray, dataset: str) -> float:
    """Accuracy on the test split; a stack's label 100·c0 + 10·c1 + c2 is split into its channels' digits."""
    if dataset in STACKED_DATASETS:
        labels = np.stack([labels // 100, labels // 10 % 10, labels % 10], axis=1)
        predicted = np.stack(
            [classifier.predict_proba(images[:, c : c + 1]).argmax(1) for c in range(images.shape[1])], axis=1
        )
    else:
        predicted = classifier.predict_proba(images).argmax(1)
    return float((predicted == labels).mean())


def evaluate_pipeline(
    pipe,
    dataset_name: str,
    *,
    num_samples: int = 500,
    chain_lengths: Iterable[int] = DEFAULT_CHAIN_LENGTHS,
    ood_set_names: Iterable[str] | None = None,
    seed: int = 0,
    data_root: str | os.PathLike | None = None,
    batch_size: int = 250,
    classifier: FeatureClassifier | None = None,
    inception_weights: str | os.PathLike | None = None,
    output_dir: str | os.PathLike | None = None,
) -> dict:
    """Evaluate ``pipe`` on the built-in ``dataset_name``; returns a JSON-serialisable dict.

    * ``rows``: one per chain length K (K = 0, the VAE, is always included and comes first), each
      :func:`sample_quality` of ``num_samples`` samples against the test split plus ``langevin_steps``, ``model``,
      ``sampling_seconds``, ``energy_mean`` and, with ``inception_weights``, ``inception_fid`` (real FID against
      the whole test split; InceptionV3 runs at 299×299, about 0.3 s per image on a 2-core CPU);
    * ``ood``: :func:`ood_auroc` of the first ``num_samples`` test items against each OOD set (all of
      ``evaluation.OOD_SETS`` by default; none for ``gaussians25``);
    * ``meta``: dataset, num_samples, seed, chain lengths, classifier accuracies, sampler settings, versions.

    The reference (test split) and floor sets do not depend on ``seed``; samples do. ``data_root`` is the folder
    that caches the evaluation classifier (default ``evaluation.default_cache_dir()``); ``classifier`` overrides it.
    With ``output_dir`` it also writes ``metrics.json``, ``samples.png`` (test data, then VAE vs VAEBM at the longest
    chain from the same initial noise) and ``energy_histogram.png`` (E on test data, VAE and VAEBM samples).
    """
    _check_dataset(dataset_name)
    num_samples = _check_count(num_samples, "num_samples", MIN_SAMPLES)
    seed = _check_count(seed, "seed", 0)
    lengths = _chain_lengths(chain_lengths)
    ood_names = _ood_names(dataset_name, ood_set_names)
    options = reference_options(dataset_name, pipe.vae.data_shape)
    if inception_weights is not None:
        from .inception import check_inception_weights

        if dataset_name == "gaussians25":
            raise ValueError("Inception FID needs images; 'gaussians25' is 2-D points (drop inception_weights)")
        check_inception_weights(inception_weights)

    reference, labels = load_array_dataset(dataset_name, "test", **options)
    is_images = reference.ndim == 4
    floor_reference = load_array_dataset(dataset_name, "train", **options)[0] if is_images else None
    meta = {
        "dataset": dataset_name,
        "num_samples": num_samples,
        "num_reference": len(reference),
        "seed": seed,
        "batch_size": batch_size,
        "chain_lengths": lengths,
        "potential": pipe.config.potential,
        "scheduler": {k: v for k, v in pipe.scheduler.config.items() if not k.startswith("_")},
        "versions": _versions(),
    }
    if is_images:
        if classifier is None:
            classifier = dataset_classifier(dataset_name, reference.shape[-1], cache_dir=data_root)
        meta["classifier_accuracy"] = float(classifier.accuracy)
        meta["classifier_test_accuracy"] = _test_accuracy(classifier, reference, labels, dataset_name)
        meta["note"] = (
            "fd_clf is the Frechet distance in the features of a classifier trained on this dataset, not FID; "
            "compare it with fd_floor (real vs real at the same sample size)."
        )

    inception = None
    if inception_weights is not None:
        from .inception import InceptionFID

        inception = InceptionFID(reference, inception_weights, device=pipe.device)

    rows, samples, energies = [], {}, {}
    for k in lengths:
        samples[k], seconds = sample_images(pipe, num_samples, k, batch_size=batch_size, seed=seed)
        energies[k] = _energies(pipe, samples[k], batch_size)
        row = {"langevin_steps": k, "model": "VAE" if k == 0 else "VAEBM"}
        row.update(sample_quality(samples[k], reference, dataset_name, classifier=classifier,
                                  floor_reference=floor_reference))  # fmt: skip
        row["sampling_seconds"] = seconds
        row["energy_mean"] = float(energies[k].mean())
        if inception is not None:
            row["inception_fid"] = inception(samples[k])
        rows.append(row)

    in_dist = reference[:num_samples]
    ood = {}
    if ood_names:
        ood_sets = {name: make_ood_set(name, in_dist, seed=seed) for name in ood_names}
        ood = ood_auroc(pipe, in_dist, ood_sets, batch_size=batch_size, seed=seed)

    result = _jsonable({"meta": meta, "rows": rows, "ood": ood})
    if output_dir is not None:
        longest = max(lengths)
        figures = {"VAE (K=0)": 0, f"VAEBM (K={longest})": longest} if longest > 0 else {"VAE (K=0)": 0}
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "metrics.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
        shown = GRID_SIZE if is_images else None  # all points of a 2-D toy go into its histogram panel
        panels = {"real (test)": in_dist[:shown], **{name: samples[k][:shown] for name, k in figures.items()}}
        write_sample_grid(output_dir / "samples.png", panels)
        histogram = {"real (test)": _energies(pipe, in_dist, batch_size)}
        histogram.update({name: energies[k] for name, k in figures.items()})
        write_energy_histogram(output_dir / "energy_histogram.png", histogram)
    return result


def format_report(result: Mapping) -> str:
    """A short plain-text table of :func:`evaluate_pipeline`'s result."""
    meta, rows = result["meta"], result["rows"]
    lines = [f"{meta['dataset']}: {meta['num_samples']} samples per row, seed {meta['seed']}"]

    def fmt(value: object, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    if meta["dataset"] == "gaussians25":
        lines.append(f"{'K':>5} {'within 3σ':>10} {'modes':>6} {'rev KL':>8} {'log p_true':>11} {'sec':>7}")
        for r in rows:
            lines.append(
                f"{r['langevin_steps']:>5} {fmt(r['high_quality_fraction'], '.3f'):>10} {r['modes_covered']:>6} "
                f"{fmt(r['reverse_kl'], '.3f'):>8} {fmt(r['mean_log_density'], '.2f'):>11} "
                f"{r['sampling_seconds']:>7.2f}"
            )
    else:
        lines.append(
            f"FD_clf = Frechet distance in a {meta['dataset']} classifier's features (not FID); "
            f"classifier test accuracy {meta['classifier_test_accuracy']:.3f}"
        )
        lines.append(
            f"{'K':>5} {'FD_clf':>9} {'floor':>8} {'KD':>8} {'prec':>6} {'recall':>6} {'E mean':>8} {'sec':>7}"
        )
        for r in rows:
            lines.append(
                f"{r['langevin_steps']:>5} {r['fd_clf']:>9.2f} {r['fd_floor']:>8.2f} {r['kernel_distance']:>8.3f} "
                f"{r['precision']:>6.3f} {r['recall']:>6.3f} {r['energy_mean']:>8.3f} {r['sampling_seconds']:>7.2f}"
            )
        if "inception_fid" in rows[0]:
            values = ", ".join(f"K={r['langevin_steps']}: {r['inception_fid']:.2f}" for r in rows)
            lines.append(f"Inception FID (real Inception weights): {values}")
    for name, scores in result["ood"].items():
        lines.append(f"OOD AUROC vs {name}: " + ", ".join(f"{s} {fmt(v, '.3f')}" for s, v in scores.items()))
    return "\n".join(lines)
