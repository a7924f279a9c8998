"""Step metrics to metrics.jsonl, TensorBoard and the console (rich progress bar); MFU on GPUs."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

# Dense bf16 peak FLOP/s per GPU (no sparsity), for MFU.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "A800": 312e12,
             "L40S": 362e12, "L4": 121e12, "B200": 2250e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """6N for the matmuls plus the attention scores (forward + backward), per trained token."""
    text = model.config.text_config
    n = sum(p.numel() for p in model.parameters())
    return 6 * n + 12 * text.num_hidden_layers * text.hidden_size * seq_len


class MetricsLogger:
    """One JSON object per step; the console line every `log_every` steps."""

    def __init__(self, output: Path, total_steps: int, start_step: int, enabled: bool, tensorboard: bool,
                 progress: bool, log_every: int) -> None:
        self.enabled, self.log_every = enabled, log_every
        self.console = Console(stderr=True)
        self.file = None
        self.tb = None
        self.progress = None
        if not enabled:
            return
        output.mkdir(parents=True, exist_ok=True)
        self.file = (output / "metrics.jsonl").open("a")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(output / "tb"))
            except ImportError:
                self.console.print("[yellow]tensorboard is not installed: metrics go to metrics.jsonl only")
        if progress:
            self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=self.console)
            self.task = self.progress.add_task("train", total=total_steps, completed=start_step, info="")
            self.progress.start()

    def log(self, m: dict) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(m) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in m.items():
                if isinstance(v, int | float) and k != "step":
                    self.tb.add_scalar(f"train/{k}", v, m["step"])
        info = f"loss {m['loss']:.4f} lr {m['lr']:.2e} tok/s {m['tokens_per_s']:.0f}"
        if m.get("mfu") is not None:
            info += f" mfu {m['mfu']:.1%}"
        if self.progress is not None:
            self.progress.update(self.task, completed=m["step"], info=info)
        elif m["step"] % self.log_every == 0:
            self.console.print(f"step {m['step']} {info}")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()
