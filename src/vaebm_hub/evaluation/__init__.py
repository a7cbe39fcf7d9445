"""Offline evaluation metrics on the features of a small classifier trained on the same data (no Inception/FID)."""

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
from .kernel import kernel_distance
from .modes import gaussian_mixture_metrics, grid_centres, mixture_log_density, stack_digits, stacked_mode_count
from .ood import OOD_SETS, auroc, constant_images, interpolated, inverted, make_ood_set, pixel_shuffled, uniform_noise
from .precision_recall import precision_recall

__all__ = [
    "CLASSIFIER_PRESETS",
    "ClassifierConfig",
    "FeatureClassifier",
    "FeatureNet",
    "OOD_SETS",
    "auroc",
    "constant_images",
    "default_cache_dir",
    "fd_classifier",
    "fd_floor",
    "frechet_distance",
    "gaussian_mixture_metrics",
    "get_feature_classifier",
    "grid_centres",
    "interpolated",
    "inverted",
    "kernel_distance",
    "make_ood_set",
    "mixture_log_density",
    "pixel_shuffled",
    "precision_recall",
    "stack_digits",
    "stacked_mode_count",
    "train_feature_classifier",
    "uniform_noise",
]
