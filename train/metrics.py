"""Step metrics to metrics.jsonl, TensorBoard and the console (rich progress bar); MFU on GPUs."""

from __future__ import annotations

import json
from dataclasses import dataclass
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


@dataclass
class FlopModel:
    """What one training step costs, counted as torchtitan counts it (forward + backward = 3 x forward, a matmul
    of an m x n weight = 2mn FLOPs per row), on real tokens only (padding is free):

        FLOPs = 6 * N_dec * T + 6 * N_head * T_loss + 12 * l * d * sum_i n_i^2
              + 6 * N_vit * P + 6 * N_merge * P / m^2 + 12 * l_v * d_v * sum_j p_j^2

    N_dec: decoder parameters without the input embedding (a lookup, no FLOPs) and without the output head;
    T: real tokens (image tokens included); N_head: the output head, which only runs at the T_loss loss positions;
    l, d: decoder layers and width; n_i: the length of packed sample i (attention stays inside a sample);
    N_vit: ViT parameters that run per patch (patch embedding, blocks, norms), P: patches; N_merge: the
    patch merger and projector, which run per merged token (m = spatial merge size); l_v, d_v: ViT depth and
    width; p_j: patches of image j (the ViT attends within an image). The attention terms count QK^T and AV
    (2 matmuls x 2 FLOPs x 3 for the backward) over the full n x n square, as torchtitan does.
    """

    n_dec: int
    n_head: int
    layers: int
    width: int
    n_vit: int
    n_merge: int
    vit_layers: int
    vit_width: int
    merge: int

    @classmethod
    def of(cls, model: torch.nn.Module) -> FlopModel:
        inner = getattr(model, "module", model)
        lm, visual = inner.model.language_model, inner.model.visual

        def count(mod: torch.nn.Module) -> int:
            return sum(p.numel() for p in mod.parameters())

        merge_parts = [visual.merger, visual.downsample]
        n_merge = sum(count(m) for m in merge_parts)
        tc, vc = inner.config.text_config, inner.config.vision_config
        return cls(
            n_dec=count(lm) - count(lm.embed_tokens), n_head=count(inner.lm_head),
            layers=tc.num_hidden_layers, width=tc.num_attention_heads * (tc.hidden_size // tc.num_attention_heads),
            n_vit=count(visual) - n_merge - count(visual.embeddings), n_merge=n_merge,
            vit_layers=vc.depth, vit_width=vc.hidden_size, merge=vc.spatial_merge_size,
        )

    def step_flops(self, sample_lengths: list[int], loss_tokens: int, image_grid_thw: torch.Tensor | None) -> float:
        """FLOPs of forward + backward over one micro-batch (its packed sample lengths, loss positions, images)."""
        T = sum(sample_lengths)
        f = 6 * self.n_dec * T + 6 * self.n_head * loss_tokens + 12 * self.layers * self.width * sum(
            n * n for n in sample_lengths)
        if image_grid_thw is not None and len(image_grid_thw):
            patches = [int(t * h * w) for t, h, w in image_grid_thw.tolist()]
            P = sum(patches)
            f += 6 * self.n_vit * P + 6 * self.n_merge * P / self.merge**2
            f += 12 * self.vit_layers * self.vit_width * sum(p * p for p in patches)
        return float(f)

    def batch_flops(self, batch: dict) -> float:
        return self.step_flops(batch["sample_lengths"], int((batch["labels"] != -100).sum()), batch.get("image_grid_thw"))


# the console line of a step: the fields a step reports, of those
INFO_FIELDS = (("loss", "loss", ".4f"), ("reward_mean", "reward", ".3f"), ("lr", "lr", ".2e"),
               ("tokens_per_s", "tok/s", ".0f"), ("mfu", "mfu", ".1%"))


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
                elif isinstance(v, dict):  # per source: loss_by_source, val_loss, ...
                    for name, x in v.items():
                        if isinstance(x, int | float):
                            self.tb.add_scalar(f"train/{k}/{name}", x, m["step"])
        info = " ".join(f"{label} {m[k]:{fmt}}" for k, label, fmt in INFO_FIELDS
                        if isinstance(m.get(k), int | float))  # what this kind of step measures
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
