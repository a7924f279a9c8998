"""`vlmdata stats` on shards without sidecar stats vs. a plain `tarfile` loop that only reads every member.

Prints both times and their ratio (tarfile time / stats time; target ≥ 0.7), measured in this run, page cache warm.
Usage: .venv/bin/python benchmarks/stats_scan.py [--shards 200] [--samples 100] [--workers N]
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
import tarfile
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw
from rich.console import Console

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orchestration.shardstats.config import InspectConfig  # noqa: E402
from orchestration.shardstats.summary import summarise  # noqa: E402
from orchestration.shardstats.tables import print_summary  # noqa: E402
from pipelines.codec import TarSamples, TarWriter, open_url  # noqa: E402
from pipelines.shard_stats import ShardStats  # noqa: E402


def jpegs(n: int, seed: int) -> list[tuple[bytes, int, int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        w, h = rng.choice([(256, 192), (320, 240), (224, 224), (384, 256)])
        im = Image.new("RGB", (w, h), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(im)
        for _ in range(30):
            x, y = rng.randrange(w), rng.randrange(h)
            draw.ellipse([x, y, x + rng.randrange(5, 60), y + rng.randrange(5, 60)],
                         fill=tuple(rng.randrange(256) for _ in range(3)))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=85)
        out.append((buf.getvalue(), w, h))
    return out


def write_shards(folder: Path, nshards: int, per_shard: int) -> int:
    """img2dataset-like shards (jpg, txt, json with sizes and scores), no sidecars. Returns total bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    images = jpegs(16, seed=0)
    rng = random.Random(1)
    for s in range(nshards):
        with open(folder / f"{s:05d}.tar", "wb") as f, TarWriter(f) as sink:
            for i in range(per_shard):
                data, w, h = images[(s * per_shard + i) % len(images)]
                key = f"{s:05d}{i:04d}"
                caption = " ".join(rng.choice(["a", "red", "dog", "on", "the", "grass", "photo"]) for _ in range(12))
                fields = {"key": key, "caption": caption, "width": w, "height": h, "status": "success",
                          "similarity": rng.random() * 0.4, "original_width": w * 2, "original_height": h * 2,
                          "url": f"http://example.com/{key}.jpg", "exif": "{}"}
                if i % 4 == 0:
                    fields["boxes"] = [{"box": [10, 10, 80, 60], "label": "dog"}]
                sink.write({"__key__": key, "jpg": data, "txt": caption.encode(), "json": json.dumps(fields).encode()})
    return sum(p.stat().st_size for p in folder.iterdir())


def tarfile_loop(folder: Path) -> int:
    n = 0
    for path in sorted(folder.glob("*.tar")):
        with tarfile.open(path) as tf:
            for member in tf:
                if member.isfile():
                    n += len(tf.extractfile(member).read())  # type: ignore[union-attr]
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shards", type=int, default=200)
    ap.add_argument("--samples", type=int, default=100, help="samples per shard")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each; the best is reported")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="stats_scan_"))
    try:
        folder = tmp / "shards"
        total = write_shards(folder, args.shards, args.samples)
        print(f"{args.shards} shards × {args.samples} samples, {total / 1e6:.0f} MB, no sidecar stats; "
              f"{args.workers} workers, {os.cpu_count()} cores")
        cfg = InspectConfig(workers=args.workers, use_sidecars=False)
        null = Console(file=io.StringIO(), width=120)
        tarfile_loop(folder)  # warm the page cache: both sides then read from memory
        base, stats, cli = [], [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            tarfile_loop(folder)
            base.append(time.perf_counter() - t)
            t = time.perf_counter()
            report = summarise([str(folder)], cfg)
            print_summary(report.data, null)
            stats.append(time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run([str(REPO / ".venv" / "bin" / "vlmdata"), "stats", str(folder), "--json",
                            "--workers", str(args.workers)], check=True, stdout=subprocess.DEVNULL)
            cli.append(time.perf_counter() - t)
        assert report.data["totals"]["samples"] == args.shards * args.samples
        b, s, c = min(base), min(stats), min(cli)
        print(f"plain tarfile loop (1 process, reads every member): {b:6.2f} s  ({total / 1e6 / b:6.0f} MB/s)")
        print(f"stats scan, in process (summarise + tables):       {s:6.2f} s  ({total / 1e6 / s:6.0f} MB/s)")
        print(f"`vlmdata stats --json` end to end (new process):   {c:6.2f} s  ({total / 1e6 / c:6.0f} MB/s)")
        print(f"ratio tarfile/stats: {b / s:.2f} in process, {b / c:.2f} end to end (target ≥ 0.7)")
        # What the shard writer gives for free: a sidecar per shard, merged instead of read.
        for path in sorted(folder.glob("*.tar")):
            stats = ShardStats()
            with open_url(str(path)) as stream:
                for sample in TarSamples(stream):
                    stats.add(sample)
            stats.write(str(path))
        t = time.perf_counter()
        merged = summarise([str(folder)], InspectConfig(workers=args.workers))
        m = time.perf_counter() - t
        assert merged.data["totals"]["from_sidecar"] == args.shards
        print(f"with sidecar stats (merge only): {m:.2f} s, {s / m:.0f}× faster than scanning")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
