"""Curate throughput: the flow's operators on Spark local vs. a plain Pillow decode loop, on the same images.

Prints both rates, the ratio b/a (target ≥ 0.5 on 2 cores), the JVM start time on its own, and the peak RSS
of the Spark Python workers at N and 10·N inputs (target: flat).

    .venv/bin/python benchmarks/curate_throughput.py [--n 400] [--side 512]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.engines.spark import SparkEngine
from pipelines.run import run_pipeline
from pipelines.spec import EngineConfig, PipelineSpec, ShardConfig, StageSpec
from synth.demo_corpus import STAMPS_DIR


def web_jpegs(n: int, side: int, seed: int = 0) -> list[bytes]:
    """`n` web-like JPEGs: real tuxpaint stamps pasted on textured backgrounds, `side` px on the long side."""
    rng = random.Random(seed)
    stamps = sorted(Path(STAMPS_DIR).rglob("*.png"))
    noise = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = side, rng.randint(side * 2 // 3, side)
        bg = (noise.random((h, w, 3)) * 80 + np.array([rng.randint(0, 170) for _ in range(3)])).clip(0, 255)
        canvas = Image.fromarray(bg.astype("uint8"))
        stamp = Image.open(rng.choice(stamps)).convert("RGBA")
        stamp.thumbnail((w * 3 // 4, h * 3 // 4))
        canvas.paste(stamp, (rng.randint(0, w - stamp.width), rng.randint(0, h - stamp.height)), stamp)
        buf = io.BytesIO()
        canvas.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def make_images(folder: Path, n: int, side: int, seed: int = 0) -> None:
    """`web_jpegs` written as a folder of images with captions."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(web_jpegs(n, side, seed)):
        (folder / f"{i:06d}.jpg").write_bytes(data)
        (folder / f"{i:06d}.txt").write_text(f"a clip-art picture number {i} on a textured background")


def plain_decode_loop(folder: Path) -> tuple[int, float]:
    start = time.perf_counter()
    n = 0
    for path in sorted(folder.glob("*.jpg")):
        with Image.open(io.BytesIO(path.read_bytes())) as img:
            img.convert("RGB")
        n += 1
    return n, time.perf_counter() - start


def spec_for(batch_size: int = 32) -> PipelineSpec:
    return PipelineSpec(
        name="bench",
        reader={"part_size": 256, "batch_size": batch_size},
        stages=[StageSpec(op="decode"), StageSpec(op="heuristics", min_side=32), StageSpec(op="exact_dedup")],
        shards=ShardConfig(max_samples=1000),
        engine=EngineConfig(master="local[2]"),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=400, help="images in the base run (the memory run uses 10×)")
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--no-memory", action="store_true", help="skip the 10× memory run")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vlmdata-bench-"))
    try:
        small, big = work / "small", work / "big"
        make_images(small, args.n, args.side)
        spec = spec_for()

        start = time.perf_counter()
        engine = SparkEngine(spec.engine)
        engine.session  # noqa: B018
        jvm_start = time.perf_counter() - start
        # Warm-up on a few images: Python workers start and import the project once, as in any long run.
        make_images(work / "warm", 16, 64, seed=1)
        run_pipeline(spec, [str(work / "warm")], str(work / "warm_out"), engine)

        n_a, t_a = plain_decode_loop(small)
        report = run_pipeline(spec, [str(small)], str(work / "out_small"), engine)
        n_b, t_b = report.stats["inputs"], report.seconds
        rate_a, rate_b = n_a / t_a, n_b / t_b
        print(f"images: {n_a} JPEGs, {args.side} px long side, {sum(p.stat().st_size for p in small.glob('*.jpg')) / n_a / 1e3:.0f} kB mean")
        print(f"(a) plain Pillow decode loop, 1 process : {rate_a:8.1f} images/s")
        print(f"(b) curate operators on Spark local[2]  : {rate_b:8.1f} images/s  (kept {report.stats['status']['kept']})")
        print(f"ratio b/a = {rate_b / rate_a:.2f}   (target >= 0.5)")
        print(f"JVM/session start (excluded above): {jvm_start:.1f} s")
        rss_small = report.worker_maxrss_kb
        if not args.no_memory:
            big.mkdir()
            for rep in range(10):  # 10× the input: the same pictures under other names, plus a re-encode per copy
                for p in sorted(small.glob("*")):
                    os.link(p, big / f"r{rep}_{p.name}")
            report_big = run_pipeline(spec, [str(big)], str(work / "out_big"), engine)
            print(
                f"peak RSS of a Spark Python worker: {rss_small / 1024:.0f} MB at {n_b} inputs, "
                f"{report_big.worker_maxrss_kb / 1024:.0f} MB at {report_big.stats['inputs']} inputs "
                f"(ratio {report_big.worker_maxrss_kb / max(1, rss_small):.2f}; flat = 1.0); "
                f"10x throughput {report_big.stats['inputs'] / report_big.seconds:.1f} images/s"
            )
        engine.session.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
