"""Pretraining and SFT: the model, data and checkpoints set up for `train.loop.run_loop` with a `SupervisedStep`."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from model.attention import use_default_attention
from model.build import num_parameters, save
from train.checkpoint import Checkpointer
from train.config import TrainConfig
from train.data.encode import IGNORE
from train.data.loader import BatchIterator, DataState, to_device
from train.dist import DistInfo, all_reduce_sum, barrier, cpu_threads, init_distributed
from train.loop import LoopConfig, resume, run_loop
from train.loss import batch_token_losses, vision_keepalive
from train.metrics import FlopModel, MetricsLogger, peak_flops
from train.optim import build_optimizer, build_scheduler
from train.parallelize import unwrap
from train.setup_model import prepare_model
from train.validate import generation_accuracy, validation_losses


def resolve(cfg: TrainConfig) -> TrainConfig:
    """Fill stage-dependent defaults."""
    cfg = cfg.model_copy(deep=True)
    if cfg.data.target is None:
        cfg.data.target = "caption" if cfg.stage == "pretrain" else "messages"
    return cfg


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: TrainConfig, dist_info: DistInfo | None = None) -> dict:
    """Runs (or resumes) until cfg.run.steps; returns the last step's metrics."""
    cfg = resolve(cfg)
    dist_info = dist_info or init_distributed()
    out, run = cfg.run.output, cfg.run
    out.mkdir(parents=True, exist_ok=True)
    if dist_info.is_main:
        (out / "config.json").write_text(cfg.model_dump_json(indent=1))
    if dist_info.device.type == "cpu":
        torch.set_num_threads(cpu_threads(run.cpu_threads, cfg.data.num_workers))
    seed_all(run.seed)
    # under FSDP2 every rank builds on the meta device and materialises its own shards only
    model, processor, backend = prepare_model(cfg, dist_info)
    inner = unwrap(model)
    model.train()
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, run.steps, cfg.optim)
    ckpt = Checkpointer(out / "checkpoints", dist_info, run.keep_checkpoints)

    step, data_state = 0, None
    if (extra := resume(ckpt, model, optimizer, scheduler)) is not None:
        step = extra["step"]
        data_state = DataState.resume(ckpt.data_states(extra["checkpoint"]), dist_info.rank,
                                      dist_info.world, extra.get("world", dist_info.world))
    else:
        seed_all(run.seed + dist_info.rank)
    batches = BatchIterator(cfg.data, processor, inner.config, run.seed, dist_info.rank, dist_info.world, data_state)

    logger = MetricsLogger(out, run.steps, step, dist_info.is_main, run.tensorboard, run.progress, run.log_every)
    if dist_info.is_main:
        sharded = dist_info.world > 1 and run.fsdp
        logger.console.print(f"[bold]{cfg.stage}[/] {cfg.model}: {num_parameters(inner) / 1e6:.2f}M parameters, "
                             f"step {step} -> {run.steps}, world {dist_info.world} "
                             f"({'FSDP2' if sharded else 'DDP' if dist_info.world > 1 else 'single'}), "
                             f"{batches.state.streams} data streams, device {dist_info.device}, "
                             f"{torch.get_num_threads()} threads")
    impl = SupervisedStep(cfg, model, inner, processor, batches, dist_info, backend)
    loop = LoopConfig(steps=run.steps, grad_clip=cfg.optim.grad_clip, ckpt_every=run.ckpt_every)
    m = run_loop(impl, model, optimizer, scheduler, ckpt, logger, loop, dist_info, start_step=step, resumed=extra)
    logger.close()
    if run.save_hf:
        save_hf(model, processor, cfg, dist_info)
    return m


