"""Periodic evaluation inside a run: validation loss per held-out shard set, and the generation eval hook."""

from __future__ import annotations

import torch

from model.attention import use_default_attention, use_varlen_attention
from train.config import TrainConfig
from train.data.loader import BatchIterator, to_device
from train.dist import DistInfo, all_reduce_sum
from train.loss import batch_token_losses, vision_keepalive


@torch.no_grad()
def validation_losses(model: torch.nn.Module, inner: torch.nn.Module, processor, cfg: TrainConfig,
                      dist_info: DistInfo) -> dict[str, float]:
    """Mean token loss of each held-out set over `eval.batches` micro-batches per rank (one stream per rank,
    seeded: the same batches at every evaluation)."""
    out: dict[str, float] = {}
    sharded = dist_info.world > 1 and cfg.run.fsdp
    was_training = model.training
    model.eval()
    try:
        for source in cfg.eval.sources:
            data = cfg.data.model_copy(update={"sources": [source], "streams": dist_info.world, "num_workers": 0,
                                               "samples_per_epoch": None})
            it = BatchIterator(data, processor, inner.config, cfg.run.seed + 7919, dist_info.rank, dist_info.world)
            acc = torch.zeros(2, dtype=torch.float64, device=dist_info.device)
            for _ in range(cfg.eval.batches):
                b = to_device(next(it), dist_info.device)
                tok = batch_token_losses(model, b)
                if sharded:  # every rank runs the sharded ViT, images or not (matched collectives)
                    vision_keepalive(inner, b)
                acc += torch.stack([tok.double().sum(), torch.tensor(float(tok.numel()), device=acc.device)])
            acc = all_reduce_sum(acc)
            out[source.name] = float(acc[0] / acc[1].clamp(min=1))
    finally:
        model.train(was_training)
    return out


@torch.no_grad()
def generation_accuracy(inner: torch.nn.Module, processor, cfg: TrainConfig, backend: str) -> dict:
    """The generation hook: greedy answers to held-out prompts, exact match of the boxed answer."""
    from pipelines.formats import extract_boxed
    from train.evaluate import generate_answers, read_eval_samples

    samples = read_eval_samples(cfg.eval.generate, cfg.eval.generate_limit)
    was_training = inner.training
    inner.eval()
    use_default_attention(inner)  # generation pads and caches: transformers' own attention
    try:
        texts = generate_answers(inner, processor, samples, batch_size=8, max_new_tokens=cfg.eval.max_new_tokens)
    finally:
        use_varlen_attention(inner, backend)
        inner.train(was_training)
    hits = [extract_boxed(t) == ref for (_, _, ref, _), t in zip(samples, texts, strict=True)]
    return {"val_accuracy": sum(hits) / max(1, len(hits)), "val_generated": len(hits)}
