"""Per-sample (varlen) causal attention for packed rows, registered with transformers' AttentionInterface.

A packed row holds several samples; its text position ids restart at 0 at each sample. These functions
attend within each such segment only, on every backend, without building an L x L mask: SDPA runs once per
segment (causal, so it keeps its flash/memory-efficient kernels), flash-attention gets the cu_seqlens of the
flattened batch, flex attention gets a block mask built from a document-id mask function. Memory grows with
the sum of n_i^2 over the samples, not with L^2.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

SDPA, FLASH, FLEX = "vlmdata_sdpa_varlen", "vlmdata_flash_varlen", "vlmdata_flex_varlen"
BACKENDS = {"sdpa": SDPA, "flash": FLASH, "flex": FLEX}

_segments_cache: tuple[torch.Tensor | None, list[list[tuple[int, int]]]] = (None, [])


def segments(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """[(start, end)] per row of a [B, L] position tensor; a segment starts wherever the position is 0, and
    a row's padding (position -1) is a segment of its own.
    Cached for the last tensor seen, since every layer of one forward asks for the same one."""
    global _segments_cache
    if _segments_cache[0] is position_ids:
        return _segments_cache[1]
    B, L = position_ids.shape
    prev = torch.cat([position_ids.new_zeros(B, 1), position_ids[:, :-1]], dim=1)
    # a sample starts at position 0, padding (position -1) where it follows a real token
    starts = ((position_ids == 0) | ((position_ids < 0) & (prev >= 0))).nonzero().tolist()
    rows: list[list[int]] = [[] for _ in range(B)]
    for b, t in starts:
        rows[b].append(t)
    out = []
    for b in range(B):
        s = rows[b] if rows[b] and rows[b][0] == 0 else [0, *rows[b]]
        out.append(list(zip(s, [*s[1:], L], strict=True)))
    _segments_cache = (position_ids, out)
    return out


def cu_seqlens(position_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Boundaries of every segment over the B*L flattened tokens, and the longest segment."""
    B, L = position_ids.shape
    bounds = [0] + [b * L + e for b, row in enumerate(segments(position_ids)) for _, e in row]
    cu = torch.tensor(bounds, dtype=torch.int32, device=position_ids.device)
    return cu, int((cu[1:] - cu[:-1]).max())


def _text_positions(kwargs: dict, query: torch.Tensor) -> torch.Tensor:
    pos = kwargs.get("position_ids")
    if pos is None:  # no packing information: one sample per row
        return torch.arange(query.shape[2], device=query.device).expand(query.shape[0], -1)
    return pos.expand(query.shape[0], -1) if pos.ndim == 2 else pos[0]


def sdpa_varlen(module, query, key, value, attention_mask=None, scaling=None, dropout=0.0, **kwargs):
    """query [B, H, L, D], key/value [B, Hkv, L, D] -> ([B, L, H, D], None); SDPA once per segment."""
    if attention_mask is not None:
        raise ValueError("varlen attention takes no attention mask (the position ids delimit the samples)")
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    rows = []
    for b, segs in enumerate(segments(_text_positions(kwargs, query))):
        pos = _text_positions(kwargs, query)[b]
        parts = [F.scaled_dot_product_attention(query[b : b + 1, :, s:e], key[b : b + 1, :, s:e],
                                                value[b : b + 1, :, s:e], is_causal=True, scale=scaling,
                                                dropout_p=dropout)
                 if pos[s] >= 0 else query.new_zeros(1, query.shape[1], e - s, value.shape[-1])  # padding
                 for s, e in segs]
        rows.append(torch.cat(parts, dim=2))
    return torch.cat(rows).transpose(1, 2).contiguous(), None


def flash_varlen(module, query, key, value, attention_mask=None, scaling=None, dropout=0.0, **kwargs):
    """flash_attn_varlen_func over the flattened batch with one sequence per segment (GQA native)."""
    from flash_attn import flash_attn_varlen_func

    B, H, L, D = query.shape
    cu, longest = cu_seqlens(_text_positions(kwargs, query))
    q, k, v = (t.transpose(1, 2).reshape(B * L, t.shape[1], D) for t in (query, key, value))
    out = flash_attn_varlen_func(q, k, v, cu, cu, longest, longest, dropout_p=dropout, softmax_scale=scaling,
                                 causal=True)
    return out.view(B, L, H, D), None


def flex_varlen(module, query, key, value, attention_mask=None, scaling=None, dropout=0.0, **kwargs):
    """flex_attention with a causal same-document block mask (compiled on GPUs; eager elsewhere)."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    B, H, L, _ = query.shape
    pos = _text_positions(kwargs, query)
    doc = torch.where(pos < 0, -1, torch.cumsum((pos == 0).int(), dim=1))  # padding: one document of its own

    def same_doc_causal(b, h, q_idx, kv_idx):
        return (doc[b, q_idx] == doc[b, kv_idx]) & (q_idx >= kv_idx)

    mask = create_block_mask(same_doc_causal, B, None, L, L, device=query.device)
    fn = _compiled_flex() if query.is_cuda else flex_attention
    out = fn(query, key, value, block_mask=mask, scale=scaling, enable_gqa=query.shape[1] != key.shape[1])
    return out.transpose(1, 2).contiguous(), None


_flex = None


def _compiled_flex():
    global _flex
    if _flex is None:
        from torch.nn.attention.flex_attention import flex_attention

        _flex = torch.compile(flex_attention, dynamic=True)
    return _flex


AttentionInterface.register(SDPA, sdpa_varlen)
AttentionInterface.register(FLASH, flash_varlen)
AttentionInterface.register(FLEX, flex_varlen)


def available_backends(device: torch.device | None = None) -> list[str]:
    """The varlen backends this machine can run: sdpa and flex always, flash when flash-attn is installed on a GPU."""
    out = ["sdpa", "flex"]
    if importlib.util.find_spec("flash_attn") is not None and (device is None or device.type == "cuda"):
        out.append("flash")
    return out


def resolve_backend(name: str, device: torch.device) -> str:
    """`auto`: flash-attention on a GPU when installed, else per-segment SDPA."""
    if name == "auto":
        return "flash" if "flash" in available_backends(device) and device.type == "cuda" else "sdpa"
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose auto, {', '.join(BACKENDS)}")
    if name not in available_backends(device):
        raise ValueError(f"attention backend {name!r} is not available here (flash needs flash-attn and a GPU)")
    return name


def use_varlen_attention(model: torch.nn.Module, backend: str) -> None:
    """Switch the decoder of a GLM-4.1V model to packed per-sample attention (the ViT already attends per image)."""
    model.config.text_config._attn_implementation = BACKENDS[backend]


def use_default_attention(model: torch.nn.Module) -> None:
    """Back to transformers' SDPA for the decoder (e.g. before saving or generating)."""
    model.config.text_config._attn_implementation = "sdpa"
