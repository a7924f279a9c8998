"""The training loop shared by pretraining and SFT: accumulation, clipping, schedule, checkpoints, metrics."""

from __future__ import annotations

import contextlib
import random
import time

import numpy as np
import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from model.build import num_parameters
from train.checkpoint import Checkpointer
from train.config import TrainConfig
from train.data.loader import BatchIterator, DataState, to_device
from train.dist import DistInfo, all_reduce_sum, barrier, cpu_threads, init_distributed
from train.loss import forward_logits, token_losses
from train.metrics import MetricsLogger, flops_per_token, peak_flops
from train.optim import build_optimizer, build_scheduler
from train.parallelize import parallelize
from train.setup_model import setup_model


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
    model, processor = setup_model(cfg, dist_info)
    model.to(dist_info.device)
    model = parallelize(model, run, dist_info)
    model.train()
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, run.steps, cfg.optim)
    ckpt = Checkpointer(out / "checkpoints", dist_info, run.keep_checkpoints)

    step, data_state = 0, None
    if (latest := ckpt.latest()) is not None:
        extra = ckpt.load(latest, model, optimizer)
        scheduler.load_state_dict(extra["scheduler"])
        step, data_state = extra["step"], DataState.from_state_dict(extra["data"])
    else:
        seed_all(run.seed + dist_info.rank)
    batches = BatchIterator(cfg.data, processor, model.config, run.seed, dist_info.rank, dist_info.world, data_state)

    use_bf16 = dist_info.device.type == "cuda" and run.bf16
    peak = peak_flops(dist_info.device)
    fpt = flops_per_token(model, cfg.data.seq_len)
    logger = MetricsLogger(out, run.steps, step, dist_info.is_main, run.tensorboard, run.progress, run.log_every)
    if dist_info.is_main:
        logger.console.print(f"[bold]{cfg.stage}[/] {cfg.model}: {num_parameters(model) / 1e6:.2f}M parameters, "
                             f"step {step} -> {run.steps}, world {dist_info.world}, device {dist_info.device}, "
                             f"{torch.get_num_threads()} threads")
    m: dict = {}
    while step < run.steps:
        t0 = time.perf_counter()
        micro = [to_device(next(batches), dist_info.device) for _ in range(cfg.optim.grad_accum)]
        n_loss = all_reduce_sum(torch.tensor(float(sum(int((b["labels"] != -100).sum()) for b in micro)),
                                             device=dist_info.device))
        loss_sum = torch.zeros((), device=dist_info.device)
        for b in micro:
            ctx = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()
            with ctx:
                logits = forward_logits(model, b)
            tok = token_losses(logits, b["labels"]).sum()
            # gradients are averaged over ranks by FSDP, so scale to a global token mean
            (tok * dist_info.world / n_loss.clamp(min=1)).backward()
            loss_sum += tok.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), run_clip(cfg))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        loss = all_reduce_sum(loss_sum) / n_loss.clamp(min=1)
        if dist_info.device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        real = sum(b["real_tokens"] for b in micro) * dist_info.world
        total = sum(b["input_ids"].numel() for b in micro) * dist_info.world
        m = {
            "step": step,
            "loss": float(loss),
            "lr": scheduler.get_last_lr()[0],
            "grad_norm": float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm),
            "tokens": real,
            "loss_tokens": int(n_loss),
            "samples": sum(b["num_samples"] for b in micro) * dist_info.world,
            "packing_efficiency": real / total,
            "tokens_per_s": total / dt,
            "samples_per_s": sum(b["num_samples"] for b in micro) * dist_info.world / dt,
            "step_time_s": dt,
            "skipped": sum(batches.state.skipped.values()),
            "mfu": (fpt * total / dt / (peak * dist_info.world)) if peak else None,
        }
        logger.log(m)
        if step == run.steps or (run.ckpt_every and step % run.ckpt_every == 0):
            extra = {"step": step, "scheduler": scheduler.state_dict(), "data": batches.state.state_dict()}
            ckpt.save(step, model, optimizer, extra)
    logger.close()
    if run.save_hf:
        save_hf(model, processor, cfg, dist_info)
    return m


def run_clip(cfg: TrainConfig) -> float:
    return cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")


def save_hf(model: torch.nn.Module, processor, cfg: TrainConfig, dist_info: DistInfo) -> None:
    """Gather a full state dict on rank 0 and write Hugging Face format to OUTPUT/hf."""
    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist_info.is_main:
        path = cfg.run.output / "hf"
        model.save_pretrained(path, state_dict=sd)
        processor.save_pretrained(path)
    barrier()
