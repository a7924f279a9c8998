"""Long-CoT distillation (GLM-4.1V report): k teacher samples per prompt, parsed into think/answer/box, dropped with
a reason for format violations, mixed language, loops, overlong thinking and wrong answers; pass@k per prompt
becomes an offline difficulty tier; SFT shards plus the RL prompt set (`OUT/rl_prompts.parquet`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "synth" / "distill.yaml"
DEMO_PROMPTS = Path(__file__).resolve().parents[1] / "data" / "prompts" / "demo.jsonl"


def stage_index(recipe: str | Path, op: str) -> int:
    """The index of the first stage running `op` in a recipe (so CLI flags land on the right stage)."""
    stages = (yaml.safe_load(Path(recipe).read_text()) or {}).get("stages") or []
    for i, s in enumerate(stages):
        if isinstance(s, dict) and s.get("op") == op:
            return i
    raise ValueError(f"{recipe}: no stage runs the {op!r} operator")


def teacher_overrides(recipe: str | Path, op: str, teacher: str | None, model: str | None = None,
                      **fields: Any) -> dict[str, Any]:
    """Recipe overrides for the CLI's --teacher URL|inproc:PATH, --model and the stage's other flags."""
    i = stage_index(recipe, op)
    out: dict[str, Any] = {}
    if teacher:
        out[f"stages.{i}.teacher.endpoint"] = teacher
    if model:
        out[f"stages.{i}.teacher.model"] = model
    out.update({f"stages.{i}.{k}": v for k, v in fields.items() if v is not None})
    return out


def finish(output: str, recipe: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """After the flow: the RL prompt set and the difficulty report (also written into OUT/stats.json)."""
    from pipelines.spec import load_spec
    from synth.distill.rlset import add_to_stats, build_rl_set

    spec = load_spec(recipe, overrides)
    cfg = next(op.config for op in spec.operators() if op.name == "distill")
    report = build_rl_set(output, tuple(tuple(t) for t in cfg.tiers), cfg.too_easy)
    add_to_stats(output, "distill", report)
    return report


def run(prompts: str, output: str, teacher: str | None = None, model: str | None = None, k: int | None = None,
        config: str | None = None, engine: Any = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """`vlmdata synth distill` without Prefect: the recipe on a prompt set through `pipelines.run.run_pipeline`,
    then the RL prompt set. Returns the difficulty report."""
    from pipelines.run import run_pipeline
    from pipelines.spec import load_spec

    recipe = config or RECIPE
    sets = {**teacher_overrides(recipe, "distill", teacher, model, k=k), **(overrides or {})}
    spec = load_spec(recipe, sets)
    if engine is None:
        from pipelines.engines.local import LocalEngine

        engine = LocalEngine(spec.engine)
    run_pipeline(spec, [prompts], output, engine)
    return finish(output, recipe, sets)


def summary_lines(report: dict[str, Any]) -> list[str]:
    tiers = ", ".join(f"{k} {v}" for k, v in report["tiers"].items())
    return [f"difficulty (pass@k): {tiers}",
            f"too easy {report['too_easy']}, unsolved {report['unsolved']}, unverifiable {report['unverifiable']}, "
            f"teacher errors {report['teacher_errors']}; RL prompt set: {report['rl_prompts']} prompts",
            json.dumps(report, sort_keys=True)]
