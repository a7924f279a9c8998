"""Proof that the stack learns: toy-world pretraining then SFT of `tiny` on CPU; prints the loss curves and
held-out accuracy beside the held-out set's majority-answer baseline and chance (ratios measured in this run)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from synth.toy_reasoning import TASKS, ToyConfig, answer_space, write_shards  # noqa: E402
from train.config import ShardSource, TrainConfig  # noqa: E402
from train.evaluate import evaluate  # noqa: E402
from train.trainer import train  # noqa: E402


def curve(metrics: Path, points: int = 10) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    window = max(1, len(rows) // points)
    out = []
    for i in range(0, len(rows), window):
        chunk = rows[i : i + window]
        out.append((chunk[-1]["step"], sum(r["loss"] for r in chunk) / len(chunk)))
    return out


def toy_set(out: Path, cfg: ToyConfig) -> Path:
    """OUT/data/SPLIT-HASH: the shards of `cfg`, rendered unless a previous run left them there."""
    digest = hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:12]
    folder = out / "data" / f"{cfg.split}-{digest}"
    if not (folder / "index.json").exists():
        write_shards(cfg, folder)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("out/toy"))
    ap.add_argument("--train-samples", type=int, default=30000)
    ap.add_argument("--eval-samples", type=int, default=400)
    ap.add_argument("--difficulty", type=int, default=1)
    ap.add_argument("--pretrain-steps", type=int, default=None, help="default: configs/train/toy_pretrain.yaml")
    ap.add_argument("--sft-steps", type=int, default=None, help="default: configs/train/toy_sft.yaml")
    args = ap.parse_args()

    t0 = time.perf_counter()
    # the toy world's honest split: the held-out items (image, question; expression for arithmetic) never occur in
    # training. Each set lives in a folder named by its config, so a changed option renders a new set.
    train_dir = toy_set(args.out, ToyConfig(samples=args.train_samples, difficulty=args.difficulty, seed=0,
                                            split="train"))
    eval_dir = toy_set(args.out, ToyConfig(samples=args.eval_samples, difficulty=args.difficulty, seed=977,
                                           split="heldout"))
    t_data = time.perf_counter()

    stages = {}
    for stage in ("pretrain", "sft"):
        cfg = TrainConfig.from_yaml(f"toy_{stage}")
        cfg.data.sources = [ShardSource(name="toy", urls=str(train_dir / "*.tar"))]
        cfg.run.output = args.out / stage
        cfg.run.progress = False
        cfg.run.log_every = 50
        steps = args.pretrain_steps if stage == "pretrain" else args.sft_steps
        if steps is not None:
            cfg.run.steps = steps
        if stage == "sft":
            cfg.model = str(args.out / "pretrain" / "hf")
        s = time.perf_counter()
        train(cfg)
        stages[stage] = {"seconds": time.perf_counter() - s, "steps": cfg.run.steps,
                         "curve": curve(cfg.run.output / "metrics.jsonl")}
    s = time.perf_counter()
    acc = evaluate(args.out / "sft" / "hf", str(eval_dir / "*.tar"), limit=args.eval_samples)
    t_eval = time.perf_counter() - s
    chance = {t: 1 / answer_space(t, args.difficulty) for t in TASKS}
    mean_chance = sum(chance.values()) / len(chance)
    report = {
        "minutes_total": (time.perf_counter() - t0) / 60,
        "minutes_data": (t_data - t0) / 60,
        "minutes_eval": t_eval / 60,
        "stages": stages,
        "heldout": acc,
        "chance": chance,
        "accuracy_over_chance": acc["accuracy"] / mean_chance,
        "accuracy_over_majority": acc["accuracy"] / acc["majority_baseline"]["all"],
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    for stage, st in stages.items():
        first, last = st["curve"][0][1], st["curve"][-1][1]
        print(f"{stage}: {st['steps']} steps in {st['seconds'] / 60:.1f} min, loss {first:.3f} -> {last:.3f} "
              f"(x{last / first:.2f})")
        print("  curve: " + ", ".join(f"{s}:{v:.3f}" for s, v in st["curve"]))
    majority = acc["majority_baseline"]
    print(f"held-out accuracy {acc['accuracy']:.3f} on {acc['n']} samples; majority baseline {majority['all']:.3f} "
          f"(x{report['accuracy_over_majority']:.1f}), mean chance {mean_chance:.3f} "
          f"(x{report['accuracy_over_chance']:.1f})")
    for t, a in acc["per_task"].items():
        print(f"  {t}: {a:.3f} (majority {majority['per_task'][t]:.3f}, answer {majority['answer'][t]!r}; "
              f"chance {chance[t]:.3f})")
    print(f"total {report['minutes_total']:.1f} min")


if __name__ == "__main__":
    main()
