"""Group-normalised advantages and the clipped (clip-higher) policy loss, averaged per sample."""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6, scale: bool = True) -> torch.Tensor:
    """[P, G] rewards of G rollouts for each of P prompts -> [P, G] advantages (r - mean_group) / (std_group + eps).

    std is the unbiased sample std over the group (as TRL's GRPO); a group whose rewards are all equal gets 0.
    scale=False leaves the mean-centred rewards unscaled (Dr. GRPO)."""
    r = rewards.float()
    centred = r - r.mean(dim=1, keepdim=True)
    if not scale:
        return centred
    std = r.std(dim=1, keepdim=True, unbiased=True) if r.shape[1] > 1 else torch.zeros_like(r[:, :1])
    return centred / (std + eps)


def clipped_token_objective(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, eps_low: float,
                            eps_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token loss -min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A) and whether it was clipped.

    logp, old_logp: [N] log-probabilities of the sampled tokens; adv: [N] the advantage of each token's rollout.
    Clip-higher (DAPO): eps_high > eps_low leaves more room to raise unlikely tokens than to lower likely ones."""
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * adv
    loss = -torch.minimum(unclipped, clipped)
    return loss, (clipped < unclipped)


def per_sample_mean(values: torch.Tensor, sample_of_token: torch.Tensor, n_samples: int) -> torch.Tensor:
    """[n_samples] mean of `values` [N] over each sample's own tokens (`sample_of_token` [N] in 0..n_samples-1)."""
    sums = torch.zeros(n_samples, dtype=values.dtype, device=values.device).index_add_(0, sample_of_token, values)
    counts = torch.zeros(n_samples, dtype=values.dtype, device=values.device).index_add_(
        0, sample_of_token, torch.ones_like(values))
    return sums / counts.clamp(min=1)


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, token_adv: torch.Tensor, sample_of_token: torch.Tensor,
              n_samples: int, eps_low: float = 0.2, eps_high: float = 0.28) -> tuple[torch.Tensor, dict]:
    """The loss of a batch of rollouts: the clipped objective averaged over each sample's tokens, then over the
    samples (per-sample, not per-token, averaging: a long rollout weighs as much as a short one). No KL and no
    entropy term. Returns (loss, {"clip_fraction": …, "ratio_mean": …})."""
    tok, was_clipped = clipped_token_objective(logp, old_logp, token_adv, eps_low, eps_high)
    loss = per_sample_mean(tok, sample_of_token, n_samples).mean()
    with torch.no_grad():
        stats = {"clip_fraction": float(was_clipped.float().mean()) if tok.numel() else 0.0,
                 "ratio_mean": float(torch.exp(logp - old_logp).mean()) if tok.numel() else 1.0}
    return loss, stats
