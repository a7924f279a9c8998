"""The RL step on the trainer's loss path: rollouts become packed samples (labels on the sampled completion
tokens only), `train.loss.loss_logits` gives the log-probabilities at those positions, and the GRPO loss is
averaged per sample."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.attention import use_varlen_attention
from train.data.encode import IGNORE, Encoded, rope_positions
from train.data.pack import collate_rows
from train.loss import loss_logits
from train.rlcs.grpo import grpo_loss
from train.rlcs.prompts import Prompt
from train.rlcs.rollout import Rollout


def encode_rollout(prompt: Prompt, rollout: Rollout, processor, config) -> Encoded:
    """prompt + completion as one sample whose labels are the tokens the policy sampled."""
    if "pixels" not in prompt.cache:
        if prompt.images:
            out = processor.image_processor(images=prompt.images, return_tensors="pt")
            prompt.cache["pixels"] = (out["pixel_values"], out["image_grid_thw"])
        else:
            prompt.cache["pixels"] = (None, None)
    pixels, grid = prompt.cache["pixels"]
    comp = torch.tensor(rollout.completion_ids, dtype=torch.long)
    ids = torch.cat([rollout.prompt_ids.long(), comp])
    labels = torch.full_like(ids, IGNORE)
    start = len(rollout.prompt_ids) - 1  # the position that predicts the first completion token
    sampled = torch.tensor(rollout.sampled_mask, dtype=torch.bool)
    labels[start:start + len(comp)] = torch.where(sampled, comp, torch.full_like(comp, IGNORE))
    mm = (ids == config.image_token_id).long()
    return Encoded(ids, labels, rope_positions(config, ids, mm, grid), mm, pixels, grid, prompt.dataset)


def token_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """([N] log-probability of each label token, [N] its sample index) of a packed batch."""
    logits, targets = loss_logits(model, batch)
    logp = -F.cross_entropy(logits.float(), targets, reduction="none")
    idx = batch["sample_index"][batch["labels"] != IGNORE]
    return logp, idx


def batches(samples: list[Encoded], micro: int, pad_id: int) -> list[tuple[list[int], dict]]:
    """(sample positions, packed batch) micro-batches; one sample per row, rows as long as the longest."""
    out = []
    for s in range(0, len(samples), micro):
        chunk = samples[s:s + micro]
        width = max(len(e) for e in chunk)
        out.append((list(range(s, s + len(chunk))), collate_rows([[e] for e in chunk], width, pad_id)))
    return out


def policy_step(model, samples: list[Encoded], advantages: list[float], *, micro: int, pad_id: int,
                eps_low: float, eps_high: float, attention: str, old_logps: list[torch.Tensor] | None = None,
                device: torch.device | None = None) -> dict:
    """Accumulates the gradient of the GRPO loss over all samples (mean over samples, each the mean over its own
    tokens). On-policy with one update per batch, old log-probs are the current ones (ratio 1)."""
    use_varlen_attention(model, attention)
    model.train()
    total = len(samples)
    loss_sum, clip_sum, n_tok = 0.0, 0.0, 0
    for pos, batch in batches(samples, micro, pad_id):
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) and device is not None else v for k, v in batch.items()}
        logp, idx = token_logps(model, batch)
        adv = torch.tensor([advantages[p] for p in pos], dtype=torch.float32, device=logp.device)[idx]
        old = (torch.cat([old_logps[p] for p in pos]).to(logp.device) if old_logps is not None else logp.detach())
        loss, stats = grpo_loss(logp, old, adv, idx, len(pos), eps_low, eps_high)
        (loss * len(pos) / total).backward()
        loss_sum += float(loss.detach()) * len(pos)
        clip_sum += stats["clip_fraction"] * logp.numel()
        n_tok += logp.numel()
    return {"loss": loss_sum / max(1, total), "clip_fraction": clip_sum / max(1, n_tok), "loss_tokens": n_tok}
