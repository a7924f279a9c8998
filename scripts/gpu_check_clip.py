"""GPU check of the CLIP stage: JPEG bytes decoded on the device (nvJPEG through torchvision) feeding CLIP ViT-L/14
(random weights: speed only) in bf16, the embedding batch size set by free GPU memory. Prints, measured in one run,
(a) the model alone encoding pre-decoded, pre-normalised tensors already on the GPU and (b) the clip_score stage end
to end from JPEG bytes (as an engine runs it: nvJPEG, resize, normalise, tokenise, encode, scores and embeddings into
Arrow), in images/s, the ratio b/a, and b beside clip-retrieval's published 312 images/s per A100 for ViT-L/14.

It has NOT been run on a GPU yet (written on a CPU-only machine). `--cpu-smoke` runs the same code at tiny size on
CPU (a 2-layer CLIP, `decode_on_device: always`) in seconds, so the script is exercised by the tests; its figures are
not GPU figures. It writes nothing. Budget: < 10 minutes on one H200 (4,096 images of 512 px, 3 rounds).

    python scripts/gpu_check_clip.py                      # on a CUDA machine
    python scripts/gpu_check_clip.py --images 8192        # more images
    python scripts/gpu_check_clip.py --cpu-smoke          # anywhere
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from filters.clip_score import ClipScore  # noqa: E402
from pipelines.operator import apply_map  # noqa: E402
from pipelines.schema import record_schema  # noqa: E402

ANCHOR = 312.0  # clip-retrieval, ViT-L/14 inference, images/s per A100 (resize-bound)
SMOKE_CLIP = {  # a 2-layer CLIP for --cpu-smoke
    "embed_dim": 32,
    "vision_cfg": {"image_size": 48, "layers": 2, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def photo_jpeg(i: int, side: int) -> bytes:
    """A web-photo-like JPEG (q90, 4:2:0): smooth colour fields with texture, `side` px wide, 2/3..1 as high."""
    rng = np.random.default_rng(i)
    h = int(side * rng.uniform(2 / 3, 1.0))
    field = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).resize((side, h), Image.Resampling.BICUBIC)
    pixels = np.asarray(field, dtype=np.float32) + rng.normal(0, 12, (h, side, 3))
    buf = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def record_batches(images: list[bytes], rows: int) -> list[pa.RecordBatch]:
    schema = record_schema()
    recs = [{"key": f"k{i}", "image": b, "text": f"a photo number {i} of a textured scene", "source": "", "dataset": "gpu",
             "meta": "{}", "part": 0, "ord": i, "keep": True, "error": False, "stage": None, "reason": None}
            for i, b in enumerate(images)]
    return [pa.RecordBatch.from_pylist(recs[i:i + rows], schema=schema) for i in range(0, len(recs), rows)]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def model_only(op: ClipScore, images: list[bytes], texts: list[str]) -> float:
    """(a): seconds to encode every image and caption, from tensors decoded, resized and normalised beforehand and
    already on the model's device (only the encoder is timed)."""
    from pipelines.imaging import decoded_views

    clip, bs = op.clip, op.batch
    assert clip is not None
    batches = []
    with decoded_views() as pictures:
        for i in range(0, len(images), bs):
            x, ok = op._prepare_on_device(images[i:i + bs], pictures)
            assert all(ok), "a generated JPEG did not decode"
            batches.append((x.to(clip.device, clip.dtype), clip.tokenizer(texts[i:i + bs]).to(clip.device)))

    def run(chunk: list) -> None:
        with torch.inference_mode():
            for x, t in chunk:
                img = clip.model.encode_image(x, normalize=True).float()
                txt = clip.model.encode_text(t, normalize=True).float()
                (img * txt).sum(-1).cpu()

    run(batches[:1])  # warm-up (kernels, cuDNN autotune)
    sync(clip.device)
    start = time.perf_counter()
    run(batches)
    sync(clip.device)
    return time.perf_counter() - start


