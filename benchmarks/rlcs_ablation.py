"""RLCS vs the same run with uniform sampling and no dynamic expansion, from one toy SFT start, compared at equal
rollout count (oversampled rollouts count against RLCS): held-out accuracy per task beside the majority-answer
baseline, against rollouts; wall and process-CPU minutes of each arm. Writes OUT/ablation.json and a plot
(docs/rlcs_ablation.png by default).

    python benchmarks/rlcs_ablation.py                       # RLCS for --minutes, then the baseline to equal rollouts
    python benchmarks/rlcs_ablation.py --rollouts 20000      # both arms to a fixed rollout budget
    python benchmarks/rlcs_ablation.py --rollouts 20000 --arm rlcs      # one arm (e.g. two processes at once);
    python benchmarks/rlcs_ablation.py --rollouts 20000 --report-only   # then the table and plot from both
    python benchmarks/rlcs_ablation.py --report-only --at 6000          # compared at a budget both arms passed
    python benchmarks/rlcs_ablation.py --rollouts 20000 --seed 1 --out out/abl_s1   # the same ablation, another seed
    python benchmarks/rlcs_ablation.py --seeds out/abl_s0 out/abl_s1 out/abl_s2    # mean over seeds, and the plot

One seed's end point swings by several points between neighbouring evaluations (and between seeds): compare arms
over seeds.

An arm whose folder already holds a run resumes it (a finished one is only read)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from synth.toy_reasoning import write_toy  # noqa: E402
from train.rlcs.config import RLCSConfig  # noqa: E402
from train.rlcs.loop import train_rlcs  # noqa: E402
from train.rlcs.start import ensure_start  # noqa: E402

# arm -> (curriculum sampling, dynamic expansion)
ARMS = {"rlcs": (True, True), "uniform_no_dynamic": (False, False)}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def at(evals: list[dict], rollouts: int) -> dict:
    """The last evaluation at or before `rollouts`."""
    return [e for e in evals if e["rollouts"] <= rollouts][-1]


def run_arm(base: RLCSConfig, name: str, out: Path, start, rollouts: int | None, minutes: float | None) -> None:
    curriculum, dynamic = ARMS[name]
    cfg = base.model_copy(deep=True)
    cfg.start.model, cfg.start.prompts, cfg.start.heldout = start.model, start.prompts, start.heldout
    cfg.sampler.curriculum, cfg.dynamic.enabled = curriculum, dynamic
    cfg.run.output, cfg.run.steps = out / name, 1_000_000
    cfg.run.max_rollouts, cfg.run.max_minutes = rollouts, minutes
    train_rlcs(RLCSConfig.model_validate(cfg.model_dump()))


def summarise(out: Path, names: list[str], at_rollouts: int | None = None) -> dict:
    arms = {}
    for name in names:
        evals, metrics = rows(out / name / "eval.jsonl"), rows(out / name / "metrics.jsonl")
        if not evals or not metrics:
            raise SystemExit(f"arm {name}: no run in {out / name} (run it first)")
        if at_rollouts is not None:  # the arm as it stood at that budget (its later iterations are left out)
            metrics = [m for m in metrics if m["rollouts_total"] <= at_rollouts]
            evals = [e for e in evals if e["rollouts"] <= at_rollouts]
            if not metrics:
                raise SystemExit(f"arm {name}: no iteration within {at_rollouts} rollouts")
        last = metrics[-1]
        arms[name] = {"evals": evals, "iterations": last["step"], "rollouts": last["rollouts_total"],
                      "wall_min": last.get("elapsed_min"), "cpu_min": last.get("cpu_min"),
                      "updates_with_signal": sum(m["groups_kept"] > 0 for m in metrics),
                      "groups_learned": sum(m["groups_kept"] for m in metrics),
                      **_concentration(metrics),
                      "invalid_rate_mean": sum(m["groups_invalid_rate"] for m in metrics) / len(metrics),
                      # rollouts of all-right or all-wrong groups: no signal whatever the arm does with them
                      "rollouts_in_invalid_groups": sum(round(m["groups_invalid_rate"] * m["rollouts"])
                                                        for m in metrics)}
    common = min(a["rollouts"] for a in arms.values())
    for a in arms.values():
        a["start"], a["end"] = a["evals"][0], at(a["evals"], common)
        # evaluations swing by several points between neighbours: also the mean of the last three
        tail = [e["accuracy"] for e in a["evals"] if e["rollouts"] <= common][-3:]
        a["end_mean3"] = sum(tail) / len(tail)
    return {"rollouts": common, "majority_baseline": arms[names[0]]["start"]["majority_baseline"], "arms": arms}


def _concentration(metrics: list[dict]) -> dict:
    """How spread the learned-from groups were over prompts (runs that log `prompt_ids_learned`; older runs: {})."""
    if not all("prompt_ids_learned" in m for m in metrics):
        return {}
    counts = Counter(i for m in metrics for i in m["prompt_ids_learned"])
    total = sum(counts.values())
    top = sum(c for _, c in counts.most_common(max(1, len(counts) // 10)))
    return {"prompts_learned_from": len(counts), "top_tenth_share": top / total if total else 0.0}


def _pyplot():
    """matplotlib's pyplot on a file backend, or None (and a line saying so) when it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return None
    return plt


