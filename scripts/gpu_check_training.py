"""GPU check of the training stack, in one run: (1) packed = one-by-one loss on every attention backend this machine
has (sdpa; flex, compiled on a GPU; flash-attention when installed), with non-square images, a two-image sample and
a text-only sample, and (2) tokens/s and MFU of the real training loop (`train.trainer.train`: loader workers, best-fit
packing, bf16 autocast, per-block torch.compile) for the `small` preset at seq_len 8k, on toy-world shards with
448-px images (256 image tokens each), MFU counted as docs/training.md says (target >= 40%).

It has NOT been run on a GPU yet (written on a CPU-only machine). `--cpu-smoke` runs the same code at tiny size on
CPU (tiny preset, 512-token rows, 3 steps) so the script is exercised by the tests; its figures are not GPU
figures. Everything it writes goes to a temporary folder it removes. Budget: < 10 minutes on one H200.

    python scripts/gpu_check_training.py                   # on a CUDA machine
    python scripts/gpu_check_training.py --no-compile      # eager blocks
    python scripts/gpu_check_training.py --cpu-smoke       # anywhere
Exit status 1 when a packed = one-by-one check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from model.attention import available_backends  # noqa: E402
from model.build import build  # noqa: E402
from synth.toy_reasoning import ToyConfig, generate, write_shards  # noqa: E402
from synth.toy_samples import mixed_raws  # noqa: E402
from train.checks import packed_vs_single  # noqa: E402
from train.config import DataConfig, OptimConfig, RunConfig, ShardSource, TrainConfig  # noqa: E402
from train.data.counters import SkipCounter  # noqa: E402
from train.data.encode import Encoder  # noqa: E402
from train.trainer import train  # noqa: E402


def check_packing(model, proc, backend: str, device: torch.device, seq_len: int, image_size: int) -> dict:
    """Per-sample losses of one packed batch against each sample run alone through transformers' own attention.
    fp32 for sdpa/flex (TF32 off); flash-attention runs in bf16 only, so both sides run under bf16 autocast."""
    enc = Encoder(proc, model.config, "messages", SkipCounter(), max_len=seq_len // 2)
    samples = [e for e in (enc(r) for r in mixed_raws(6, image_size)) if e is not None]
    # rows about 60% of the tokens long: the samples spread over two rows or more, with padding
    seq_len = max(max(len(s) for s in samples), -(-int(0.6 * sum(len(s) for s in samples)) // 64) * 64)
    bf16 = backend == "flash"
    packed, single, rows = packed_vs_single(model, samples, seq_len, len(samples), proc.tokenizer.pad_token_id,
                                            backend, device, bf16=bf16)
    diff = float((packed - single).abs().max())
    tol = 3e-2 if bf16 else 1e-4
    return {"backend": backend, "dtype": "bf16" if bf16 else "fp32", "samples": len(samples), "rows": rows,
            "max_abs_diff": diff, "tolerance": tol,
            "ok": rows >= 2 and diff <= tol * max(1.0, float(single.abs().max()))}


def speed(shards: Path, out: Path, args, device: torch.device) -> dict:
    """The real loop: tokens/s, MFU and packing efficiency after the warm-up steps (compile, loader start)."""
    workers = 0 if args.cpu_smoke else max(1, min(8, (os.cpu_count() or 2) - 2))
    cfg = TrainConfig(
        stage="pretrain", model=args.preset, tokenizer_samples=2000,
        data=DataConfig(sources=[ShardSource(name="toy", urls=str(shards / "*.tar"))], seq_len=args.seq_len,
                        rows_per_batch=args.rows, num_workers=workers, open_shards=4),
        optim=OptimConfig(lr=3e-4, warmup_steps=2),
        run=RunConfig(output=out, steps=args.steps, progress=False, tensorboard=False, save_hf=False,
                      compile=args.compile and device.type == "cuda", bf16=True, attention=args.attention,
                      cpu_threads=1 if args.cpu_smoke else None),
    )
    t = time.perf_counter()
    train(cfg)
    wall = time.perf_counter() - t
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = rows[min(args.warmup, len(rows) - 1):]
    mfu = [r["mfu"] for r in timed if r.get("mfu") is not None]
    return {"preset": args.preset, "seq_len": args.seq_len, "rows": args.rows, "steps": len(rows),
            "timed_steps": len(timed), "loader_workers": workers, "compile": cfg.run.compile, "wall_s": round(wall, 1),
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in timed),
            "tflops_per_s": statistics.median(r["tflops_per_s"] for r in timed),
            "mfu": statistics.median(mfu) if mfu else None,
            "packing_efficiency": statistics.mean(r["packing_efficiency"] for r in timed),
            "step_time_s": statistics.median(r["step_time_s"] for r in timed),
            "loss_first_last": [rows[0]["loss"], rows[-1]["loss"]]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-smoke", action="store_true", help="Tiny sizes on CPU (exercises the code; no GPU figures).")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--seq-len", type=int, default=8192)
    ap.add_argument("--rows", type=int, default=1, help="Packed rows per micro-batch.")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=8, help="First steps left out of the speed figures.")
    ap.add_argument("--samples", type=int, default=6000, help="Toy-world samples rendered for the speed run.")
    ap.add_argument("--image-size", type=int, default=448)
    ap.add_argument("--attention", default="auto", choices=["auto", "sdpa", "flash", "flex"])
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    args = ap.parse_args(argv)
    if args.cpu_smoke:
        args.preset, args.seq_len, args.rows, args.steps, args.warmup = "tiny", 512, 2, 3, 1
        args.samples, args.image_size = 200, 112
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu_smoke else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # fp32 checks are fp32
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-training-"))
    report: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "torch": torch.__version__}
    try:
        t = time.perf_counter()
        write_shards(ToyConfig(samples=args.samples, image_size=args.image_size, difficulty=2, seed=0), tmp / "toy")
        report["render_s"] = round(time.perf_counter() - t, 1)
        texts = [x for s in generate(ToyConfig(samples=500, seed=1)) for x in (s["caption"], s["messages"][1]["content"])]
        model, proc = build(args.preset, texts)
        model.to(device).eval()
        report["checks"] = []
        for backend in available_backends(device):
            try:
                r = check_packing(model, proc, backend, device, min(args.seq_len, 2048), args.image_size)
            except Exception as e:  # a backend that cannot run here is reported, the others still run
                r = {"backend": backend, "ok": False, "error": f"{type(e).__name__}: {e}"[:300]}
            report["checks"].append(r)
            print(json.dumps(r), flush=True)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
        try:
            report["speed"] = speed(tmp / "toy", tmp / "run", args, device)
        except Exception as e:
            if not args.compile:
                raise
            report["speed_compile_error"] = f"{type(e).__name__}: {e}"[:300]
            args.compile = False
            shutil.rmtree(tmp / "run", ignore_errors=True)
            report["speed"] = speed(tmp / "toy", tmp / "run", args, device)
        s = report["speed"]
        mfu = f"{s['mfu']:.1%}" if s["mfu"] is not None else "n/a (no known peak for this device)"
        print(f"{s['preset']} seq_len {s['seq_len']} x {s['rows']} rows, bf16, compile {s['compile']}: "
              f"{s['tokens_per_s']:,.0f} tokens/s, {s['tflops_per_s']:.1f} TFLOP/s, MFU {mfu} (target >= 40%), "
              f"packing {s['packing_efficiency']:.3f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(report))
    return 0 if all(c["ok"] for c in report["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
