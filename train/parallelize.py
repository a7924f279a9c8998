"""Applies activation checkpointing, torch.compile and FSDP2 (or DDP) to a model that knows nothing about them."""

from __future__ import annotations

import torch

from train.config import RunConfig
from train.dist import DistInfo


def blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Every decoder layer and ViT block: the units of recomputation, compilation and sharding."""
    inner = model.model
    return [*inner.language_model.layers, *inner.visual.blocks]


def parallelize(model: torch.nn.Module, run: RunConfig, dist_info: DistInfo) -> torch.nn.Module:
    """Block-wise activation checkpointing and compile (in place, state-dict keys unchanged), then, when several
    ranks run, fully_shard each decoder layer and the root (with the ViT) (bf16 params, fp32 reduce on GPU), or wrap the model
    in DDP when run.fsdp is false (each rank then holds a full replica, gradients all-reduced)."""
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
        for layer in model.model.language_model.layers:
            fully_shard(layer, **kw)
        # The ViT stays in the root unit: every rank then issues the same collectives whether or not its
        # micro-batch has images (a rank without runs the ViT on a dummy image, loss.vision_keepalive, with the
        # root's parameters already gathered), so ranks never wait on mismatched all-gathers/reduce-scatters.
        fully_shard(model, **kw)
    elif dist_info.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        if any(p.is_meta for p in model.parameters()):
            model.to_empty(device=dist_info.device)  # DDP copies rank 0's parameters and buffers to every rank
        ids = [dist_info.device.index] if dist_info.device.type == "cuda" else None
        # find_unused_parameters: a rank whose micro-batch has no image leaves the ViT without gradients
        model = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
    return model


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model under a DDP wrapper (FSDP2 shards in place and needs none)."""
    return getattr(model, "module", model)


def materialize(model: torch.nn.Module, full_state: dict | None, dist_info: DistInfo) -> None:
    """Give a model that ranks other than 0 built on the meta device its weights, after sharding: storage for
    each rank's own shard only, filled from rank 0's full state dict (`full_state`, None elsewhere), and every
    buffer (rotary tables) copied from rank 0. Peak host memory of those ranks no longer holds a full model."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        model.to_empty(device=dist_info.device)
    set_model_state_dict(model, full_state if dist_info.is_main else {},
                         options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    for buf in model.buffers():
        dist.broadcast(buf.data, src=0)
