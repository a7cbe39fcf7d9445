"""Sample figures as PNG without torchvision/matplotlib: image grids, 2-D point histograms, labelled panels."""

from __future__ import annotations

import math

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch

PANEL_GAP = 8
LABEL_HEIGHT = 14


def image_grid(images: torch.Tensor, nrow: int | None = None, scale: int = 1, pad: int = 1) -> np.ndarray:
    """Tile images ``(N, C, H, W)`` in ``[0, 1]`` into a ``(rows, cols, 3)`` uint8 array (nearest upscaling)."""
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    pixels = (images.detach().float().clamp(0, 1).cpu() * 255).round().to(torch.uint8)
    pixels = pixels.expand(-1, 3, -1, -1) if c == 1 else pixels[:, :3]
    pixels = pixels.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    cell_h, cell_w = h * scale + pad, w * scale + pad
    grid = torch.full((3, ncol * cell_h + pad, nrow * cell_w + pad), 255, dtype=torch.uint8)
    for k in range(n):
        row, col = divmod(k, nrow)
        top, left = pad + row * cell_h, pad + col * cell_w
        grid[:, top : top + h * scale, left : left + w * scale] = pixels[k]
    return grid.permute(1, 2, 0).numpy()


def point_histogram(points: torch.Tensor, extent: float = 6.0, size: int = 192) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 picture of 2-D points in ``[-extent, extent]^2`` (darker = denser)."""
    xy = points.detach().float().cpu().numpy()[:, :2]
    counts, _, _ = np.histogram2d(xy[:, 1], xy[:, 0], bins=size, range=[[-extent, extent], [-extent, extent]])
    shade = 255 - (255 * np.sqrt(counts / max(counts.max(), 1))).astype(np.uint8)
    return np.repeat(shade[::-1, :, None], 3, axis=2)


def sample_panels(panels: dict[str, torch.Tensor], scale: int = 1) -> PIL.Image.Image:
    """Side-by-side labelled panels, one per entry: images ``(N, C, H, W)`` as grids, vectors ``(N, 2)`` as points."""
    pad = max(1, scale // 4)
    arrays = [image_grid(x, scale=scale, pad=pad) if x.dim() == 4 else point_histogram(x) for x in panels.values()]
    height = max(a.shape[0] for a in arrays) + LABEL_HEIGHT
    width = sum(a.shape[1] for a in arrays) + PANEL_GAP * (len(arrays) - 1)
    canvas = PIL.Image.new("RGB", (width, height), "white")
    draw = PIL.ImageDraw.Draw(canvas)
    left = 0
    for label, array in zip(panels, arrays):
        draw.text((left + 2, 1), label, fill="black")
        canvas.paste(PIL.Image.fromarray(array), (left, LABEL_HEIGHT))
        left += array.shape[1] + PANEL_GAP
    return canvas