def stage(op: ClipScore, batches: list[pa.RecordBatch]) -> tuple[float, list[pa.RecordBatch]]:
    """(b): seconds for the clip_score stage over record batches of JPEG bytes, as an engine runs it."""
    schema = record_schema(op.adds)
    apply_map(op, batches[0].slice(0, op.batch), schema)  # warm-up
    sync(op.clip.device)
    start = time.perf_counter()
    out = [apply_map(op, b, schema) for b in batches]
    sync(op.clip.device)
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-L-14")
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--side", type=int, default=512, help="JPEG width in pixels.")
    ap.add_argument("--rounds", type=int, default=3, help="(a) and (b) alternate; the best round of each counts.")
    ap.add_argument("--batch-size", default="auto", help="'auto' (by free GPU memory) or a number.")
    ap.add_argument("--rows-per-batch", type=int, default=0, help="Rows per record batch (default 4 model batches).")
    ap.add_argument("--budget-s", type=float, default=480.0, help="Stop starting new rounds after this many seconds.")
    ap.add_argument("--cpu-smoke", action="store_true", help="Tiny model, few small images, on CPU: checks the script.")
    args = ap.parse_args()
    began = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        if args.cpu_smoke:
            config = Path(tmp) / "gpu-check-smoke.json"
            config.write_text(json.dumps(SMOKE_CLIP))
            op = ClipScore(model="gpu-check-smoke", model_config=str(config), device="cpu", threshold=-1.0,
                           batch_size=8, decode_on_device="always", num_threads=2, torch_threads=1)
            n, side, rounds = 24, 96, 1
        else:
            if not torch.cuda.is_available():
                raise SystemExit("no CUDA device: run with --cpu-smoke on a machine without a GPU")
            op = ClipScore(model=args.model, device="cuda", precision="bf16", threshold=-1.0,
                           batch_size=args.batch_size if args.batch_size == "auto" else int(args.batch_size),
                           decode_on_device="auto", num_threads=min(8, os.cpu_count() or 1))
            n, side, rounds = args.images, args.side, args.rounds
        op.setup()
        assert op.clip is not None and op.on_device, "the stage did not take the device path"
        device = op.clip.device
        if device.startswith("cuda"):
            free, total = torch.cuda.mem_get_info()
            print(f"{torch.cuda.get_device_name()}: {free / 2**30:.1f} of {total / 2**30:.1f} GiB free after loading")
        print(f"model {op.config.model} ({op.clip.dtype}), embedding batch {op.batch}"
              f"{' (set by free memory)' if op.config.batch_size == 'auto' else ''}, {n} JPEGs of {side} px")

        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            images = list(pool.map(photo_jpeg, range(n), [side] * n))
        texts = [f"a photo number {i} of a textured scene" for i in range(n)]
        batches = record_batches(images, args.rows_per_batch or 4 * op.batch)

        best_a = best_b = float("inf")
        out: list[pa.RecordBatch] = []
        for r in range(rounds):
            if r and time.perf_counter() - began > args.budget_s:
                print(f"stopping after {r} rounds (budget {args.budget_s:.0f} s)")
                break
            best_a = min(best_a, model_only(op, images, texts))
            seconds, out = stage(op, batches)
            best_b = min(best_b, seconds)

    rows = [r for b in out for r in b.select(["error", "clip_score"]).to_pylist()]
    assert len(rows) == n and not any(r["error"] for r in rows), "error rows in the stage's output"
    assert all(np.isfinite(r["clip_score"]) for r in rows), "non-finite scores"
    a, b = n / best_a, n / best_b
    note = "  (CPU smoke: not a GPU figure)" if args.cpu_smoke else ""
    print(f"(a) model only, pre-decoded tensors on the device : {a:9.1f} images/s{note}")
    print(f"(b) clip_score stage end to end from JPEG bytes   : {b:9.1f} images/s{note}")
    print(f"ratio b/a = {b / a:.2f} (target >= 0.8); b vs clip-retrieval's {ANCHOR:.0f} images/s per A100 (ViT-L/14): "
          f"{b / ANCHOR:.2f}x{note}")
    print(f"total {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
