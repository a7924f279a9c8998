"""Streaming + packing loader vs. the model's training consumption, measured in one run on this machine:
ratio of samples/s (target >= 5x, so the model never waits) and packed-token efficiency (target >= 0.95).
With a GPU it also reports MFU of `--preset` (use `small`)."""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from model.build import build  # noqa: E402
from synth.toy_reasoning import ToyConfig, generate, write_shards  # noqa: E402
from train.config import DataConfig, OptimConfig, ShardSource  # noqa: E402
from train.data.loader import BatchIterator, to_device  # noqa: E402
from train.dist import cpu_threads  # noqa: E402
from train.loss import forward_logits, token_losses  # noqa: E402
from train.metrics import flops_per_token, peak_flops  # noqa: E402
from train.optim import build_optimizer  # noqa: E402


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
                      rows_per_batch=args.rows, shuffle_buffer=1000, target=args.target, num_workers=1)

    # Loader alone, as training runs it: one DataLoader worker process (1 torch thread) doing decode,
    # processor, rope positions and packing.
    it = BatchIterator(data, proc, model.config, seed=0)
    next(it)  # shuffle buffer warm-up
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

    def step(b: dict) -> None:
        b = to_device(b, device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            logits = forward_logits(model, b)
        (token_losses(logits, b["labels"]).sum() / (b["labels"] != -100).sum()).backward()
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
    print(f"skipped samples: {it.state.skipped or 0}")
    peak = peak_flops(device)
    if peak:
        mfu = flops_per_token(model, args.seq_len) * total / train_s / peak
        print(f"MFU ({torch.cuda.get_device_name(device)}, bf16 autocast): {mfu:.1%}")


if __name__ == "__main__":
    main()
