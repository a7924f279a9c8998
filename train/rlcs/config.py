"""One pydantic object for an RLCS run (configs/rlcs/*.yaml): start, GRPO, sampler, dynamic sampling, rollouts,
rewards, optimiser, evaluation and run."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from train.config import OptimConfig, load_yaml
from train.rlcs.dynamic import DynamicConfig
from train.rlcs.rollout import RolloutConfig
from train.rlcs.sampler import SamplerConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "rlcs"


class ToyStart(BaseModel):
    """What to build when the start is missing: the toy world's shards, its SFT checkpoint and tiered prompts."""

    train_samples: int = Field(30000, description="Toy train-split samples (SFT data and the RL prompt pool).")
    heldout_samples: int = Field(400, description="Toy held-out-split samples.")
    difficulty: int = Field(1, ge=1, le=3, description="Toy difficulty.")
    pretrain_steps: int = Field(120, description="Caption pretraining steps of the tiny model.")
    sft_steps: int = Field(650, description="SFT steps after pretraining.")
    rl_prompts: int = Field(512, description="Prompts graded into the RL prompt set.")
    grade_k: int = Field(8, description="Rollouts per prompt when grading (pass@k -> tier).")
    train_seed: int = Field(0, description="Seed of the train split.")
    heldout_seed: int = Field(977, description="Seed of the held-out split.")


class StartConfig(BaseModel):
    model: str | None = Field(None, description="Starting policy (saved model folder). None or missing: built "
                              "from the toy world into OUTPUT/start (pretrain + SFT).")
    prompts: str | None = Field(None, description="RL prompt set Parquet (distillation or `train grade`). None or "
                                "missing: toy prompts graded with the start model into OUTPUT/start.")
    heldout: str | None = Field(None, description="Held-out shard glob for accuracy. None or missing: the toy "
                                "world's held-out split written into OUTPUT/start.")
    toy: ToyStart = Field(default_factory=ToyStart)


class GRPOConfig(BaseModel):
    group_size: int = Field(8, ge=2, description="Rollouts per prompt (G).")
    batch_prompts: int = Field(8, ge=1, description="Groups learned from per iteration (the fixed batch).")
    eps_low: float = Field(0.2, description="Lower clip of the ratio (1 - eps_low).")
    eps_high: float = Field(0.28, description="Upper clip of the ratio (1 + eps_high): clip-higher.")
    kl_coef: float = Field(0.0, description="KL penalty (the report uses none; only 0 is supported).")
    entropy_coef: float = Field(0.0, description="Entropy bonus (the report uses none; only 0 is supported).")
    scale_advantages: bool = Field(True, description="Divide group-centred rewards by the group std.")
    pass_score: float = Field(1.0, description="A rollout passes (for pass rates and tiers) at this reward.")
    micro_batch: int = Field(32, ge=1, description="Rollouts per forward/backward.")

    @model_validator(mode="after")
    def _no_extra_terms(self) -> GRPOConfig:
        if self.kl_coef or self.entropy_coef:
            raise ValueError("grpo.kl_coef and grpo.entropy_coef must be 0: RLCS has no KL and no entropy term")
        return self


class RewardConfig(BaseModel):
    workers: int = Field(1, ge=1, description="Verifier worker processes (the timeout pool).")
    timeout_s: float = Field(5.0, gt=0, description="Hard timeout per scoring chunk/item.")
    configs: dict[str, dict] = Field(default_factory=dict, description="Verifier options by domain.")


class EvalConfig(BaseModel):
    every: int = Field(10, ge=0, description="Iterations between held-out evaluations (0: only at the end).")
    limit: int = Field(400, description="Held-out samples.")
    max_new_tokens: int = Field(96, description="Greedy budget per held-out answer.")
    batch_size: int = Field(64, description="Prompts per generate call.")
    at_start: bool = Field(True, description="Evaluate the starting policy (step 0 in eval.jsonl).")


class RunConfig(BaseModel):
    output: Path = Field(Path("out/rlcs"), description="Run folder: metrics.jsonl, eval.jsonl, checkpoints/, hf/.")
    steps: int = Field(100, description="Iterations to reach (a resumed run continues to this one).")
    seed: int = Field(0, description="Seed of sampling, rollouts and init.")
    ckpt_every: int = Field(10, ge=0, description="Iterations between checkpoints (0: only at the end).")
    keep_checkpoints: int = Field(2)
    save_hf: bool = Field(True, description="Write the final policy to OUTPUT/hf.")
    cpu_threads: int | None = Field(None, description="torch threads on CPU (None: all cores).")
    attention: str = Field("sdpa", description="Varlen attention backend of the learning pass (sdpa, flex, flash).")
    tensorboard: bool = Field(False)
    progress: bool = Field(False)
    max_minutes: float | None = Field(None, description="Stop (with a checkpoint) after this much wall time.")
    max_rollouts: int | None = Field(None, description="Stop (with a checkpoint) once this many rollouts were "
                                     "generated (oversampled ones included): equal-compute comparisons.")


class RLCSConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: StartConfig = Field(default_factory=StartConfig)
    grpo: GRPOConfig = Field(default_factory=GRPOConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    dynamic: DynamicConfig = Field(default_factory=DynamicConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig(lr=1e-4, warmup_steps=0, min_lr_ratio=1.0,
                                                                   weight_decay=0.0))
    eval: EvalConfig = Field(default_factory=EvalConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @classmethod
    def from_yaml(cls, path: str | Path) -> RLCSConfig:
        return load_yaml(cls, path, CONFIG_DIR)
