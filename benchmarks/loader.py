"""Streaming + packing loader vs. the model's training consumption, measured in one run on this machine:
ratio of samples/s (target >= 5x, so the model never waits) and packed-token efficiency (target >= 0.95),
on the toy stream and per length profile (best fit over a buffer against next fit in arrival order).
With a GPU it also reports MFU of `--preset` (use `small`)."""

from __future__ import annotations

import argparse
import itertools
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from model.attention import resolve_backend, use_varlen_attention  # noqa: E402
from model.build import build  # noqa: E402
from synth.toy_reasoning import ToyConfig, generate, write_shards  # noqa: E402
from train.config import DataConfig, OptimConfig, ShardSource  # noqa: E402
from train.data.loader import BatchIterator, to_device  # noqa: E402
from train.data.pack import BestFitPacker  # noqa: E402
from train.dist import cpu_threads  # noqa: E402
from train.loss import batch_token_losses  # noqa: E402
from train.metrics import FlopModel, peak_flops  # noqa: E402
from train.optim import build_optimizer  # noqa: E402


class _Len:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def next_fit(lengths: list[int], seq_len: int) -> float:
    """Efficiency of next fit in arrival order (a sample that does not fit closes the row)."""
    rows, used = 1, 0
    for n in lengths:
        if used + n > seq_len:
            rows, used = rows + 1, 0
        used += n
    return sum(lengths) / (rows * seq_len)


def best_fit(lengths: list[int], seq_len: int, rows: int, buffer: int) -> float:
    packer = BestFitPacker(seq_len, rows, buffer)
    used = total = 0
    for n in lengths:
        packer.add(_Len(n))
        if packer.full():
            got = packer.take_rows()
            used += sum(len(s) for r in got for s, _ in r)
            total += seq_len * len(got)
    return used / total


# (name, draw a length, row length): SFT answers with long CoT, short captions, long documents/OCR pages
PROFILES = [
    ("sft (lognormal, median 1.2k) in 32k rows", lambda r: min(32768, int(r.lognormvariate(7.1, 0.6))), 32768),
    ("sft (lognormal, median 1.2k) in 4k rows", lambda r: min(4096, int(r.lognormvariate(7.1, 0.6))), 4096),
    ("caption (20-120) in 1k rows", lambda r: r.randint(20, 120), 1024),
    ("caption + 256 image tokens in 4k rows", lambda r: 256 + r.randint(10, 80), 4096),
    ("ocr pages (uniform 500-3000) in 8k rows", lambda r: r.randint(500, 3000), 8192),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--target", default="messages", choices=["messages", "caption"])
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--batches", type=int, default=40, help="Batches timed for each side.")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for training; default as in training: cores minus the loader worker.")
    ap.add_argument("--shards", default=None, help="Shard glob; default: freshly rendered toy-world shards.")
    ap.add_argument("--pack-buffer", type=int, default=64, help="Best-fit buffer (samples), as data.pack_buffer.")
    ap.add_argument("--profile-samples", type=int, default=20000, help="Samples drawn per length profile.")
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(args.threads, loader_workers=1))
    tmp = Path(tempfile.mkdtemp(prefix="loader-bench-"))
    if args.shards is None:
        write_shards(ToyConfig(samples=4000, seed=5), tmp / "toy")
        args.shards = str(tmp / "toy" / "*.tar")
    texts = itertools.chain.from_iterable(
        (s["caption"], s["messages"][1]["content"]) for s in generate(ToyConfig(samples=1000, seed=5)))
    model, proc = build(args.preset, texts)
    data = DataConfig(sources=[ShardSource(name="bench", urls=args.shards)], seq_len=args.seq_len,
                      rows_per_batch=args.rows, target=args.target, num_workers=1,
                      pack_buffer=args.pack_buffer)

    # Loader alone, as training runs it: one DataLoader worker process (1 torch thread) doing decode,
    # processor, rope positions and packing.
    it = BatchIterator(data, proc, model.config, seed=0)
    next(it)  # worker start and packing-buffer warm-up
    t = time.perf_counter()
    batches = [next(it) for _ in range(args.batches)]
    load_s = time.perf_counter() - t
    samples = sum(b["num_samples"] for b in batches)
    real = sum(b["real_tokens"] for b in batches)
    total = sum(b["input_ids"].numel() for b in batches)

    # Model alone: forward + backward + AdamW on the same batches, already in memory.
    model.to(device).train()
    opt = build_optimizer(model, OptimConfig())
    use_bf16 = device.type == "cuda"

    use_varlen_attention(model, resolve_backend("auto", device))

    def step(b: dict) -> None:
        b = to_device(b, device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            tok = batch_token_losses(model, b)
        (tok.sum() / tok.numel()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(batches[0])  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for b in batches:
        step(b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_s = time.perf_counter() - t

    loader_rate, train_rate = samples / load_s, samples / train_s
    print(f"preset {args.preset}, target {args.target}, seq_len {args.seq_len} x {args.rows} rows, "
          f"{args.batches} batches, {samples} samples, device {device}")
    print(f"loader  : {loader_rate:8.1f} samples/s (1 worker process)")
    print(f"training: {train_rate:8.1f} samples/s ({torch.get_num_threads()} threads)" if device.type == "cpu"
          else f"training: {train_rate:8.1f} samples/s")
    print(f"loader / training = {loader_rate / train_rate:.1f}x (target >= 5x)")
    print(f"packed-token efficiency = {real / total:.3f} (target >= 0.95)")
    print(f"skipped samples: {it.state.skipped() or 0}")
    rng = random.Random(0)
    print(f"packing efficiency per length profile ({args.profile_samples} samples each; best fit over "
          f"{args.pack_buffer} samples, {args.rows} rows per batch):")
    for name, draw, seq_len in PROFILES:
        lengths = [draw(rng) for _ in range(args.profile_samples)]
        nf, bf = next_fit(lengths, seq_len), best_fit(lengths, seq_len, args.rows, args.pack_buffer)
        print(f"  {name:44s} next fit {nf:.3f}  best fit {bf:.3f}  (x{bf / nf:.2f})")
    peak = peak_flops(device)
    if peak:
        mfu = sum(FlopModel.of(model).batch_flops(b) for b in batches) / train_s / peak
        print(f"MFU ({torch.cuda.get_device_name(device)}, bf16 autocast): {mfu:.1%}")


if __name__ == "__main__":
    main()
