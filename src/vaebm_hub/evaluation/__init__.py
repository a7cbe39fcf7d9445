"""Offline evaluation metrics on the features of a small classifier trained on the same data, and
:func:`evaluate_pipeline`, the one place that evaluates a pipeline. Real FID (:func:`inception_fid`) runs only on
Inception weights the user supplies."""

from .classifier import (
    CLASSIFIER_PRESETS,
    ClassifierConfig,
    FeatureClassifier,
    FeatureNet,
    default_cache_dir,
    get_feature_classifier,
    train_feature_classifier,
)
from .frechet import fd_classifier, fd_floor, frechet_distance
from .inception import InceptionFID, inception_fid
from .kernel import kernel_distance
from .modes import (
    class_mix_kl,
    gaussian_mixture_metrics,
    mixture_log_density,
    stack_digits,
    stacked_mode_count,
    stacked_mode_count_from_proba,
)
from .ood import OOD_SETS, auroc, constant_images, interpolated, inverted, make_ood_set, pixel_shuffled, uniform_noise
from .ood_scores import SCORE_NAMES, ood_auroc, ood_scores
from .plots import write_energy_histogram, write_sample_grid
from .precision_recall import precision_recall
from .quality import dataset_classifier, sample_quality
from .report import evaluate_pipeline, format_report
from .sampling import sample_images, sample_images_at

__all__ = [
    "CLASSIFIER_PRESETS",
    "OOD_SETS",
    "SCORE_NAMES",
    "ClassifierConfig",
    "FeatureClassifier",
    "FeatureNet",
    "InceptionFID",
    "auroc",
    "class_mix_kl",
    "constant_images",
    "dataset_classifier",
    "default_cache_dir",
    "evaluate_pipeline",
    "fd_classifier",
    "fd_floor",
    "format_report",
    "frechet_distance",
    "gaussian_mixture_metrics",
    "get_feature_classifier",
    "inception_fid",
    "interpolated",
    "inverted",
    "kernel_distance",
    "make_ood_set",
    "mixture_log_density",
    "ood_auroc",
    "ood_scores",
    "pixel_shuffled",
    "precision_recall",
    "sample_images",
    "sample_images_at",
    "sample_quality",
    "stack_digits",
    "stacked_mode_count",
    "stacked_mode_count_from_proba",
    "train_feature_classifier",
    "uniform_noise",
    "write_energy_histogram",
    "write_sample_grid",
]
