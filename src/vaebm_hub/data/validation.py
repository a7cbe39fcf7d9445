"""Checks on the user's data arguments. Each failure is a ``ValueError`` that names the problem and the fix,
raised while the dataset is built, i.e. before any training step runs."""

from __future__ import annotations

import os
from collections.abc import Mapping

from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

from .builtin import BUILTIN_DATASETS, MNIST_PADDED_SIZE, NATIVE_SAMPLE_SHAPES, PADDABLE_DATASETS

IMAGE_EXTENSIONS = tuple(sorted(ImageFolder.EXTENSIONS))


def check_data_source(dataset_name: object, train_data_dir: str | os.PathLike | None) -> None:
    """Exactly one of ``dataset_name`` / ``train_data_dir`` must be given."""
    if dataset_name is None and train_data_dir is None:
        raise ValueError(
            "No training data: pass --dataset_name (a built-in name such as "
            f"{', '.join(BUILTIN_DATASETS)}, or a Hugging Face Hub id) or --train_data_dir DIR (a folder of images)."
        )
    if dataset_name is not None and train_data_dir is not None:
        raise ValueError(
            f"Both --dataset_name ({dataset_name!r}) and --train_data_dir ({str(train_data_dir)!r}) were given; "
            "pass only one of them."
        )


def check_image_dir(data_dir: str | os.PathLike) -> None:
    """``data_dir`` must be a readable folder with at least one image file (searched recursively)."""
    if not os.path.isdir(data_dir):
        what = "is not a directory" if os.path.exists(data_dir) else "does not exist"
        raise ValueError(f"--train_data_dir {str(data_dir)!r} {what}; pass a folder that contains image files.")

    def fail(error: OSError) -> None:
        raise ValueError(f"--train_data_dir {str(data_dir)!r} cannot be read ({error}); check its permissions.")

    for _, _, files in os.walk(data_dir, onerror=fail):
        if any(name.lower().endswith(IMAGE_EXTENSIONS) for name in files):
            return
    raise ValueError(
        f"No images found in --train_data_dir {str(data_dir)!r} (searched recursively). "
        f"Accepted extensions: {' '.join(IMAGE_EXTENSIONS)}."
    )


def builtin_loader_options(name: str, *, resolution: int | None, channels: int | None, random_flip: bool) -> dict:
    """Check a request for built-in ``name`` and return the loader options it implies (``{"pad": True}`` or ``{}``).

    Built-ins are never resized (that would change the data): ``resolution`` must be ``None`` or the native size,
    or 32 for ``mnist`` / ``stacked_mnist`` (zero-padding 28 → 32, as NVAE does). ``channels`` must be ``None`` or
    the native count; for the 2-D toy ``gaussians25``, ``resolution`` must be ``None``, ``channels`` ``None`` or 2,
    and ``random_flip`` is not allowed.
    """
    native = NATIVE_SAMPLE_SHAPES[name]
    if len(native) == 1:
        if resolution is not None or random_flip or channels not in (None, native[0]):
            raise ValueError(
                f"{name!r} yields {native[0]}-D points, not images: drop --resolution and --random_flip, "
                f"and leave channels unset (or {native[0]}, the point dimension)."
            )
        return {}
    sizes = (native[-1], MNIST_PADDED_SIZE) if name in PADDABLE_DATASETS else (native[-1],)
    if channels not in (None, native[0]):
        raise ValueError(
            f"{name!r} images have {native[0]} channel(s) but {channels} were requested; use a model with "
            f"{native[0]} input channel(s) (or, for colour, a stacked_* dataset)."
        )
    if resolution not in (None, *sizes):
        raise ValueError(
            f"{name!r} is {native[-1]}×{native[-1]} and built-ins are not resized; got resolution={resolution}. "
            f"Pass --resolution {' or '.join(map(str, sizes))} (or omit it), or use a model with that sample size."
        )
    return {"pad": True} if resolution == MNIST_PADDED_SIZE and name in PADDABLE_DATASETS else {}


def resolve_image_shape(
    sizes: Mapping[tuple[int, int], str],
    channel_counts: Mapping[int, str],
    *,
    resolution: int | None,
    channels: int | None,
) -> tuple[int, int, int]:
    """The item shape ``(C, H, W)`` of an image dataset, given its distinct sizes ``(W, H)`` and channel counts.

    Each mapping goes from a distinct value to one image that has it (for the message). Mixed sizes need
    ``resolution`` and mixed grey/colour needs ``channels``.
    """
    if channels not in (None, 1, 3):
        raise ValueError(f"channels={channels} is not supported for images; use 1 (grey) or 3 (RGB).")
    if resolution is None and len(sizes) > 1:
        examples = ", ".join(f"{source} is {w}×{h}" for (w, h), source in list(sizes.items())[:3])
        raise ValueError(
            f"The images have {len(sizes)} different sizes ({examples}); pass --resolution N to resize and crop "
            "them all to N×N."
        )
    if channels is None and len(channel_counts) > 1:
        examples = ", ".join(f"{source} has {c} channel(s)" for c, source in channel_counts.items())
        raise ValueError(
            f"The images mix grey and colour ({examples}); pass channels=1 (grey) or channels=3 (RGB) to convert them."
        )
    (width, height), channel_count = next(iter(sizes)), next(iter(channel_counts))
    return (
        channels or channel_count,
        height if resolution is None else resolution,
        width if resolution is None else resolution,
    )


def validate_against(dataset: object, channels: int, sample_size: int | None) -> None:
    """Check that ``dataset.sample_shape`` is what a model expects: ``(channels, sample_size, sample_size)``.

    For vector data (the 2-D toy) pass ``sample_size=None`` and ``channels`` = the vector length. Call it with the
    VAE's config before training, e.g. ``validate_against(ds, vae.config.in_channels, vae.config.sample_size)``.
    """
    expected = (channels,) if sample_size is None else (channels, sample_size, sample_size)
    actual = tuple(dataset.sample_shape)
    if actual != expected:
        raise ValueError(
            f"The dataset yields samples of shape {actual} but the model expects {expected}. "
            "Build the dataset with a matching --resolution and channel count (built-ins only come in their "
            f"native size), or use a model configured for samples of shape {actual}."
        )
