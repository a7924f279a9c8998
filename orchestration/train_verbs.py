"""The `vlmdata train` verbs that join packages (`train` does not import `synth`): the toy world's writer and RLCS,
whose toy start is built from it. Registered on train's own command group."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from train.cli import app as train_app

REPO = Path(__file__).resolve().parent.parent


@train_app.command()
def toy(
    output: Path = typer.Argument(..., help="Folder for the shards and index.json."),
    samples: int = typer.Option(2000, help="Number of samples."),
    difficulty: int = typer.Option(1, min=1, max=3, help="1 (easy) .. 3 (crowded, 6 colours, two-digit sums)."),
    seed: int = typer.Option(0, help="Seed (use different seeds for train and held-out sets)."),
    image_size: int = typer.Option(112, help="Image side in pixels."),
    shard_size: int = typer.Option(1000, help="Samples per shard."),
    split: str = typer.Option("train", help="train | heldout (disjoint item spaces) | all (no split)."),
) -> None:
    """Write the procedurally rendered toy reasoning world (count, colour, position, arithmetic)."""
    from synth.toy_reasoning import ToyConfig, write_shards

    paths = write_shards(ToyConfig(samples=samples, difficulty=difficulty, seed=seed, image_size=image_size,
                                   shard_size=shard_size, split=split), output)
    typer.echo(json.dumps({"shards": [str(p) for p in paths], "samples": samples}))


@train_app.command()
def rlcs(
    config: Path = typer.Option(REPO / "configs" / "rlcs" / "toy.yaml", "--config",
                                "-c", help="RLCS recipe (configs/rlcs/*.yaml)."),
    steps: int | None = typer.Option(None, "--steps", help="Iterations to reach (a resumed run continues)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Run folder (metrics.jsonl, eval.jsonl, "
                                       "checkpoints/, hf/, start/)."),
    model: str | None = typer.Option(None, "--model", help="Starting policy (saved model folder)."),
    prompts: str | None = typer.Option(None, "--prompts", help="RL prompt set Parquet with tiers."),
    heldout: str | None = typer.Option(None, "--heldout", help="Held-out shard glob."),
    max_minutes: float | None = typer.Option(None, "--max-minutes", help="Stop after this wall time (checkpointed)."),
) -> None:
    """RL with curriculum sampling (GRPO, tiers, dynamic sampling). Builds a missing toy start (SFT checkpoint,
    graded prompts, held-out split) into OUTPUT/start and says so. Resumes from OUTPUT."""
    from synth.toy_reasoning import write_toy
    from train.rlcs.config import RLCSConfig
    from train.rlcs.loop import train_rlcs

    cfg = RLCSConfig.from_yaml(config)
    for section, key, value in (("run", "steps", steps), ("run", "output", output), ("start", "model", model),
                                ("start", "prompts", prompts), ("start", "heldout", heldout),
                                ("run", "max_minutes", max_minutes)):
        if value is not None:
            setattr(getattr(cfg, section), key, value)
    cfg = RLCSConfig.model_validate(cfg.model_dump())
    last = train_rlcs(cfg, log=typer.echo, write_toy=write_toy)
    typer.echo(json.dumps({"output": str(cfg.run.output), **{k: last.get(k) for k in
                                                              ("step", "reward_mean", "accuracy", "expansion_ratio")}}))
