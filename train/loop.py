"""The one training loop of pretraining, SFT and RL (RLCS): what changes between them is a pluggable `Step`.

The loop owns what every kind of training shares: the learning rate actually used, gradient clipping, the optimiser
and schedule, the step counter, metrics (console, JSONL, TensorBoard), checkpoints with the step's own resumable
state (the data position of the supervised loader, the RL curriculum sampler), resume, and a wall-time budget. A
`Step` owns the rest: where its samples come from, how it turns them into gradients, and what it measures.

    step = SupervisedStep(...)          # train.trainer: pretrain and SFT
    step = RLStep(...)                  # train.rlcs.loop: GRPO rollouts on a curriculum
    run_loop(step, model, optimizer, scheduler, ckpt, logger, LoopConfig(...))
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from typing import Protocol

import torch

from train.checkpoint import Checkpointer
from train.dist import DistInfo
from train.metrics import MetricsLogger


class Step(Protocol):
    """One kind of training, plugged into `run_loop`."""

    def backward(self, step: int) -> dict:
        """Accumulates the gradients of optimiser step `step + 1` (or none) and returns its metrics so far."""

    def finish(self, step: int, metrics: dict, seconds: float, last: bool) -> dict:
        """After the update of step `step` (1-based, `seconds` its time so far): metrics that need the new weights
        or the step's time (throughput, evaluation). Returns more metrics."""

    def state_dict(self) -> dict:
        """This step's resumable state (saved in every checkpoint beside the model and optimiser; whoever builds
        the step restores it from the extra state `resume` returns)."""

    def log_line(self, metrics: dict) -> str | None:
        """Optional: a line for the console after each step, or None."""

    def stop_reason(self) -> str | None:
        """Optional: why the run should stop before `steps` (a budget of the step's own, e.g. rollouts), or None."""


@dataclass
class LoopConfig:
    steps: int
    grad_clip: float = 0.0  # <= 0: no clipping
    ckpt_every: int = 0
    max_minutes: float | None = None  # stop (and checkpoint) once this much wall time has gone


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads): a run's cost on a shared machine, where
    wall time depends on the other jobs."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def resume(ckpt: Checkpointer, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler) -> dict | None:
    """Loads the latest complete checkpoint into model, optimiser and schedule; returns its extra state (with
    `step`, and `checkpoint`: the checkpoint's step number), or None for a fresh run."""
    if (latest := ckpt.latest()) is None:
        return None
    extra = ckpt.load(latest, model, optimizer)
    scheduler.load_state_dict(extra["scheduler"])
    extra["checkpoint"] = latest
    return extra


def run_loop(impl: Step, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
             ckpt: Checkpointer, logger: MetricsLogger, cfg: LoopConfig, dist_info: DistInfo,
             start_step: int = 0, log=None, resumed: dict | None = None) -> dict:
    """Runs optimiser steps from `start_step` to `cfg.steps` (or until a budget is spent); returns the last
    metrics. `resumed`: the extra state `resume` returned, whose wall and CPU time the run's clocks continue."""
    clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
    step, m = start_step, {}
    # wall and CPU time of the run so far, earlier sessions included (saved in every checkpoint)
    t_start = time.perf_counter() - (resumed or {}).get("wall_s", 0.0)
    cpu_start = cpu_seconds() - (resumed or {}).get("cpu_s", 0.0)
    stop = getattr(impl, "stop_reason", lambda: None)
    line_of = getattr(impl, "log_line", lambda m: None)
    while step < cfg.steps and stop() is None:
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]  # the rate this step uses (the scheduler moves on below)
        m = impl.backward(step)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)  # 0 when the step made no gradient
        optimizer.step()  # without gradients (nothing to learn from this step) AdamW leaves the weights as they are
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if dist_info.device.type == "cuda":
            torch.cuda.synchronize()
        spent = {"elapsed_min": (time.perf_counter() - t_start) / 60, "cpu_min": (cpu_seconds() - cpu_start) / 60}
        out_of_time = cfg.max_minutes is not None and spent["elapsed_min"] >= cfg.max_minutes
        why = (f"the wall budget of {cfg.max_minutes} min is spent" if out_of_time else stop())
        last = step == cfg.steps or why is not None
        m = {"step": step, **m, "lr": lr,
             "grad_norm": float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm), **spent}
        m.update(impl.finish(step, m, time.perf_counter() - t0, last))
        logger.log(m)
        if log is not None and (line := line_of(m)):
            log(line)
        if last or (cfg.ckpt_every and step % cfg.ckpt_every == 0):
            ckpt.save(step, model, optimizer, {"step": step, "world": dist_info.world, "scheduler": scheduler.state_dict(),
                                               "wall_s": time.perf_counter() - t_start,
                                               "cpu_s": cpu_seconds() - cpu_start, **impl.state_dict()})
        if why is not None:
            if log is not None:
                log(f"stopping at step {step}: {why}")
            break
    return m