class SupervisedStep:
    """Pretraining and SFT as a `train.loop.Step`: packed micro-batches from the shard loader, token cross-entropy
    averaged over every loss token of the global batch, metrics per source; its resumable state is the loader's
    position."""

    def __init__(self, cfg: TrainConfig, model, inner, processor, batches: BatchIterator, dist_info: DistInfo,
                 backend: str) -> None:
        self.cfg, self.model, self.inner, self.processor = cfg, model, inner, processor
        self.batches, self.dist, self.backend = batches, dist_info, backend
        self.use_bf16 = dist_info.device.type == "cuda" and cfg.run.bf16
        self.sharded = dist_info.world > 1 and cfg.run.fsdp
        self.peak = peak_flops(dist_info.device)
        self.flop_model = FlopModel.of(inner)
        self.micro: list[dict] = []

    def backward(self, step: int) -> dict:
        device = self.dist.device
        micro = self.micro = [to_device(next(self.batches), device) for _ in range(self.cfg.optim.grad_accum)]
        n_loss = all_reduce_sum(torch.tensor(float(sum(int((b["labels"] != IGNORE).sum()) for b in micro)),
                                             device=device))
        loss_sum = torch.zeros((), device=device)
        by_source: dict[str, list[float]] = {}
        for b in micro:
            ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.use_bf16 else contextlib.nullcontext()
            with ctx:
                tok = batch_token_losses(self.model, b)
                extra_term = vision_keepalive(self.inner, b) if self.sharded else 0.0
            # gradients are averaged over ranks by FSDP/DDP, so scale to a global token mean
            ((tok.sum() + extra_term) * self.dist.world / n_loss.clamp(min=1)).backward()
            loss_sum += tok.detach().sum()
            _add_source_losses(by_source, tok.detach(), b)
        loss = all_reduce_sum(loss_sum) / n_loss.clamp(min=1)
        by_source = merge_sources(by_source)
        return {"loss": float(loss), "loss_tokens": int(n_loss),
                "loss_by_source": {k: v[0] / max(1.0, v[1]) for k, v in by_source.items()},
                "loss_tokens_by_source": {k: int(v[1]) for k, v in by_source.items()}}

    def finish(self, step: int, m: dict, seconds: float, last: bool) -> dict:
        micro, device = self.micro, self.dist.device
        counts = all_reduce_sum(torch.tensor([float(sum(b["real_tokens"] for b in micro)),
                                              float(sum(b["input_ids"].numel() for b in micro)),
                                              float(sum(b["num_samples"] for b in micro)),
                                              sum(self.flop_model.batch_flops(b) for b in micro)],
                                             dtype=torch.float64, device=device))
        real, total, samples = (int(x) for x in counts[:3].tolist())
        flops = float(counts[3])
        state = self.batches.state
        out = {
            "tokens": real,
            "samples": samples,
            "packing_efficiency": real / total,
            "tokens_per_s": total / seconds,
            "samples_per_s": samples / seconds,
            "step_time_s": seconds,
            "skipped": sum(state.skipped().values()),
            "truncated": state.notes().get("truncated", 0),
            "tflops_per_s": flops / seconds / 1e12,
            "mfu": (flops / seconds / (self.peak * self.dist.world)) if self.peak else None,
        }
        cfg = self.cfg
        if cfg.eval.every and (step % cfg.eval.every == 0 or last):
            if cfg.eval.sources:
                out["val_loss"] = validation_losses(self.model, self.inner, self.processor, cfg, self.dist)
            if cfg.eval.generate and self.dist.world == 1:
                out.update(generation_accuracy(self.inner, self.processor, cfg, self.backend))
        return out

    def state_dict(self) -> dict:
        return {"data": self.batches.state.state_dict()}  # restored by DataState.resume before the loader is built


def _add_source_losses(acc: dict[str, list[float]], tok: torch.Tensor, batch: dict) -> None:
    """Sum of token losses and loss-token count per source (the shard set a sample came from)."""
    idx = batch["sample_index"][batch["labels"] != IGNORE]
    n = batch["num_samples"]
    sums = torch.zeros(n, device=tok.device).index_add_(0, idx, tok.float()).tolist()
    counts = torch.bincount(idx, minlength=n).tolist()
    for name, s, c in zip(batch["sample_sources"] or [""] * n, sums, counts, strict=True):
        a = acc.setdefault(name or "?", [0.0, 0.0])
        a[0] += s
        a[1] += c


def merge_sources(acc: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per-source sums over all ranks (ranks may read different sources in a step)."""
    if not dist.is_initialized():
        return acc
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, acc)
    out: dict[str, list[float]] = {}
    for d in gathered:
        for k, (s, c) in d.items():
            o = out.setdefault(k, [0.0, 0.0])
            o[0] += s
            o[1] += c
    return out


def save_hf(model: torch.nn.Module, processor, cfg: TrainConfig, dist_info: DistInfo) -> None:
    """Gather a full state dict on rank 0 and write Hugging Face format to OUTPUT/hf."""
    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist_info.is_main:
        path = cfg.run.output / "hf"
        inner = unwrap(model)
        use_default_attention(inner)  # the export names transformers' own attention, not the packed one
        save(inner, processor, path, dtype=torch.bfloat16, state_dict=sd)
    barrier()
