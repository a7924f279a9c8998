"""Exact dedup on decoded pixels: a re-encoded copy with identical pixels is a duplicate too."""

from __future__ import annotations

from typing import Any, ClassVar

import pyarrow as pa

from pipelines.global_stage import DedupOperator
from pipelines.imaging import pixel_digest, views
from pipelines.operator import OperatorConfig
from pipelines.schema import set_columns


class ExactDedupConfig(OperatorConfig):
    pass


class ExactDedup(DedupOperator):
    """Buckets rows by `pixel_sha1`; the smallest key of a bucket survives (deterministic on every engine)."""

    name = "exact_dedup"
    Config = ExactDedupConfig
    reads = ("image",)
    adds = (pa.field("pixel_sha1", pa.string()),)
    key_columns: ClassVar[tuple[str, ...]] = ("pixel_sha1",)
    bucket_column: ClassVar[str | None] = "pixel_sha1"

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        idx = batch.schema.get_field_index("pixel_sha1")
        hashes = batch.column(idx).to_pylist() if idx >= 0 else [None] * batch.num_rows
        if all(h is not None for h in hashes):
            return batch
        # Only when decode did not run before us: hash the pixels here.
        images = batch.column("image").to_pylist()
        pictures = views()  # shared with the other stages of this pass
        for i, h in enumerate(hashes):
            if h is None and images[i]:
                hashes[i] = pixel_digest(pictures.rgb(images[i]))
        return set_columns(batch, {"pixel_sha1": hashes})

    def buckets(self, keys: pa.RecordBatch, state: Any) -> list[list[str]]:
        return [[h] for h in keys.column("pixel_sha1").to_pylist()]

    def drop_reason(self, survivor_key: str) -> str:
        return f"exact_duplicate:{survivor_key}"
