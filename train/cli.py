"""`vlmdata train ...`: pretrain, sft, toy (write the toy-world shards), eval, rlcs and grade."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

os.environ.setdefault("HF_HUB_OFFLINE", "1")

app = typer.Typer(help="Train the GLM-4.1V-style model on WebDataset shards.", no_args_is_help=True)


def _config(stage: str, config: Path | None, preset: str | None, shards: list[str] | None, steps: int | None,
            output: Path | None, overrides: dict):
    from train.config import ShardSource, TrainConfig

    cfg = TrainConfig.from_yaml(config) if config else TrainConfig()
    cfg.stage = stage  # type: ignore[assignment]
    if preset:
        cfg.model = preset
    if shards:
        cfg.data.sources = [ShardSource(name=f"shards{i}", urls=s) for i, s in enumerate(shards)]
    if steps is not None:
        cfg.run.steps = steps
    if output is not None:
        cfg.run.output = output
    for section, values in overrides.items():
        for k, v in values.items():
            if v is not None:
                setattr(getattr(cfg, section), k, v)
    return TrainConfig.model_validate(cfg.model_dump())


def _run(stage: str, config, preset, shards, steps, output, seq_len, rows, accum, lr, workers, ckpt_every, no_progress):
    from train.trainer import train

    cfg = _config(stage, config, preset, shards, steps, output, {
        "data": {"seq_len": seq_len, "rows_per_batch": rows, "num_workers": workers},
        "optim": {"grad_accum": accum, "lr": lr},
        "run": {"ckpt_every": ckpt_every, "progress": False if no_progress else None},
    })
    last = train(cfg)
    typer.echo(json.dumps({"output": str(cfg.run.output), **{k: last.get(k) for k in ("step", "loss")}}))


_opts = dict(
    config=typer.Option(None, "--config", "-c", help="Training YAML (configs/train/*.yaml or a path)."),
    preset=typer.Option(None, "--preset", "-p", help="Model preset (tiny, small, glm-4.1v-9b) or saved model folder."),
    shards=typer.Option(None, "--shards", help="Shard glob; repeat for several sources (equal weights)."),
    steps=typer.Option(None, "--steps", help="Optimiser steps to reach."),
    output=typer.Option(None, "--output", "-o", help="Run folder (metrics.jsonl, checkpoints/, hf/)."),
)


def _stage_command(stage: str, doc: str):
    """One command per training stage; both take the same options (typer reads them from the signature)."""

    def command(
        config: Path | None = _opts["config"], preset: str | None = _opts["preset"],
        shards: list[str] | None = _opts["shards"], steps: int | None = _opts["steps"],
        output: Path | None = _opts["output"],
        seq_len: int | None = typer.Option(None, help="Tokens per packed row."),
        rows: int | None = typer.Option(None, help="Packed rows per micro-batch."),
        accum: int | None = typer.Option(None, help="Gradient accumulation steps."),
        lr: float | None = typer.Option(None, help="Peak learning rate."),
        workers: int | None = typer.Option(None, help="DataLoader workers."),
        ckpt_every: int | None = typer.Option(None, help="Steps between checkpoints."),
        no_progress: bool = typer.Option(False, help="Plain log lines instead of a progress bar."),
    ) -> None:
        _run(stage, config, preset, shards, steps, output, seq_len, rows, accum, lr, workers, ckpt_every, no_progress)

    command.__doc__ = doc
    command.__name__ = stage
    return command


pretrain = app.command("pretrain")(_stage_command(
    "pretrain", "Pretraining: loss on captions (or the assistant turn of samples without one). Resumes from OUTPUT."))
sft = app.command("sft")(_stage_command(
    "sft", "SFT: loss on the last assistant turn of `messages`. --preset may be a pretraining run's OUTPUT/hf."))


@app.command("eval")
def evaluate_cmd(
    model: Path = typer.Argument(..., help="Saved model folder (a run's OUTPUT/hf)."),
    shards: str = typer.Option(..., "--shards", help="Held-out shard glob with messages and boxed answers."),
    limit: int = typer.Option(400, help="Samples to evaluate."),
    batch_size: int = typer.Option(32, help="Prompts per generate call."),
    max_new_tokens: int = typer.Option(96, help="Generation budget per answer."),
) -> None:
    """Greedy-decode answers and report exact-match accuracy of the boxed answer, per task."""
    from train.evaluate import evaluate

    typer.echo(json.dumps(evaluate(model, shards, limit, batch_size, max_new_tokens), indent=1))


@app.command()
def grade(
    model: Path = typer.Argument(..., help="Saved model folder."),
    output: Path = typer.Option(..., "--output", "-o", help="Parquet to write (the RL prompt set schema)."),
    prompts: str | None = typer.Option(None, "--prompts", help="RL prompt set Parquet to grade."),
    shards: str | None = typer.Option(None, "--shards", help="Or: SFT shard glob with boxed answers (toy world)."),
    limit: int = typer.Option(512, help="Prompts read from --shards."),
    k: int = typer.Option(8, help="Rollouts per prompt."),
    max_new_tokens: int = typer.Option(64, help="Thinking budget per rollout (then forced answering)."),
    workers: int = typer.Option(1, help="Verifier worker processes."),
    seed: int = typer.Option(0, help="Rollout seed."),
) -> None:
    """Roll MODEL out k times per prompt, score with the verifiers and write pass rate and tier per prompt."""
    from train.rlcs.grade import grade as grade_run
    from train.rlcs.prompts import from_parquet, from_shards
    from train.rlcs.rollout import RolloutConfig

    if (prompts is None) == (shards is None):
        raise typer.BadParameter("give exactly one of --prompts and --shards")
    pool = from_parquet(prompts) if prompts else from_shards(shards, limit)
    report = grade_run(model, pool, output, k=k, rollout=RolloutConfig(think_budget=max_new_tokens), workers=workers,
                       seed=seed)
    typer.echo(json.dumps(report, indent=1))


@app.command()
def clip(
    shards: str | None = typer.Option(None, "--shards", help="Shard glob with {key}.png|jpg and {key}.txt (curated shards)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Folder for clip.pt, model json, threshold.json, metrics.json."),
    epochs: int | None = typer.Option(None, "--epochs", help="Passes over the training split."),
    config: Path = typer.Option(Path(__file__).resolve().parent.parent / "configs" / "clip" / "demo_train.yaml", "--config", "-c",
                                help="Training recipe (YAML); flags override it."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of split, trainer and evaluation."),
) -> None:
    """Train the small CLIP filter model with open_clip's trainer and calibrate its clip_score threshold."""
    from train.clip import ClipTrainConfig, train_clip

    cfg = ClipTrainConfig.from_yaml(config, shards=shards, output=output, epochs=epochs, seed=seed)
    metrics = train_clip(cfg, log=typer.echo)
    typer.echo(json.dumps({k: v for k, v in metrics.items() if k != "config"}, indent=1))


if __name__ == "__main__":
    app()
