"""Greedy packing of encoded samples into fixed-length rows with per-sample positions (no cross-attention)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from train.data.encode import IGNORE, Encoded


def collate_rows(rows: list[list[Encoded]], seq_len: int, pad_id: int) -> dict:
    """Rows of samples -> one packed micro-batch.

    position_ids is [4, B, L]: row 0 holds per-sample text positions (restart at 0 for each sample, which
    transformers turns into a block-diagonal causal mask), rows 1-3 the (t, h, w) rope positions.
    Padding is its own segment with labels IGNORE.
    """
    B = len(rows)
    input_ids = torch.full((B, seq_len), pad_id, dtype=torch.long)
    labels = torch.full((B, seq_len), IGNORE, dtype=torch.long)
    mm = torch.zeros((B, seq_len), dtype=torch.long)
    pos = torch.zeros((4, B, seq_len), dtype=torch.long)
    sample_index = torch.full((B, seq_len), -1, dtype=torch.long)
    pixels, grids = [], []
    k = 0
    for b, row in enumerate(rows):
        o = 0
        for s in row:
            n = len(s)
            input_ids[b, o : o + n] = s.input_ids
            labels[b, o : o + n] = s.labels
            mm[b, o : o + n] = s.mm_token_type_ids
            pos[0, b, o : o + n] = torch.arange(n)
            pos[1:, b, o : o + n] = s.positions
            sample_index[b, o : o + n] = k
            if s.pixel_values is not None:
                pixels.append(s.pixel_values)
                grids.append(s.image_grid_thw)
            o, k = o + n, k + 1
        if o < seq_len:
            pos[:, b, o:] = torch.arange(seq_len - o)
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": pos,
        "mm_token_type_ids": mm,
        "pixel_values": torch.cat(pixels) if pixels else None,
        "image_grid_thw": torch.cat(grids) if grids else None,
        "sample_index": sample_index,
        "num_samples": k,
        "real_tokens": int((sample_index >= 0).sum()),
    }


def pack(samples: Iterator[tuple[int, Encoded | None]], seq_len: int, rows_per_batch: int, pad_id: int) -> Iterator[dict]:
    """Fill rows first-come first-served; a sample that does not fit closes the row and opens the next.

    `samples` yields (raw index, encoded-or-None). Each batch carries `resume_from`: the raw index of the
    first sample not in it, so skipping that many raw samples reproduces the following batches exactly.
    """
    rows: list[list[Encoded]] = [[]]
    used = 0
    for raw_index, s in samples:
        if s is None:
            continue
        if used + len(s) > seq_len:
            if len(rows) == rows_per_batch:
                batch = collate_rows(rows, seq_len, pad_id)
                batch["resume_from"] = raw_index
                yield batch
                rows = [[]]
            else:
                rows.append([])
            used = 0
        rows[-1].append(s)
        used += len(s)
    if rows[0]:
        batch = collate_rows(rows, seq_len, pad_id)
        batch["resume_from"] = None  # stream exhausted
        yield batch
