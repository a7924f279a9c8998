"""Next-token loss on packed batches (labels pre-shifted per sample) and its per-sample breakdown."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from train.data.encode import IGNORE

MODEL_KEYS = ("input_ids", "position_ids", "pixel_values", "image_grid_thw")


def forward_logits(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """[B, L, V] logits of a packed batch (no attention mask: the text positions delimit samples)."""
    kwargs = {k: batch[k] for k in MODEL_KEYS if batch.get(k) is not None}
    return model(**kwargs, use_cache=False).logits


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[B, L] cross-entropy in fp32, 0 where the label is IGNORE."""
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE,
                           reduction="none").view(labels.shape)


def per_sample_losses(tok: torch.Tensor, labels: torch.Tensor, sample_index: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Mean loss of each packed sample over its own loss tokens."""
    mask = (labels != IGNORE) & (sample_index >= 0)
    idx = sample_index[mask]
    sums = torch.zeros(num_samples, dtype=tok.dtype, device=tok.device).index_add_(0, idx, tok[mask])
    counts = torch.zeros(num_samples, dtype=tok.dtype, device=tok.device).index_add_(0, idx, torch.ones_like(tok[mask]))
    return sums / counts.clamp(min=1)
