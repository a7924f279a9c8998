"""The shared training loop with a step of a kind it was not written for: the seam RLCS, pretraining and SFT use."""

from __future__ import annotations

import json

import torch

from train.checkpoint import Checkpointer
from train.config import OptimConfig
from train.dist import DistInfo
from train.loop import LoopConfig, resume, run_loop
from train.metrics import MetricsLogger
from train.optim import build_optimizer, build_scheduler

CPU = DistInfo(rank=0, world=1, local_rank=0, device=torch.device("cpu"))


class RegressionStep:
    """Fits y = 3x on batches drawn from its own generator; its resumable state is that generator's state and the
    number of samples it has seen (like a data sampler), and it skips learning on every third step."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.gen = torch.Generator().manual_seed(0)
        self.seen = 0

    def backward(self, step: int) -> dict:
        x = torch.randn(16, 1, generator=self.gen)
        self.seen += 16
        if step % 3 == 2:
            return {"loss": None, "seen": self.seen}  # nothing to learn from: no gradient this step
        loss = ((self.model(x) - 3 * x) ** 2).mean()
        loss.backward()
        return {"loss": float(loss.detach()), "seen": self.seen}

    def finish(self, step: int, m: dict, seconds: float, last: bool) -> dict:
        return {"weight": float(self.model.weight.detach().reshape(-1)[0]), "last": last}

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.seen = state["seen"]

    def log_line(self, m: dict) -> str | None:
        return f"step {m['step']} seen {m['seen']}"


def run(out, steps: int, lines: list[str]) -> list[dict]:
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1, bias=False)
    optim_cfg = OptimConfig(lr=0.1, warmup_steps=2, min_lr_ratio=0.1, weight_decay=0.0, grad_clip=0.5)
    optimizer = build_optimizer(model, optim_cfg)
    total = 9
    scheduler = build_scheduler(optimizer, total, optim_cfg)
    ckpt = Checkpointer(out / "checkpoints", CPU, keep=1)
    impl = RegressionStep(model)
    start = 0
    if (extra := resume(ckpt, model, optimizer, scheduler)) is not None:
        impl.load_state_dict(extra)
        start = extra["step"]
    logger = MetricsLogger(out, total, start, True, False, False, 1)
    run_loop(impl, model, optimizer, scheduler, ckpt, logger,
             LoopConfig(steps=steps, grad_clip=optim_cfg.grad_clip, ckpt_every=0), CPU, start_step=start,
             log=lines.append)
    logger.close()
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_plugged_step_learns_resumes_exactly_and_logs_the_rate_it_used(tmp_path):
    lines: list[str] = []
    whole = run(tmp_path / "whole", 9, lines)
    assert [m["step"] for m in whole] == list(range(1, 10))
    assert lines[0] == "step 1 seen 16" and len(lines) == 9
    assert abs(whole[-1]["weight"] - 3) < abs(whole[0]["weight"] - 3)  # it learns
    # the logged lr is the one the step used: warm-up 0.05, 0.1, then cosine down
    assert [round(m["lr"], 6) for m in whole[:2]] == [0.05, 0.1]
    # a step without gradients leaves the weights as they are and reports a zero gradient norm
    assert whole[2]["loss"] is None and whole[2]["grad_norm"] == 0.0 and whole[2]["weight"] == whole[1]["weight"]
    assert all(m["grad_norm"] > 0 for m in whole if m["loss"] is not None)
    # stop at step 5 (checkpointed as the last step of that run), resume to 9: the same curve, the step's own
    # state (its sample generator) restored
    part = tmp_path / "part"
    run(part, 5, [])
    resumed = run(part, 9, [])
    keys = ("step", "loss", "lr", "grad_norm", "seen", "weight")
    assert [[m[k] for k in keys] for m in resumed] == [[m[k] for k in keys] for m in whole]


def run_budgeted(tmp_path, step_cls, loop: LoopConfig) -> tuple[dict, Checkpointer, list[str]]:
    """A fresh regression run of up to 100 steps under `loop`'s budgets: (last metrics, checkpoints, log lines)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1, bias=False)
    optim_cfg = OptimConfig(lr=0.1, warmup_steps=0, weight_decay=0.0)
    optimizer = build_optimizer(model, optim_cfg)
    scheduler = build_scheduler(optimizer, 100, optim_cfg)
    ckpt = Checkpointer(tmp_path / "checkpoints", CPU)
    logger = MetricsLogger(tmp_path, 100, 0, True, False, False, 1)
    lines: list[str] = []
    m = run_loop(step_cls(model), model, optimizer, scheduler, ckpt, logger, loop, CPU, log=lines.append)
    logger.close()
    return m, ckpt, lines


def test_the_wall_budget_stops_and_checkpoints(tmp_path):
    m, ckpt, lines = run_budgeted(tmp_path, RegressionStep, LoopConfig(steps=100, max_minutes=0.0))
    assert m["step"] == 1 and m["last"] is True
    assert ckpt.latest() == 1 and "wall budget" in lines[-1]


class BudgetedStep(RegressionStep):
    """Stops the run once it has seen 40 samples (a budget of its own, like RLCS's rollout budget)."""

    def stop_reason(self) -> str | None:
        return "40 samples seen" if self.seen >= 40 else None


def test_a_step_budget_stops_the_run_and_the_clocks_are_logged(tmp_path):
    m, ckpt, lines = run_budgeted(tmp_path, BudgetedStep, LoopConfig(steps=100))
    assert m["step"] == 3 and m["seen"] == 48 and m["last"] is True  # 16 + 16 + 16 >= 40
    assert ckpt.latest() == 3 and lines[-1] == "stopping at step 3: 40 samples seen"
    assert m["elapsed_min"] >= 0 and m["cpu_min"] > 0
