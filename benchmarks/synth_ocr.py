"""Rendered OCR samples per second per core, with and without PP-OCR read-back, and PP-OCR's own rate on the same
images in a plain loop vs inside the operator (target ≥ 0.8). One process, onnxruntime on one thread: per core.

Anchor: SynthDoG (Donut's generator) is published at about 0.27 images/s per worker; the target is 10× that.
Run: .venv/bin/python benchmarks/synth_ocr.py [--n 30]
"""

from __future__ import annotations

import argparse
import io
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from PIL import Image  # noqa: E402

from synth.ocr.render_op import RenderDocs  # noqa: E402
from synth.ocr.verify import OcrEngine  # noqa: E402

SYNTHDOG_PER_WORKER = 0.27  # images/s per worker, as published (Donut, Kim et al. 2022)


def seeds(n: int) -> list[dict]:
    return [{"key": f"bench-{i}", "text": "", "image": None, "source": f"count:{i}", "meta": "{}"} for i in range(n)]


def timed(op: RenderDocs, rows: list[dict]) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    outs = [op.render_one(r, 0) for r in rows]
    return time.perf_counter() - start, outs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30, help="samples per measurement")
    args = ap.parse_args()
    rows = seeds(args.n)

    plain = RenderDocs(verify={"enabled": False})
    plain.setup()
    verified = RenderDocs(verify={"enabled": True, "threads": 1})
    verified.setup()
    timed(plain, rows[:3])  # warm caches (fonts, corpus) outside the clock
    timed(verified, rows[:2])

    t_render, outs = timed(plain, rows)
    t_verified, vouts = timed(verified, rows)
    images = [Image.open(io.BytesIO(o["image"])).convert("RGB") for o in outs if o.get("image")]
    ocr = OcrEngine(threads=1)
    ocr.read(images[0])
    start = time.perf_counter()
    for img in images:
        ocr.read(img)
    t_ocr_plain = time.perf_counter() - start

    render_rate = args.n / t_render
    verified_rate = args.n / t_verified
    ocr_plain_rate = len(images) / t_ocr_plain
    ocr_in_op_rate = args.n / max(1e-9, t_verified - t_render)  # the operator's time beyond rendering is its OCR
    kept = sum(o.get("keep", True) for o in vouts)
    cers = sorted(o["cer"] for o in vouts if o.get("cer") is not None)
    print(f"samples: {args.n} (kept after verification: {kept}; median CER {cers[len(cers) // 2]:.3f}, "
          f"max {cers[-1]:.3f})")
    print(f"render only             : {render_rate:6.2f} samples/s per core = {render_rate / SYNTHDOG_PER_WORKER:5.1f}x "
          f"SynthDoG's published {SYNTHDOG_PER_WORKER}/s per worker")
    print(f"render + PP-OCR verify  : {verified_rate:6.2f} samples/s per core = "
          f"{verified_rate / SYNTHDOG_PER_WORKER:5.1f}x SynthDoG; {verified_rate / render_rate:.2f}x render only")
    print(f"PP-OCR plain loop       : {ocr_plain_rate:6.2f} images/s per core (same images)")
    print(f"PP-OCR inside operator  : {ocr_in_op_rate:6.2f} images/s per core = {ocr_in_op_rate / ocr_plain_rate:.2f}x "
          f"the plain loop (target >= 0.8)")


if __name__ == "__main__":
    main()
