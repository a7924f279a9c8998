"""Training configuration: one pydantic object (model, data, optimiser, run) passed to every component."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, Field

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "train"
M = TypeVar("M", bound=BaseModel)


def load_yaml(cls: type[M], path: str | Path, config_dir: Path) -> M:
    """A config model from a YAML file, or from `config_dir/NAME.yaml` when `path` is a bare recipe name."""
    path = Path(path)
    if not path.exists() and (config_dir / f"{path}.yaml").exists():
        path = config_dir / f"{path}.yaml"
    return cls.model_validate(yaml.safe_load(path.read_text()) or {})


class ShardSource(BaseModel):
    """One shard set in the mix (captions, OCR, grounding, GUI, CoT ...)."""

    name: str = Field(description="Short name used in logs and counters.")
    urls: str = Field(description="Shard glob or brace pattern, e.g. out/ocr/*.tar or s3-style {000..099}.")
    weight: float = Field(1.0, gt=0, description="Relative sampling weight in the mix.")


class DataConfig(BaseModel):
    """How shards become packed batches."""

    sources: list[ShardSource] = Field(default_factory=list, description="Weighted shard sets.")
    seq_len: int = Field(1024, description="Tokens per packed row.")
    rows_per_batch: int = Field(4, description="Packed rows per micro-batch.")
    open_shards: int = Field(8, ge=1, description="Shards of each source read at once, samples interleaved by a "
                             "seeded RNG (the shuffle; resumable by seeking, unlike a sample buffer).")
    samples_per_epoch: int | None = Field(
        None, description="Raw samples per epoch over all ranks and workers; None = one endless resampled stream."
    )
    streams: int | None = Field(
        None, description="Logical data streams over all ranks (the unit of data order, splitting and resume); "
        "fixed when a run starts and kept in its checkpoints; a multiple of the world size. None: world size x "
        "max(1, num_workers). The same streams give the same data on 1 rank with grad_accum=a*n or n ranks with a.",
    )
    pack_buffer: int = Field(64, ge=1, description="Encoded samples (at least; plus a batch and a row of tokens) "
                             "held for best-fit packing; saved in checkpoints.")
    over_long: Literal["truncate", "drop"] = Field(
        "truncate", description="A sample longer than seq_len: cut at seq_len (never inside an image; counted as "
        "`truncated`) or skip it (counted as `too_long`).")
    num_workers: int = Field(0, description="DataLoader worker processes per rank (lowered to divide the rank's streams).")
    prefetch_factor: int = Field(4, description="Batches prefetched per worker.")
    target: Literal["caption", "messages", "auto"] | None = Field(
        None,
        description="What the loss is on: `caption` (the .txt; messages if none), `messages` (every assistant "
        "turn; samples without messages are skipped) or `auto` (messages if present, else caption). "
        "None: caption for pretrain, messages for sft.",
    )


class OptimConfig(BaseModel):
    """AdamW with linear warmup and cosine decay."""

    lr: float = Field(1e-3, description="Peak learning rate.")
    min_lr_ratio: float = Field(0.1, description="Final learning rate as a share of the peak.")
    warmup_steps: int = Field(20, description="Linear warmup steps.")
    weight_decay: float = Field(0.01, description="AdamW decoupled weight decay (not on norms/biases).")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas.")
    grad_clip: float = Field(1.0, description="Max global gradient norm (0 disables).")
    grad_accum: int = Field(1, description="Micro-batches per optimiser step.")


class RunConfig(BaseModel):
    """Where, how long, how often."""

    output: Path = Field(Path("out/train"), description="Run folder: metrics.jsonl, checkpoints/, tb/, hf/.")
    steps: int = Field(100, description="Optimiser steps to reach (a resumed run continues to this step).")
    seed: int = Field(0, description="Seed for data order, init and dropout.")
    log_every: int = Field(1, description="Steps between console lines (metrics.jsonl gets every step).")
    ckpt_every: int = Field(0, description="Steps between checkpoints (0: only at the end).")
    keep_checkpoints: int = Field(2, description="Most recent checkpoints kept.")
    save_hf: bool = Field(True, description="Write the final model in Hugging Face format to OUTPUT/hf.")
    tensorboard: bool = Field(True, description="Also write TensorBoard scalars when tensorboard is installed.")
    progress: bool = Field(True, description="Show a rich progress bar.")
    bf16: bool = Field(True, description="bf16 autocast on GPU (CPU runs stay fp32).")
    fsdp: bool = Field(True, description="Shard with FSDP2 fully_shard when world size > 1; false: DDP (replicas).")
    attention: Literal["auto", "sdpa", "flash", "flex"] = Field(
        "auto", description="Per-sample attention of packed rows: sdpa (one causal SDPA call per sample), flash "
        "(flash-attn varlen; needs flash-attn and a GPU), flex (flex_attention block mask; compiled on GPUs). "
        "auto: flash when installed on a GPU, else sdpa.")
    activation_checkpointing: bool = Field(False, description="Recompute decoder/ViT blocks in backward.")
    compile: bool = Field(False, description="torch.compile each block (GPU).")
    cpu_threads: int | None = Field(
        None, description="torch intra-op threads on CPU; None = cores minus DataLoader workers (oversubscribed "
        "OpenMP threads make small CPU models many times slower)."
    )


class EvalConfig(BaseModel):
    """Periodic evaluation during a run: validation loss on held-out shards and a generation eval hook."""

    every: int = Field(0, ge=0, description="Steps between evaluations (0: none); also run at the last step.")
    sources: list[ShardSource] = Field(default_factory=list, description="Held-out shard sets: loss per set.")
    batches: int = Field(4, ge=1, description="Micro-batches of each held-out set per rank (the same ones each time).")
    generate: str | None = Field(None, description="Held-out shard glob for the generation hook: greedy answers, "
                                 "exact match of the boxed answer (runs on single-rank runs; logged as val_accuracy).")
    generate_limit: int = Field(16, ge=1, description="Prompts per generation eval.")
    max_new_tokens: int = Field(96, ge=1, description="Generation budget per answer.")


class TrainConfig(BaseModel):
    """A pretraining or SFT run."""

    stage: Literal["pretrain", "sft"] = Field("pretrain", description="Which stage (sets defaults only).")
    model: str = Field("tiny", description="Preset name (tiny, small, glm-4.1v-9b), preset YAML, or a saved model folder.")
    tokenizer_samples: int = Field(5000, description="Samples read from the shards to train a new BPE tokenizer.")
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        return load_yaml(cls, path, CONFIG_DIR)
