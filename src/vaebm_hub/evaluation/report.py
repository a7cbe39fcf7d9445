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
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from ..data import load_array_dataset
from ..pipelines.decoding import pipeline_decoder_output
from .classifier import FeatureClassifier
from .inputs import MIN_SAMPLES, _check_count, _check_dataset, reference_options
from .ood import OOD_SETS, make_ood_set
from .ood_scores import _energies, ood_auroc
from .plots import GRID_SIZE, write_energy_histogram, write_sample_grid
from .quality import STACKED_DATASETS, dataset_classifier, sample_quality
from .sampling import _chain_lengths, sample_images_at

DEFAULT_CHAIN_LENGTHS = (0, 10, 30, 100)


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
        "decoder_output": pipeline_decoder_output(pipe),
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
    drawn = sample_images_at(pipe, num_samples, lengths, batch_size=batch_size, seed=seed)
    for k in lengths:
        samples[k], seconds = drawn[k]
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
            f"{'K':>5} {'FD_clf':>9} {'floor':>8} {'FD_rand':>8} {'floor':>7} {'KD':>8} {'prec':>6} {'recall':>6} "
            f"{'conf>.9':>7} {'cls KL':>6} {'E mean':>8} {'sec':>7}"
        )
        for r in rows:
            lines.append(
                f"{r['langevin_steps']:>5} {r['fd_clf']:>9.2f} {r['fd_floor']:>8.2f} {r['fd_rand']:>8.3f} "
                f"{r['fd_rand_floor']:>7.3f} {r['kernel_distance']:>8.3f} {r['precision']:>6.3f} {r['recall']:>6.3f} "
                f"{r['confident_fraction']:>7.3f} {r['class_kl']:>6.3f} {r['energy_mean']:>8.3f} "
                f"{r['sampling_seconds']:>7.2f}"
            )
        if "inception_fid" in rows[0]:
            values = ", ".join(f"K={r['langevin_steps']}: {r['inception_fid']:.2f}" for r in rows)
            lines.append(f"Inception FID (real Inception weights): {values}")
    for name, scores in result["ood"].items():
        lines.append(f"OOD AUROC vs {name}: " + ", ".join(f"{s} {fmt(v, '.3f')}" for s, v in scores.items()))
    return "\n".join(lines)
