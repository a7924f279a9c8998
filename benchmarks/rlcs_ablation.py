"""RLCS vs the same run with uniform sampling and no dynamic expansion, from one toy SFT start, compared at equal
rollout count: held-out accuracy (beside the majority-answer baseline) against rollouts; writes the curves to
OUT/ablation.json and a plot to docs/rlcs_ablation.png."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from synth.toy_reasoning import write_toy  # noqa: E402
from train.rlcs.config import RLCSConfig  # noqa: E402
from train.rlcs.loop import train_rlcs  # noqa: E402
from train.rlcs.start import ensure_start  # noqa: E402


def curve(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    return [(r["rollouts"], r["accuracy"]) for r in rows]


def at(points: list[tuple[int, float]], rollouts: int) -> float:
    """Accuracy of the last evaluation at or before `rollouts`."""
    return [a for r, a in points if r <= rollouts][-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="configs/rlcs/toy.yaml")
    ap.add_argument("--out", type=Path, default=Path("out/rlcs_ablation"))
    ap.add_argument("--minutes", type=float, default=20.0, help="wall budget of the RLCS arm")
    ap.add_argument("--plot", type=Path, default=Path("docs/rlcs_ablation.png"))
    args = ap.parse_args()
    base = RLCSConfig.from_yaml(args.config)
    base.run.output = args.out
    base.run.steps = 100000
    start = ensure_start(base, write_toy=write_toy)  # one start for both arms
    arms = {"rlcs": (True, True), "uniform_no_dynamic": (False, False)}
    budget_rollouts = None
    report = {}
    for name, (curriculum, dynamic) in arms.items():
        cfg = base.model_copy(deep=True)
        cfg.start.model, cfg.start.prompts, cfg.start.heldout = start.model, start.prompts, start.heldout
        cfg.sampler.curriculum, cfg.dynamic.enabled = curriculum, dynamic
        cfg.run.output = args.out / name
        if budget_rollouts is None:
            cfg.run.max_minutes = args.minutes
        else:  # the baseline gets the same number of rollouts as the RLCS arm used
            per_iter = cfg.grpo.batch_prompts * cfg.grpo.group_size
            cfg.run.steps = -(-budget_rollouts // per_iter)
        t0 = time.perf_counter()
        last = train_rlcs(RLCSConfig.model_validate(cfg.model_dump()))
        report[name] = {"minutes": (time.perf_counter() - t0) / 60, "rollouts": last["rollouts_total"],
                        "curve": curve(cfg.run.output)}
        if budget_rollouts is None:
            budget_rollouts = last["rollouts_total"]
    first_eval = json.loads((args.out / "rlcs" / "eval.jsonl").read_text().splitlines()[0])
    baseline = first_eval["majority_baseline"]
    common = min(v["rollouts"] for v in report.values())
    summary = {name: {"start": v["curve"][0][1], "at_equal_rollouts": at(v["curve"], common), **v}
               for name, v in report.items()}
    (args.out / "ablation.json").write_text(json.dumps({"rollouts": common, "majority_baseline": baseline,
                                                        "arms": summary}, indent=1))
    print(f"held-out accuracy at {common} rollouts (majority-answer baseline {baseline['all']:.3f}; per task "
          + ", ".join(f"{t} {b:.3f}" for t, b in baseline["per_task"].items()) + ")")
    print("| arm | start | end | gain (points) | rollouts | minutes |\n|---|---|---|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {s['start']:.3f} | {s['at_equal_rollouts']:.3f} | "
              f"{100 * (s['at_equal_rollouts'] - s['start']):+.1f} | {s['rollouts']} | {s['minutes']:.1f} |")
    a, b = summary["rlcs"]["at_equal_rollouts"], summary["uniform_no_dynamic"]["at_equal_rollouts"]
    print(f"rlcs / uniform at equal rollouts: {a / max(b, 1e-9):.2f}x")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for name, s in summary.items():
            ax.plot([r for r, _ in s["curve"]], [acc for _, acc in s["curve"]], marker="o", label=name)
        ax.axhline(baseline["all"], color="grey", linestyle="--", label="majority answer")
        ax.set_xlabel("rollouts")
        ax.set_ylabel("held-out accuracy")
        ax.legend()
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")
    except ImportError:
        print("matplotlib is not installed: no plot")


if __name__ == "__main__":
    main()
