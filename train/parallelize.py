"""Applies activation checkpointing, torch.compile and FSDP2 to a model that knows nothing about them."""

from __future__ import annotations

import torch

from train.config import RunConfig
from train.dist import DistInfo


def blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Every decoder layer and ViT block: the units of recomputation, compilation and sharding."""
    inner = model.model
    return [*inner.language_model.layers, *inner.visual.blocks]


def parallelize(model: torch.nn.Module, run: RunConfig, dist_info: DistInfo) -> torch.nn.Module:
    """Block-wise activation checkpointing and compile (in place, state-dict keys unchanged), then
    fully_shard each block and the root when several ranks run (bf16 params, fp32 reduce on GPU)."""
    if run.activation_checkpointing:
        # GLM blocks are transformers GradientCheckpointingLayers: recompute them in backward.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if run.compile:
        for block in blocks(model):
            block.compile()
    if dist_info.world > 1 and run.fsdp:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        kw = {}
        if dist_info.device.type == "cuda" and run.bf16:
            kw["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for block in blocks(model):
            fully_shard(block, **kw)
        fully_shard(model, **kw)
    return model
