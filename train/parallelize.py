"""Applies activation checkpointing, torch.compile and FSDP2 (or DDP) to a model that knows nothing about them."""

from __future__ import annotations

from pathlib import Path

import torch

from model.init import seeded_init
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

        ids = [dist_info.device.index] if dist_info.device.type == "cuda" else None
        # find_unused_parameters: a rank whose micro-batch has no image leaves the ViT without gradients
        model = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
    return model


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model under a DDP wrapper (FSDP2 shards in place and needs none)."""
    return getattr(model, "module", model)


def local_parameter_bytes(model: torch.nn.Module) -> int:
    """Bytes of parameter storage this rank holds (its shards under FSDP2)."""
    total = 0
    for p in model.parameters():
        local = p.to_local() if hasattr(p, "to_local") else p
        total += local.numel() * local.element_size()
    return total


def saved_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a saved Hugging Face model folder (`model.safetensors` or its shards), as stored."""
    from safetensors.torch import load_file

    files = sorted(Path(path).glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no model*.safetensors in {path}")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


def materialize(model: torch.nn.Module, seed: int, dist_info: DistInfo, saved: str | Path | None = None) -> int:
    """Give a model built on the meta device on every rank (and sharded) its weights: storage for each rank's
    own shards only, filled by `seeded_init` from `seed`, or, for a saved model, from the weights rank 0 reads
    (`set_model_state_dict(..., full_state_dict=True, broadcast_from_rank0=True)`) with the rotary tables
    computed. Peak host memory per rank: its shards plus one module (plus, on rank 0 of a saved model, the stored
    weights as stored, bf16 for our exports). Returns seeded_init's largest transient in bytes."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    model.to_empty(device=dist_info.device)
    if saved is None:
        return seeded_init(model, seed)
    full = saved_weights(saved) if dist_info.is_main else {}
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    del full
    return seeded_init(model, seed, buffers_only=True)
