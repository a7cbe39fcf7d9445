"""Sample figures as PIL images (no torchvision/matplotlib): image grids through diffusers' ``make_image_grid``,
2-D point histograms, and labelled side-by-side panels. The trainer, the evaluation report, the CLI and the Gradio
Space all draw with these."""

from __future__ import annotations

import math

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageOps
import torch
from diffusers.utils import make_image_grid

PANEL_GAP = 8
LABEL_HEIGHT = 14
DISPLAY_PIXELS = 64  # grids upscale every sample to at least this many pixels a side


def grid_scale(size: int, display_pixels: int = DISPLAY_PIXELS) -> int:
    """The integer nearest-neighbour upscaling that shows a ``size``-pixel sample at ``display_pixels`` or more."""
    return max(1, math.ceil(display_pixels / size))


def grid_shape(n: int) -> tuple[int, int]:
    """``(rows, cols)`` of a near-square grid for ``n`` images (``cols = ceil(sqrt(n))``)."""
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def image_grid(images: torch.Tensor, scale: int | None = None, gap: int = 0) -> PIL.Image.Image:
    """Images ``(N, C, H, W)`` in ``[0, 1]`` as one RGB grid, each upscaled ``scale`` times with nearest-neighbour
    (default :func:`grid_scale`), ``gap`` white pixels between and around the tiles; an incomplete last row is
    padded with white tiles."""
    n, c, h, w = images.shape
    scale = scale or grid_scale(max(h, w))
    pixels = (images.detach().float().clamp(0, 1).cpu() * 255).round().to(torch.uint8)
    pixels = pixels.expand(-1, 3, -1, -1) if c == 1 else pixels[:, :3]
    pixels = pixels.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3).permute(0, 2, 3, 1).numpy()
    half = gap // 2
    tiles = [PIL.ImageOps.expand(PIL.Image.fromarray(np.ascontiguousarray(p)), half, "white") for p in pixels]
    rows, cols = grid_shape(n)
    tiles += [PIL.Image.new("RGB", tiles[0].size, "white")] * (rows * cols - n)
    return PIL.ImageOps.expand(make_image_grid(tiles, rows=rows, cols=cols), gap - half, "white")


def point_histogram(points: torch.Tensor, extent: float = 6.0, size: int = 192) -> PIL.Image.Image:
    """A ``size`` x ``size`` picture of 2-D points in ``[-extent, extent]^2`` (darker = denser)."""
    xy = points.detach().float().cpu().numpy()[:, :2]
    counts, _, _ = np.histogram2d(xy[:, 1], xy[:, 0], bins=size, range=[[-extent, extent], [-extent, extent]])
    shade = 255 - (255 * np.sqrt(counts / max(counts.max(), 1))).astype(np.uint8)
    return PIL.Image.fromarray(np.repeat(shade[::-1, :, None], 3, axis=2))


def sample_panels(panels: dict[str, torch.Tensor], scale: int | None = None) -> PIL.Image.Image:
    """Side-by-side labelled panels, one per entry: images ``(N, C, H, W)`` as grids, vectors ``(N, 2)`` as points."""
    pictures = [image_grid(x, scale, gap=2) if x.dim() == 4 else point_histogram(x) for x in panels.values()]
    height = max(p.height for p in pictures) + LABEL_HEIGHT
    width = sum(p.width for p in pictures) + PANEL_GAP * (len(pictures) - 1)
    canvas = PIL.Image.new("RGB", (width, height), "white")
    draw = PIL.ImageDraw.Draw(canvas)
    left = 0
    for label, picture in zip(panels, pictures):
        draw.text((left + 2, 1), label, fill="black")
        canvas.paste(picture, (left, LABEL_HEIGHT))
        left += picture.width + PANEL_GAP
    return canvas