def _save(fig, plot: Path) -> None:
    fig.tight_layout()
    plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot, dpi=110)
    print(f"plot: {plot}")


def report(s: dict, plot: Path) -> None:
    base = s["majority_baseline"]
    tasks = sorted(base["per_task"])
    print(f"held-out accuracy (n={s['arms'][next(iter(s['arms']))]['start']['n']}, greedy, exact match) at "
          f"{s['rollouts']} rollouts each; majority-answer baseline {base['all']:.3f} ("
          + ", ".join(f"{t} {base['per_task'][t]:.3f}" for t in tasks) + ")")
    print("| arm | start | end | gain (points) | " + " | ".join(f"{t} start→end" for t in tasks)
          + " | mean of last 3 evals | iterations | rollouts | all-equal groups | wall min | CPU min |")
    print("|---" * (10 + len(tasks)) + "|")
    for name, a in s["arms"].items():
        st, en = a["start"], a["end"]
        print(f"| {name} | {st['accuracy']:.3f} | {en['accuracy']:.3f} | {100 * (en['accuracy'] - st['accuracy']):+.1f} | "
              + " | ".join(f"{st['per_task'][t]:.3f}→{en['per_task'][t]:.3f}" for t in tasks)
              + f" | {a['end_mean3']:.3f} | {a['iterations']} | {a['rollouts']} | {a['invalid_rate_mean']:.2f} "
              f"| {a['wall_min']:.1f} | {a['cpu_min']:.1f} |")
    if {"rlcs", "uniform_no_dynamic"} <= set(s["arms"]):
        r, u = s["arms"]["rlcs"]["end"]["accuracy"], s["arms"]["uniform_no_dynamic"]["end"]["accuracy"]
        print(f"rlcs / uniform_no_dynamic end accuracy at equal rollouts: {r / max(u, 1e-9):.2f}x "
              f"({100 * (r - u):+.1f} points); mean of the last 3 evaluations "
              f"{s['arms']['rlcs']['end_mean3']:.3f} vs {s['arms']['uniform_no_dynamic']['end_mean3']:.3f}")
    for name, a in s["arms"].items():
        if "prompts_learned_from" in a:
            print(f"{name}: learned from {a['groups_learned']} groups of {a['prompts_learned_from']} distinct prompts; "
                  f"the most-learned tenth of those prompts gave {100 * a['top_tenth_share']:.0f}% of the groups")
    plt = _pyplot()
    if plt is None:
        return
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    styles = {"rlcs": "-", "uniform_no_dynamic": "--"}
    for name, a in s["arms"].items():
        xs = [e["rollouts"] for e in a["evals"]]
        ax.plot(xs, [e["accuracy"] for e in a["evals"]], styles.get(name, "-"), marker="o", label=name)
        for i, t in enumerate(tasks):
            bx.plot(xs, [e["per_task"][t] for e in a["evals"]], styles.get(name, "-"), color=f"C{i}",
                    label=f"{t} ({name})")
    ax.axhline(base["all"], color="grey", linestyle=":", label="majority answer")
    ax.axvline(s["rollouts"], color="black", linewidth=0.5)
    ax.set(xlabel="rollouts", ylabel="held-out accuracy", title="all tasks")
    bx.set(xlabel="rollouts", ylabel="held-out accuracy", title="per task")
    ax.legend(fontsize=8)
    bx.legend(fontsize=6, ncol=2)
    _save(fig, plot)


