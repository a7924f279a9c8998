"""A model's initial weights from a seed, module by module, the same whatever the sharding: what `model.build` gives
a preset, and what every rank of a sharded run materialises its own shards from."""

from __future__ import annotations

import zlib

import torch


def _init_order(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module, torch.nn.Module]]:
    """(name, module, the model whose `_init_weights` initialises it), children first: transformers'
    `initialize_weights` order, where each sub-model (text model, ViT) initialises its own modules."""
    from transformers import PreTrainedModel

    out: list = []

    def walk(prefix: str, module: torch.nn.Module, owner: torch.nn.Module) -> None:
        for name, child in module.named_children():
            walk(f"{prefix}{name}.", child, child if isinstance(child, PreTrainedModel) else owner)
        out.append((prefix.rstrip("."), module, owner))

    walk("", model, model)
    return out


def _module_seed(seed: int, name: str) -> int:
    return zlib.crc32(f"{seed}:{name}".encode())  # stable across processes (str hashes are not)


def _keep_shard(param: torch.Tensor, full: torch.Tensor) -> None:
    """Copy this rank's part of `full` into `param` (a DTensor shard under FSDP2, else the whole tensor)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(param, DTensor):
        # every rank holds the same `full` (same seed): slice locally, no communication
        part = distribute_tensor(full.to(param.device), param.device_mesh, param.placements, src_data_rank=None)
        param.to_local().copy_(part.to_local())
    else:
        param.copy_(full)


@torch.no_grad()
def seeded_init(model: torch.nn.Module, seed: int, buffers_only: bool = False) -> int:
    """Initialise every parameter and buffer from `seed`, module by module, the same way whatever the sharding:
    module `name` gets torch's default init and then its model's own `_init_weights` (transformers'
    distributions: normal(0, initializer_range) for linear, conv and embedding weights, ones for norms, zeros for
    biases, rotary tables computed) on full-size CPU tensors drawn after `manual_seed(crc32(seed:name))`; each rank
    keeps its shard. So 1 rank, N FSDP2 ranks and DDP replicas start from identical weights, and no rank ever
    holds more than one module's full parameters beside its shards. buffers_only: only modules without
    parameters (rotary tables, after a saved model's weights were loaded). Returns the largest transient full
    tensor set in bytes."""
    rng = torch.random.get_rng_state()
    largest = 0
    try:
        for name, module, owner in _init_order(model):
            own = dict(module.named_parameters(recurse=False))
            if not own and not any(True for _ in module.buffers(recurse=False)):
                continue
            if own and buffers_only:
                continue
            torch.manual_seed(_module_seed(seed, name))
            full = {k: torch.nn.Parameter(torch.empty(p.shape, dtype=p.dtype), requires_grad=False)
                    for k, p in own.items()}
            largest = max(largest, sum(t.numel() * t.element_size() for t in full.values()))
            module._parameters.update(full)
            try:
                if own and hasattr(module, "reset_parameters"):
                    module.reset_parameters()  # anything the model's init leaves alone keeps torch's default
                owner._init_weights(module)
            finally:
                module._parameters.update(own)
            for k, p in own.items():
                _keep_shard(p, full[k])
    finally:
        torch.random.set_rng_state(rng)
    return largest
