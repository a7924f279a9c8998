"""What an RLCS run starts from (policy, tiered prompts, held-out shards): the configured paths when they exist,
else built from the toy world into OUTPUT/start, saying which. `train` does not import `synth`: the caller hands
in the toy world's writer (`synth.toy_reasoning.write_toy`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from glob import glob
from pathlib import Path

from train.rlcs.config import RLCSConfig

# write_toy(split, samples, seed, difficulty, out_dir) writes toy shards of one split with an index.json
ToyWriter = Callable[[str, int, int, int, Path], None]


@dataclass
class Start:
    model: str
    prompts: str
    heldout: str | None
    notes: list[str]


def _have_model(ref: str | None) -> bool:
    return bool(ref) and (Path(ref) / "config.json").exists()


def ensure_start(cfg: RLCSConfig, log: Callable[[str], None] = print, write_toy: ToyWriter | None = None) -> Start:
    s, toy = cfg.start, cfg.start.toy
    root = cfg.run.output / "start"
    notes: list[str] = []

    def say(msg: str) -> None:
        notes.append(msg)
        log(f"rlcs: {msg}")

    def need_toy(what: str) -> ToyWriter:
        if write_toy is None:
            raise SystemExit(f"rlcs: {what} is missing and no toy-world writer was given; set start.{what} in the config")
        return write_toy

    train_dir, heldout_dir = root / "toy" / "train", root / "toy" / "heldout"

    def toy_train() -> Path:
        if not (train_dir / "index.json").exists():
            say(f"writing {toy.train_samples} toy train-split samples to {train_dir}")
            need_toy("model")("train", toy.train_samples, toy.train_seed, toy.difficulty, train_dir)
        return train_dir

    model = s.model
    if _have_model(model):
        say(f"starting policy: {model} (found)")
    else:
        model = str(root / "sft" / "hf")
        if _have_model(model):
            say(f"starting policy: {model} (built earlier)")
        else:
            say(f"start.model {s.model or '(unset)'} not found: building the toy SFT checkpoint in {root}")
            _build_sft(cfg, toy_train(), root, say)
    heldout = s.heldout
    if heldout and glob(heldout):
        say(f"held-out shards: {heldout} (found)")
    elif s.heldout is None or not glob(s.heldout):
        if not (heldout_dir / "index.json").exists():
            say(f"writing {toy.heldout_samples} toy held-out-split samples to {heldout_dir}")
            need_toy("heldout")("heldout", toy.heldout_samples, toy.heldout_seed, toy.difficulty, heldout_dir)
        heldout = str(heldout_dir / "*.tar")
        say(f"held-out shards: {heldout}")
    prompts = s.prompts
    if prompts and Path(prompts).exists():
        say(f"RL prompt set: {prompts} (found)")
    else:
        prompts = str(root / "prompts.parquet")
        if Path(prompts).exists():
            say(f"RL prompt set: {prompts} (graded earlier)")
        else:
            from train.rlcs.grade import grade
            from train.rlcs.prompts import from_shards

            pool = from_shards(str(toy_train() / "*.tar"), toy.rl_prompts)
            say(f"grading {len(pool)} toy train-split prompts with {model}, k={toy.grade_k} -> {prompts}")
            report = grade(model, pool, prompts, k=toy.grade_k, rollout=cfg.rollout, workers=cfg.reward.workers,
                           seed=cfg.run.seed)
            say(f"tiers: {report['tiers']}, mean pass rate {report['mean_pass_rate']:.3f}")
    return Start(model, prompts, heldout, notes)


def _build_sft(cfg: RLCSConfig, train_dir: Path, root: Path, say: Callable[[str], None]) -> None:
    from train.config import ShardSource, TrainConfig
    from train.trainer import train

    toy = cfg.start.toy
    prev = "tiny"
    for stage, steps in (("pretrain", toy.pretrain_steps), ("sft", toy.sft_steps)):
        tc = TrainConfig.from_yaml(f"toy_{stage}")
        tc.model = prev
        tc.data.sources = [ShardSource(name="toy", urls=str(train_dir / "*.tar"))]
        tc.run.output, tc.run.steps = root / stage, steps
        tc.run.progress, tc.run.tensorboard, tc.run.log_every = False, False, 50
        tc.run.ckpt_every = 0
        if steps < tc.optim.warmup_steps:
            tc.optim.warmup_steps = max(1, steps // 4)
        say(f"{stage}: {steps} steps of the tiny model on {train_dir} -> {tc.run.output}")
        train(TrainConfig.model_validate(tc.model_dump()))
        prev = str(root / stage / "hf")
