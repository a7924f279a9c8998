"""CLIP stage speed: (a) the model encoding pre-decoded tensors in a plain loop vs (b) the clip_score stage from image bytes
vs (c) the clip_score stage in a pass after `decode` (the pass's decoded pictures shared, as run_steps runs it).

Same model, batch size and samples; (b) decodes, composites and resizes inside the stage (overlapped with the
forward on a thread pool); (c) is what clip_score adds to a pass that decodes anyway: decode+clip_score minus decode
alone (best round of each). The runs alternate for --rounds rounds and the best round of each counts. Rates are given per second
of wall time and per CPU-second of this process (all its threads): on a shared, loaded machine the CPU figures are
the reliable ones. Prints the rates and b/a, c/a (target >= 0.8), and the ceiling of c/a while the model's pixels
stay open_clip's exact ones: the per-pair CPU of the stage's own steps measured one by one in the same run
(Pillow's bicubic resize + centre crop of the decoded picture, the tokenizer, the uint8 stack + normalisation).

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

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import torch  # noqa: E402

from filters.clip_score import ClipScore  # noqa: E402
from filters.decode import Decode  # noqa: E402
from pipelines.imaging import decode_rgb  # noqa: E402
from pipelines.operator import apply_map  # noqa: E402
from pipelines.plan import Step, run_steps  # noqa: E402
from pipelines.schema import record_schema  # noqa: E402


class Clock:
    """Wall and process-CPU seconds of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def load_pairs(folder: Path, n: int) -> list[tuple[bytes, str]]:
    pngs = sorted(folder.rglob("*.png"))
    if not pngs:
        raise SystemExit(f"no images under {folder}: run `vlmdata demo` (it builds data/demo) or pass --images")
    pairs = [(p.read_bytes(), p.with_suffix(".txt").read_text().strip()) for p in pngs]
    return [pairs[i % len(pairs)] for i in range(n)]


def plain_loop(op: ClipScore, pairs: list[tuple[bytes, str]], batch_size: int) -> Clock:
    """(a): tensors decoded and preprocessed beforehand; only the encoding is timed.

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
    with Clock() as clock:
        run(batches)
    return clock


def record_batches(pairs: list[tuple[bytes, str]], rows_per_batch: int) -> list[pa.RecordBatch]:
    schema = record_schema()
    rows = [{"key": f"k{i}", "image": b, "text": t, "source": "", "dataset": "bench", "meta": "{}", "part": 0, "ord": i,
             "keep": True, "error": False, "stage": None, "reason": None} for i, (b, t) in enumerate(pairs)]
    return [pa.RecordBatch.from_pylist(rows[i:i + rows_per_batch], schema=schema)
            for i in range(0, len(rows), rows_per_batch)]


def stage(op: ClipScore, batches: list[pa.RecordBatch], batch_size: int) -> Clock:
    """(b): the stage as an engine runs it (apply_map over record batches of encoded bytes)."""
    out_schema = record_schema(op.adds)
    apply_map(op, batches[0].slice(0, batch_size), out_schema)  # warm-up
    with Clock() as clock:
        for b in batches:
            apply_map(op, b, out_schema)
    return clock


def in_pass(ops: list, batches: list[pa.RecordBatch]) -> Clock:
    """A pass of `ops` over the batches as an engine runs it (run_steps: decoded pictures shared by the pass)."""
    fields: list[pa.Field] = []
    steps = []
    for op in ops:
        fields.extend(op.adds)
        steps.append(Step("map", op, record_schema(fields)))
    with Clock() as clock:
        for _ in run_steps(steps, iter(batches)):
            pass
    return clock


def stage_steps(op: ClipScore, pairs: list[tuple[bytes, str]], batch_size: int) -> dict[str, float]:
    """CPU seconds of the stage's own steps besides the model, each alone on one thread, over all pairs: what a pass
    that already decoded the pictures still pays per pair."""
    pictures = [decode_rgb(b) for b, _ in pairs]
    chunks = [slice(i, i + batch_size) for i in range(0, len(pairs), batch_size)]
    out = {}
    start = time.process_time()
    arrays = [np.asarray(op._pil_steps(p), dtype=np.uint8) for p in pictures]
    out["resize + crop"] = time.process_time() - start
    start = time.process_time()
    for c in chunks:
        op.clip.tokenizer([t for _, t in pairs[c]])
    out["tokenizer"] = time.process_time() - start
    start = time.process_time()
    for c in chunks:
        op._stack(arrays[c])
    out["stack + normalise"] = time.process_time() - start
    return out


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
    batches = record_batches(pairs, args.rows_per_batch)
    decode = Decode()
    n = len(pairs)
    wall = dict.fromkeys(("a", "b", "both", "alone"), float("inf"))
    cpu = dict(wall)
    for _ in range(args.rounds):
        for key, clock in (("a", plain_loop(op, pairs, args.batch_size)), ("b", stage(op, batches, args.batch_size)),
                           ("both", in_pass([decode, op], batches)), ("alone", in_pass([decode], batches))):
            wall[key], cpu[key] = min(wall[key], clock.wall), min(cpu[key], clock.cpu)
    wall["c"], cpu["c"] = wall["both"] - wall["alone"], cpu["both"] - cpu["alone"]
    steps: dict[str, float] = {}
    if op._pil_steps is not None:
        for _ in range(args.rounds):
            for name, sec in stage_steps(op, pairs, args.batch_size).items():
                steps[name] = min(steps.get(name, float("inf")), sec)
    print(f"model {args.model}, batch {args.batch_size}, {n} pairs, device {op.clip.device}, "
          f"torch threads {torch.get_num_threads()}, decode threads {args.num_threads}, best of {args.rounds} rounds")
    names = {"a": "plain loop over pre-decoded tensors   ", "b": "clip_score stage from image bytes     ",
             "c": "clip_score in a pass after decode     "}
    for key, name in names.items():
        print(f"({key}) {name} {n / wall[key]:8.1f} pairs/s wall, {n / cpu[key]:8.1f} pairs per CPU-second")
    for key in "bc":
        print(f"{key}/a = {wall['a'] / wall[key]:.2f} wall, {cpu['a'] / cpu[key]:.2f} CPU  (target >= 0.8)")
    if steps:
        print(f"CPU ms per pair: model {1000 * cpu['a'] / n:.3f}, "
              + ", ".join(f"{name} {1000 * sec / n:.3f}" for name, sec in steps.items()))
        print(f"ceiling of c/a CPU with open_clip's exact pixels (model / (model + these steps)): "
              f"{cpu['a'] / (cpu['a'] + sum(steps.values())):.2f}; with the resize alone: "
              f"{cpu['a'] / (cpu['a'] + steps['resize + crop']):.2f}")


if __name__ == "__main__":
    main()