def report_seeds(dirs: list[Path], at_rollouts: int | None, plot: Path) -> None:
    """The ablation of several runs (one seed each, same config otherwise), each compared at equal rollouts: per seed
    and the mean over seeds of the end accuracy and of the mean of the last three evaluations, and a plot of every
    seed's curve with the mean curve of each arm (interpolated on a common rollout grid)."""
    import numpy as np

    runs = {d: summarise(d, list(ARMS), at_rollouts) for d in dirs}
    names = list(ARMS)
    common = min(r["rollouts"] for r in runs.values())
    grid = np.linspace(0, common, 60)

    def curve(r: dict, n: str) -> np.ndarray:
        evals = r["arms"][n]["evals"]
        return np.interp(grid, [e["rollouts"] for e in evals], [e["accuracy"] for e in evals])

    # the mean accuracy over the run (area under the curve / budget): how early an arm learns, not only where it ends
    auc = {n: [float(curve(r, n).mean()) for r in runs.values()] for n in names}
    print(f"held-out accuracy at equal rollouts per seed ({', '.join(str(r['rollouts']) for r in runs.values())}); "
          f"majority-answer baseline {next(iter(runs.values()))['majority_baseline']['all']:.3f}")
    print("| run | " + " | ".join(f"{n} end | {n} mean of last 3" for n in names) + " | end difference (points) |")
    print("|---" * (2 + 2 * len(names)) + "|")
    ends = {n: [] for n in names}
    tails = {n: [] for n in names}
    for d, r in runs.items():
        for n in names:
            ends[n].append(r["arms"][n]["end"]["accuracy"])
            tails[n].append(r["arms"][n]["end_mean3"])
        print(f"| {d} | " + " | ".join(f"{ends[n][-1]:.3f} | {tails[n][-1]:.3f}" for n in names)
              + f" | {100 * (ends[names[0]][-1] - ends[names[1]][-1]):+.1f} |")
    mean = {n: (float(np.mean(ends[n])), float(np.mean(tails[n]))) for n in names}
    print(f"| mean of {len(dirs)} | " + " | ".join(f"{mean[n][0]:.3f} | {mean[n][1]:.3f}" for n in names)
          + f" | {100 * (mean[names[0]][0] - mean[names[1]][0]):+.1f} |")
    wins = sum(a > b for a, b in zip(ends[names[0]], ends[names[1]], strict=True))
    print(f"{names[0]} ends above {names[1]} in {wins} of {len(dirs)} seeds; mean end {mean[names[0]][0]:.3f} vs "
          f"{mean[names[1]][0]:.3f} (min-max {min(ends[names[0]]):.3f}-{max(ends[names[0]]):.3f} vs "
          f"{min(ends[names[1]]):.3f}-{max(ends[names[1]]):.3f}); mean of the last 3 evaluations "
          f"{mean[names[0]][1]:.3f} vs {mean[names[1]][1]:.3f}; mean accuracy over the first {common} rollouts "
          f"(area under the curve) {np.mean(auc[names[0]]):.3f} vs {np.mean(auc[names[1]]):.3f} (per seed "
          + ", ".join(f"{a:.3f}/{b:.3f}" for a, b in zip(auc[names[0]], auc[names[1]], strict=True)) + ")")
    plt = _pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, n in enumerate(names):
        curves = []
        for r in runs.values():
            xs = [e["rollouts"] for e in r["arms"][n]["evals"]]
            ax.plot(xs, [e["accuracy"] for e in r["arms"][n]["evals"]], color=f"C{i}", alpha=0.25, linewidth=0.8)
            curves.append(curve(r, n))
        ax.plot(grid, np.mean(curves, axis=0), color=f"C{i}", linewidth=2, label=f"{n} (mean of {len(curves)} seeds)")
    ax.axhline(next(iter(runs.values()))["majority_baseline"]["all"], color="grey", linestyle=":",
               label="majority answer")
    ax.set(xlabel="rollouts", ylabel="held-out accuracy", title="RLCS vs uniform, no dynamic expansion")
    ax.legend(fontsize=8)
    _save(fig, plot)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/rlcs/toy.yaml")
    ap.add_argument("--out", type=Path, default=Path("out/rlcs_ablation"))
    ap.add_argument("--rollouts", type=int, default=None, help="rollout budget of each arm (default: what the "
                    "RLCS arm generates in --minutes)")
    ap.add_argument("--minutes", type=float, default=20.0, help="wall budget of the RLCS arm without --rollouts")
    ap.add_argument("--arm", action="append", choices=sorted(ARMS), help="run only this arm (repeatable)")
    ap.add_argument("--report-only", action="store_true", help="only read the arms' folders: table and plot")
    ap.add_argument("--plot", type=Path, default=None, help="where the plot goes (default docs/rlcs_ablation.png; "
                    "OUT/ablation.png for a run of one --arm, which must not overwrite the committed plot)")
    ap.add_argument("--at", type=int, default=None, help="with --report-only: compare the arms as they stood at "
                    "this rollout count (at most what both generated) instead of at the end of the shorter one")
    ap.add_argument("--seed", type=int, default=None, help="the runs' seed (default: the config's run.seed)")
    ap.add_argument("--seeds", type=Path, nargs="+", default=None, help="report over the ablation folders of "
                    "several seeds (each compared at its equal rollouts, or at --at): per seed, mean, plot")
    args = ap.parse_args()
    if args.seeds:
        report_seeds(args.seeds, args.at, args.plot or Path("docs/rlcs_ablation.png"))
        return
    base = RLCSConfig.from_yaml(args.config)
    base.run.output = args.out
    if args.seed is not None:
        base.run.seed = args.seed
    names = args.arm or list(ARMS)
    if not args.report_only:
        start = ensure_start(base, write_toy=write_toy)  # one start for every arm
        budget = args.rollouts
        for name in names:
            run_arm(base, name, args.out, start, budget, None if budget else args.minutes)
            if budget is None:  # the next arms get what the first one generated
                budget = rows(args.out / name / "metrics.jsonl")[-1]["rollouts_total"]
    s = summarise(args.out, list(ARMS) if args.report_only else names, args.at if args.report_only else None)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"uptime at the end: {load}")
    (args.out / "ablation.json").write_text(json.dumps(
        {"uptime": load, **s, "arms": {k: {kk: vv for kk, vv in v.items() if kk != "evals"} | {"curve": [
            {"rollouts": e["rollouts"], "accuracy": e["accuracy"], "per_task": e["per_task"]} for e in v["evals"]]}
            for k, v in s["arms"].items()}}, indent=1))
    plot = args.plot or (args.out / "ablation.png" if args.arm and not args.report_only
                         else Path("docs/rlcs_ablation.png"))
    report(s, plot)


if __name__ == "__main__":
    main()
