"""Correctness checks of the training path that the tests and scripts/gpu_check_training.py share."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.attention import use_default_attention, use_varlen_attention
from train.data.encode import IGNORE
from train.data.pack import BestFitPacker, collate_rows
from train.loss import batch_token_losses, per_sample_losses


def packed_vs_single(model, samples: list, seq_len: int, rows: int, pad_id: int, backend: str,
                     device: torch.device | str = "cpu", bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-sample losses of the encoded `samples` best-fit packed into rows of `seq_len` tokens and run with the
    `backend` varlen attention, against each sample run alone through the model's own attention (its own 3D
    positions and causal mask). Returns (packed, single, number of packed rows), both in packing order, float32."""
    device = torch.device(device)
    packer = BestFitPacker(seq_len, rows, buffer_size=len(samples))
    for i, s in enumerate(samples):
        packer.add(s, i)
    packed_rows = packer.take_rows()
    order = [i for r in packed_rows for _, i in r]
    if sorted(order) != list(range(len(samples))) or len(packer):
        raise ValueError(f"{len(samples)} samples do not fit {rows} rows of {seq_len} tokens")
    batch = collate_rows([[s for s, _ in r] for r in packed_rows], seq_len, pad_id)
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    ctx = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    with torch.no_grad(), ctx:
        try:
            use_varlen_attention(model, backend)
            packed = per_sample_losses(batch_token_losses(model, batch), batch).float()
        finally:
            use_default_attention(model)
        single = []
        for i in order:
            s = samples[i]
            kw = {} if s.pixel_values is None else dict(pixel_values=s.pixel_values.to(device),
                                                         image_grid_thw=s.image_grid_thw.to(device),
                                                         mm_token_type_ids=s.mm_token_type_ids[None].to(device))
            logits = model(input_ids=s.input_ids[None].to(device), **kw).logits[0].float()
            single.append(F.cross_entropy(logits, s.labels.to(device), ignore_index=IGNORE))
    return packed, torch.stack(single), len(packed_rows)
