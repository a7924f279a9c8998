"""Next-token loss on packed batches (labels pre-shifted per sample), computed at the loss positions only, and
its per-sample breakdown."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from train.data.encode import IGNORE

MODEL_KEYS = ("input_ids", "position_ids", "pixel_values", "image_grid_thw", "mm_token_type_ids")


def loss_logits(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """([N, V] logits, [N] targets) at the N positions that carry a label.

    The decoder attends per packed sample (see model/attention.py: the text position ids delimit samples);
    the vocabulary projection only runs where a label is, instead of on all B x L positions.
    """
    keep = batch["labels"] != IGNORE
    kwargs = {k: batch[k] for k in MODEL_KEYS if batch.get(k) is not None}
    if "image_grid_thw" not in kwargs:
        kwargs.pop("mm_token_type_ids", None)
    logits = model(**kwargs, logits_to_keep=keep, use_cache=False).logits
    return logits.reshape(-1, logits.shape[-1]), batch["labels"][keep]


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[N] cross-entropy in fp32."""
    return F.cross_entropy(logits.float(), targets, reduction="none")


def batch_token_losses(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """[N] fp32 loss of every loss position of a packed batch, in row-major order."""
    return token_losses(*loss_logits(model, batch))


def per_sample_losses(tok: torch.Tensor, batch: dict) -> torch.Tensor:
    """Mean loss of each packed sample over its own loss tokens (`tok` from batch_token_losses)."""
    idx = batch["sample_index"][batch["labels"] != IGNORE].to(tok.device)
    n = batch["num_samples"]
    sums = torch.zeros(n, dtype=tok.dtype, device=tok.device).index_add_(0, idx, tok)
    counts = torch.zeros(n, dtype=tok.dtype, device=tok.device).index_add_(0, idx, torch.ones_like(tok))
    return sums / counts.clamp(min=1)


def vision_keepalive(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """0 x the ViT's output on a 1-token dummy image, for a micro-batch without images when several ranks train
    with FSDP: every rank then has gradients (zeros here) for the same ViT parameters, so the root unit's
    reduce-scatter matches. Called after the model's forward, while the root unit (which holds the ViT) is
    still gathered."""
    if batch.get("pixel_values") is not None:
        return torch.zeros((), device=batch["input_ids"].device)
    visual = model.model.visual
    cfg = visual.config
    m = cfg.spatial_merge_size
    grid = torch.tensor([[1, m, m]], device=batch["input_ids"].device)
    dim = cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size ** 2
    pixels = torch.zeros(m * m, dim, device=grid.device, dtype=visual.patch_embed.proj.weight.dtype)
    out = visual(pixels, grid_thw=grid)
    hidden = out.pooler_output if hasattr(out, "pooler_output") else out
    hidden = torch.cat(list(hidden)) if isinstance(hidden, list | tuple) else hidden
    return hidden.float().sum() * 0.0
