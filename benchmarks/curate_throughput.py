"""Curate throughput, end to end: `vlmdata curate` as a user runs it (a subprocess: every start-up included) on a
small and a large run per engine, against a plain one-process Pillow decode loop over the same files, timed in the
same run next to each engine's runs.

Prints, per engine, the marginal rate (extra images / extra seconds) as a ratio to the loop (target >= 1.0; the
limit on 2 cores is 2.0) and the fixed cost of a run in seconds (target <= 20 s on Spark, <= 10 s with local).
Recipe: decode, heuristics, exact dedup, shards. No Prefect server is started unless PREFECT_API_URL is set.
On Linux it also prints the CPU each extra image costs in all processes (machine-wide, so run it on an idle machine)
against the loop's CPU per image: on 2 cores a marginal of 1.0x needs at most 2x the loop's CPU per image.

    .venv/bin/python benchmarks/curate_throughput.py [--small 200] [--large 3000] [--side 512] [--engines spark,local,beam]
        [--repeat 1]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

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


def plain_decode_loop(folder: Path) -> tuple[int, float, float]:
    """(images, wall seconds, CPU seconds) of one process decoding every JPEG of `folder` to RGB."""
    start, cpu = time.perf_counter(), time.process_time()
    n = 0
    for path in sorted(folder.glob("*.jpg")):
        with Image.open(io.BytesIO(path.read_bytes())) as img:
            img.convert("RGB")
        n += 1
    return n, time.perf_counter() - start, time.process_time() - cpu


def machine_busy_seconds() -> float | None:
    """CPU seconds every process on this machine has run since boot (Linux /proc/stat), None elsewhere. On an idle
    machine the difference around a run is the run's CPU in all its processes (driver, JVM, workers), which a
    subprocess's own rusage misses for processes it does not wait for (the local engine's forkserver workers)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def spec_for(batch_size: int = 32) -> PipelineSpec:
    return PipelineSpec(
        name="bench",
        reader={"part_size": 256, "batch_size": batch_size},
        stages=[StageSpec(op="decode"), StageSpec(op="heuristics", min_side=32), StageSpec(op="exact_dedup")],
        shards=ShardConfig(max_samples=1000),
        engine=EngineConfig(master="local[2]"),
    )


RECIPE = {
    "name": "bench",
    "stages": [{"op": "decode"}, {"op": "heuristics", "min_side": 32}, {"op": "exact_dedup"}],
    "shards": {"max_samples": 1000},
}


def curate_seconds(inputs: Path, output: Path, recipe: Path, engine: str) -> tuple[float, float | None, dict]:
    """Wall seconds and machine-wide CPU seconds of one `vlmdata curate` subprocess (interpreter, imports, engine
    start, passes, merge), and its stats."""
    cmd = [sys.executable, "-m", "orchestration.cli", "curate", "-i", str(inputs), "-o", str(output), "-c", str(recipe),
           "--engine", engine]
    busy, start = machine_busy_seconds(), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    seconds, busy_after = time.perf_counter() - start, machine_busy_seconds()
    if done.returncode != 0:
        raise RuntimeError(f"{engine}: vlmdata curate failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    cpu = busy_after - busy if busy is not None and busy_after is not None else None
    return seconds, cpu, json.loads((output / "stats.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=200, help="images in the small run")
    ap.add_argument("--large", type=int, default=3000, help="images in the large run")
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--engines", default="spark,local,beam")
    ap.add_argument("--repeat", type=int, default=1, help="runs of the loop and of each size per engine, alternating small and large; "
                    "the fastest of each counts (other work on a shared machine only ever adds time)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vlmdata-bench-"))
    try:
        large, small = work / "large", work / "small"
        make_images(large, args.large, args.side)
        small.mkdir()
        for p in sorted(large.iterdir())[: 2 * args.small]:  # the first `small` images with their captions
            os.link(p, small / p.name)
        recipe = work / "recipe.yaml"
        recipe.write_text(json.dumps(RECIPE))  # JSON is YAML
        kb = sum(p.stat().st_size for p in large.glob("*.jpg")) / args.large / 1e3
        print(f"images: {args.small} and {args.large} JPEGs, {args.side} px long side, {kb:.0f} kB mean; "
              f"load before: {os.getloadavg()[0]:.1f}")
        for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
            t_small = t_large = float("inf")
            cpu_small: list[float] = []
            cpu_large: list[float] = []
            # The loop is timed next to each engine's runs, before each small/large pair, and the fastest of each
            # counts (other work on a shared machine only ever adds time). A loop timed minutes before an engine's
            # runs moved that engine's ratio by 0.2 here: this machine's speed drifts between minutes.
            loops = []
            for i in range(max(1, args.repeat)):
                loops.append(plain_decode_loop(large))
                t, c, s_small = curate_seconds(small, work / f"out-{engine}-small-{i}", recipe, engine)
                t_small = min(t_small, t)
                cpu_small += [c] if c is not None else []
                t, c, s_large = curate_seconds(large, work / f"out-{engine}-large-{i}", recipe, engine)
                t_large = min(t_large, t)
                cpu_large += [c] if c is not None else []
            loop = max(n / t for n, t, _ in loops)
            loop_cpu_ms = min(c / n for n, _, c in loops) * 1e3
            print(f"  {engine:6s} one-process Pillow decode loop: {loop:.1f} images/s (fastest of {len(loops)}: "
                  + ", ".join(f"{n / t:.1f}" for n, t, _ in loops) + f"); CPU {loop_cpu_ms:.2f} ms per image")
            # CPU per extra image, all processes on the machine (an idle machine: nothing else runs): what the
            # marginal rate is made of, steadier than wall time where first touches of memory vary from run to run
            cpu_note = ""
            if cpu_small and cpu_large:
                per_image = (min(cpu_large) - min(cpu_small)) / (args.large - args.small) * 1e3
                cpu_note = f"; CPU per extra image {per_image:.2f} ms = {per_image / loop_cpu_ms:.2f}x the loop's"
            if t_large <= t_small:  # the machine's load swamped the difference: no rate can be read off
                print(f"  {engine:6s}: small {t_small:6.1f} s, large {t_large:6.1f} s: not measurable (large <= small); "
                      f"load {os.getloadavg()[0]:.1f}")
                continue
            marginal = (args.large - args.small) / (t_large - t_small)
            fixed = t_small - args.small / marginal
            print(f"  {engine:6s}: small {t_small:6.1f} s, large {t_large:6.1f} s (end to end); marginal {marginal:7.1f} "
                  f"images/s = {marginal / loop:.2f}x the loop (target >= 1.0); fixed cost {fixed:5.1f} s "
                  f"(target {'<= 10' if engine == 'local' else '<= 20' if engine == 'spark' else 'none'}); "
                  f"kept {s_large['status']['kept']}/{s_large['inputs']}; load {os.getloadavg()[0]:.1f}{cpu_note}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
