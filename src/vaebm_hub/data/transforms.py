"""Image transforms with PIL + torch (no torchvision): colour mode, resize, centre/random crop, horizontal flip.

They follow torchvision's ``Resize(int)`` / ``CenterCrop`` / ``RandomCrop`` / ``RandomHorizontalFlip`` semantics, as
used by diffusers' ``train_unconditional.py``; every random choice draws from a caller-supplied ``torch.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageMode


def channels_of_mode(mode: str) -> int:
    """1 for grey PIL modes (``1``, ``L``, ``LA``, ``I``, ``F``), 3 for colour ones (``RGB``, ``RGBA``, ``P``, ...)."""
    return 1 if ImageMode.getmode(mode).basemode == "L" else 3


def convert_channels(image: Image.Image, channels: int) -> Image.Image:
    """Convert to ``L`` (channels=1, ITU-R 601 luma) or ``RGB`` (channels=3, grey replicated, alpha dropped)."""
    return image.convert("L" if channels == 1 else "RGB")


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """Bilinear resize so that ``min(W, H) = size``; the longer side becomes ``int(size · long / short)``."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    if short == size:
        return image
    new_long = int(size * long / short)
    new_size = (size, new_long) if width <= height else (new_long, size)
    return image.resize(new_size, Image.Resampling.BILINEAR)


def crop_square(image: Image.Image, size: int, generator: torch.Generator | None) -> Image.Image:
    """A ``size × size`` crop: centred (``generator=None``) or at a uniform offset drawn from ``generator``."""
    width, height = image.size
    if generator is None:
        left, top = round((width - size) / 2), round((height - size) / 2)
    else:
        left = int(torch.randint(0, width - size + 1, (), generator=generator))
        top = int(torch.randint(0, height - size + 1, (), generator=generator))
    return image.crop((left, top, left + size, top + size))


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """An 8-bit ``L`` or ``RGB`` image → float32 ``(C, H, W)`` in ``[0, 1]`` (pixel / 255)."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[None]
    else:
        array = array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror the last axis with probability 1/2."""
    return x.flip(-1) if bool(torch.rand((), generator=generator) < 0.5) else x


@dataclass(frozen=True)
class ImageTransform:
    """PIL image → float32 ``(channels, resolution, resolution)`` in ``[0, 1]``.

    Steps: convert to ``channels``; if ``resolution`` is set, resize the shorter side to it and crop a square
    (centred when ``center_crop``, random otherwise); to tensor; random horizontal flip when ``random_flip``.
    With ``resolution=None`` the image keeps its size.
    """

    channels: int
    resolution: int | None = None
    center_crop: bool = False
    random_flip: bool = False

    def __call__(self, image: Image.Image, generator: torch.Generator) -> torch.Tensor:
        image = convert_channels(image, self.channels)
        if self.resolution is not None:
            image = resize_shorter_side(image, self.resolution)
            image = crop_square(image, self.resolution, None if self.center_crop else generator)
        x = pil_to_tensor(image)
        return random_hflip(x, generator) if self.random_flip else x
