"""CLIP stage speed: (a) the model encoding pre-decoded tensors in a plain loop vs (b) the clip_score stage from image bytes.

Same model, batch size and samples; (b) decodes, composites and resizes inside the stage (overlapped with the
forward on a thread pool). (a) and (b) alternate for --rounds rounds and the best round of each counts, so load from
other processes on a shared machine hits both alike. Prints both rates and b/a (target >= 0.8).

    .venv/bin/python benchmarks/clip_stage.py                       # the demo's small CLIP (64 px; random init: speed only)
    .venv/bin/python benchmarks/clip_stage.py --model ViT-B-32 --model-config '' --samples 128 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa  # noqa: E402
import torch  # noqa: E402

from filters.clip_score import ClipScore  # noqa: E402
from pipelines.operator import apply_map  # noqa: E402
from pipelines.schema import record_schema  # noqa: E402


def load_pairs(folder: Path, n: int) -> list[tuple[bytes, str]]:
    pngs = sorted(folder.rglob("*.png"))
    if not pngs:
        raise SystemExit(f"no images under {folder}: run `vlmdata demo` (it builds data/demo) or pass --images")
    pairs = [(p.read_bytes(), p.with_suffix(".txt").read_text().strip()) for p in pngs]
    return [pairs[i % len(pairs)] for i in range(n)]


def plain_loop(op: ClipScore, pairs: list[tuple[bytes, str]], batch_size: int) -> float:
    """(a): tensors decoded and preprocessed beforehand; only the encoding is timed. Returns pairs/s.

    The tensors are the stage's own (same values as open_clip's preprocess, in the channels-last layout the stage's
    batched normalisation yields, which runs the patch-embedding conv about twice as fast on CPU as NCHW here), so
    b/a measures what decoding costs the stage, not a layout difference.
    """
    clip = op.clip
    tokens = clip.tokenizer([t for _, t in pairs])
    batches = [(op._stack([op._pixels(b) for b, _ in pairs[i:i + batch_size]]), tokens[i:i + batch_size])
               for i in range(0, len(pairs), batch_size)]

    def run(bs):
        with torch.inference_mode():
            for x, t in bs:
                img = clip.model.encode_image(x.to(clip.device, clip.dtype), normalize=True).float()
                txt = clip.model.encode_text(t.to(clip.device), normalize=True).float()
                (img * txt).sum(-1).cpu()

    run(batches[:1])  # warm-up
    start = time.perf_counter()
    run(batches)
    return len(pairs) / (time.perf_counter() - start)


def stage(op: ClipScore, pairs: list[tuple[bytes, str]], batch_size: int, rows_per_batch: int) -> float:
    """(b): the stage as an engine runs it (apply_map over record batches of encoded bytes). Returns pairs/s."""
    schema = record_schema()
    rows = [{"key": f"k{i}", "image": b, "text": t, "source": "", "dataset": "bench", "meta": "{}", "part": 0, "ord": i,
             "keep": True, "error": False, "stage": None, "reason": None} for i, (b, t) in enumerate(pairs)]
    batches = [pa.RecordBatch.from_pylist(rows[i:i + rows_per_batch], schema=schema)
               for i in range(0, len(rows), rows_per_batch)]
    out_schema = record_schema(op.adds)
    apply_map(op, batches[0].slice(0, batch_size), out_schema)  # warm-up
    start = time.perf_counter()
    for b in batches:
        apply_map(op, b, out_schema)
    return len(pairs) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vlmdata-clip-demo")
    ap.add_argument("--pretrained", default=None)
    ap.add_argument("--model-config", default="configs/clip/vlmdata-clip-demo.json")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--rows-per-batch", type=int, default=256, help="Rows per record batch the engine hands the stage.")
    ap.add_argument("--num-threads", type=int, default=2, help="Decode threads of the stage.")
    ap.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: the stage's rule).")
    ap.add_argument("--images", type=Path, default=Path("data/demo/clean"))
    args = ap.parse_args()

    op = ClipScore(model=args.model, pretrained=args.pretrained, model_config=args.model_config or None, threshold=-1.0,
                   batch_size=args.batch_size, num_threads=args.num_threads, torch_threads=args.torch_threads)
    op.setup()
    pairs = load_pairs(args.images, args.samples)
    a = b = 0.0
    for _ in range(args.rounds):
        a = max(a, plain_loop(op, pairs, args.batch_size))
        b = max(b, stage(op, pairs, args.batch_size, args.rows_per_batch))
    print(f"model {args.model}, batch {args.batch_size}, {args.samples} pairs, device {op.clip.device}, "
          f"torch threads {torch.get_num_threads()}, decode threads {args.num_threads}, best of {args.rounds} rounds")
    print(f"(a) plain loop over pre-decoded tensors: {a:8.1f} pairs/s")
    print(f"(b) clip_score stage from image bytes:   {b:8.1f} pairs/s")
    print(f"b/a = {b / a:.2f}  (target >= 0.8)")


if __name__ == "__main__":
    main()
