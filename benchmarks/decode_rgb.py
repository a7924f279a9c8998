"""decode_rgb (the one picture of curation and training) vs the decodes it replaced, on the same bytes; and the
decode stage's per-picture work (decode + the pixel_sha1 and color_std columns) before and after they shared one copy
of the pixels (`pixel_stats`), and now that upright JPEGs are decoded straight into packed RGB, against a plain Pillow
decode.

Baselines, measured in the same run: `Image.open(...).convert("RGB")` (the trainer before: drops alpha, clips
16-bit) and the curation path before (open, load, alpha composite over white when there is transparency).
Inputs: the real demo stamps (PNG: RGBA, LA, P with tRNS) and web-like JPEGs (stamps on textured backgrounds).
Prints CPU time per image relative to each baseline (best of --rounds, interleaved).

    .venv/bin/python benchmarks/decode_rgb.py [--jpegs 200] [--side 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from curate_throughput import web_jpegs  # noqa: E402 - one generator of benchmark JPEGs

from pipelines.imaging import Decoded, decode, decode_pillow, decode_rgb, pixel_stats
from synth.demo_corpus import STAMPS_DIR


def plain(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def curation_before(data: bytes) -> Image.Image:
    """pipelines.imaging.to_rgb as it was: transparency over white, everything else convert("RGB")."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        if img.mode == "RGB":
            return img
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
        return img.convert("RGB")

def columns_before(rgb: Image.Image) -> None:
    """pixel_sha1 and color_std as the decode stage computed them before pixel_stats: the digest over size + tobytes
    (copied again by the concatenation), and the spread over np.asarray (a second tobytes)."""
    hashlib.sha1(f"{rgb.size[0]}x{rgb.size[1]}:".encode() + rgb.tobytes()).hexdigest()
    arr = np.asarray(rgb)
    h, w = arr.shape[:2]
    float(arr[:: max(1, h // 32), :: max(1, w // 32)].reshape(-1, 3).astype(np.float32).std(axis=0).mean())


def columns_after(picture: Decoded) -> None:
    """Both columns from one copy of the pixels."""
    pixel_stats(picture, 32)


def stage_before(data: bytes) -> Image.Image:
    """The decode stage's per-picture work before pixel_stats: Pillow's picture, then the columns as computed before."""
    rgb = decode_pillow(data).rgb
    columns_before(rgb)
    return rgb


def stage_pillow(data: bytes) -> Decoded:
    """Before the packed-RGB JPEG path: Pillow's picture, then both columns from one copy of its pixels."""
    picture = decode_pillow(data)
    pixel_stats(picture, 32)
    return picture


def stage_after(data: bytes) -> Decoded:
    """The decode stage's per-picture work now: `decode` (upright JPEGs straight into packed RGB), then both columns."""
    picture = decode(data)
    pixel_stats(picture, 32)
    return picture


def best_time(fn: Callable[[Any], Any], datas: list[Any]) -> float:
    start = time.process_time()  # CPU time of this (single-threaded) loop: steadier than wall time on a shared box
    for d in datas:
        fn(d)
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jpegs", type=int, default=200)
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    warnings.simplefilter("ignore", UserWarning)  # Pillow's note on plain-converting P images with tRNS
    stamps = sorted(Path(STAMPS_DIR).rglob("*.png"))
    sets = {
        f"demo stamps (PNG, {len(stamps)})": [p.read_bytes() for p in stamps],
        f"web-like JPEGs ({args.jpegs}, {args.side} px)": web_jpegs(args.jpegs, args.side),
    }
    methods = {"plain convert": plain, "curation before": curation_before, "decode_rgb": decode_rgb,
               "stage before": stage_before, "stage Pillow": stage_pillow, "stage after": stage_after}
    for name, datas in sets.items():
        best = dict.fromkeys(methods, float("inf"))
        for _ in range(args.rounds):
            for m, fn in methods.items():
                best[m] = min(best[m], best_time(fn, datas))
        per = {m: 1000 * t / len(datas) for m, t in best.items()}
        print(f"{name}: ms/image " + ", ".join(f"{m} {v:.2f}" for m, v in per.items()))
        print(f"  decode_rgb / plain convert    = {best['decode_rgb'] / best['plain convert']:.2f}")
        print(f"  decode_rgb / curation before  = {best['decode_rgb'] / best['curation before']:.2f}")
        print(f"  decode stage (decode + pixel_sha1 + color_std) / plain convert: before "
              f"{best['stage before'] / best['plain convert']:.2f}, Pillow with one copy "
              f"{best['stage Pillow'] / best['plain convert']:.2f}, now {best['stage after'] / best['plain convert']:.2f}"
              f" (now / Pillow with one copy = {best['stage after'] / best['stage Pillow']:.2f})")
        pictures = [decode_pillow(d) for d in datas]
        cols = {"before": float("inf"), "after": float("inf")}
        for _ in range(args.rounds):
            cols["before"] = min(cols["before"], best_time(columns_before, [p.rgb for p in pictures]))
            cols["after"] = min(cols["after"], best_time(columns_after, pictures))
        print(f"  the two columns alone on decoded pictures: before {1000 * cols['before'] / len(datas):.3f}, after "
              f"{1000 * cols['after'] / len(datas):.3f} ms/image (after/before = {cols['after'] / cols['before']:.2f})")


if __name__ == "__main__":
    main()
