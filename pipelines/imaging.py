"""Image helpers shared by operators and data builders: the RGB view a viewer sees, pixel hashes, colour spread."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image


def pixel_digest(rgb: Image.Image) -> str:
    """Hash of decoded RGB pixels and size: equal for any lossless re-encoding of the same picture."""
    return hashlib.sha1(f"{rgb.size[0]}x{rgb.size[1]}:".encode() + rgb.tobytes()).hexdigest()


def color_spread(rgb: Image.Image, side: int) -> float:
    """Mean per-channel std of a `side`×`side` grid of pixels: 0 for a solid image. A strided view, not a resize."""
    arr = np.asarray(rgb)
    h, w = arr.shape[:2]
    grid = arr[:: max(1, h // side), :: max(1, w // side)].reshape(-1, 3).astype(np.float32)
    return float(grid.std(axis=0).mean())


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB view of any mode; transparency is composited over white, as a viewer shows it."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")
