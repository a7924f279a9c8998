"""Backgrounds for rendered documents: plain colour, noise (paper-like), or a photo from curated shards / image
folders, toned down so that text over it stays readable."""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, UnidentifiedImageError

from pipelines.imaging import to_rgb

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
MAX_BACKGROUND_PIXELS = 40_000_000  # a decompression bomb is a bad background, not a crash


class BackgroundError(Exception):
    """A background that cannot be decoded; the sample is dropped with the reason."""


def collect_images(paths: list[str], limit: int) -> list[tuple[str, bytes]]:
    """Up to `limit` encoded images (source name, bytes) from folders of images, WebDataset tars, or curated output
    folders (their `shards/*.tar`), in a stable order."""
    out: list[tuple[str, bytes]] = []
    for p in paths:
        path = Path(p)
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        for f in files:
            if len(out) >= limit:
                return out
            if f.suffix == ".tar":
                out.extend(_tar_images(f, limit - len(out)))
            elif f.suffix.lower().lstrip(".") in IMAGE_EXTS:
                out.append((str(f), f.read_bytes()))
    return out


def _tar_images(path: Path, limit: int) -> list[tuple[str, bytes]]:
    """Image members of a tar, read in place (member names are never used as paths); a broken tar yields what
    was readable before the break."""
    out: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if len(out) >= limit:
                    break
                if member.isfile() and member.name.rsplit(".", 1)[-1].lower() in IMAGE_EXTS:
                    stream = tar.extractfile(member)
                    if stream is not None:
                        out.append((f"{path}:{member.name}", stream.read()))
    except (tarfile.TarError, OSError, EOFError):
        pass
    return out


def decode(data: bytes, name: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_BACKGROUND_PIXELS:
            raise BackgroundError(f"background_too_large:{img.width}x{img.height}")
        img.load()
        return to_rgb(img)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise BackgroundError(f"background_decode_failed:{Path(name).name}: {str(exc)[:80]}") from exc


def plain(size: tuple[int, int], rnd: random.Random) -> Image.Image:
    return Image.new("RGB", size, tuple(rnd.randrange(256) for _ in range(3)))


def noise(size: tuple[int, int], rnd: random.Random) -> Image.Image:
    """A tinted paper-like texture: a base colour plus blurred Gaussian noise."""
    w, h = size
    rng = np.random.default_rng(rnd.getrandbits(64))
    base = np.array([rnd.randrange(256) for _ in range(3)], dtype=np.float32)
    grain = rng.normal(0.0, rnd.uniform(6, 24), size=(h, w, 1)).astype(np.float32)
    arr = np.clip(base + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(arr).filter(ImageFilter.GaussianBlur(rnd.uniform(0.3, 1.5)))


def photo(img: Image.Image, size: tuple[int, int], rnd: random.Random, fade: float) -> Image.Image:
    """A random crop of `img` scaled to `size`, blended `fade` of the way toward its mean colour so that its own
    edges do not compete with the text."""
    w, h = size
    scale = max(w / img.width, h / img.height) * rnd.uniform(1.0, 1.5)
    img = img.resize((max(w, round(img.width * scale)), max(h, round(img.height * scale))), Image.BILINEAR)
    x, y = rnd.randint(0, img.width - w), rnd.randint(0, img.height - h)
    img = img.crop((x, y, x + w, y + h))
    if fade > 0:
        mean = tuple(int(v) for v in np.asarray(img).reshape(-1, 3).mean(axis=0))
        img = Image.blend(img, Image.new("RGB", size, mean), fade)
    return img
