"""Near-duplicate images by perceptual hash: pHash, candidates by LSH banding, Hamming distance to verify."""

from __future__ import annotations

import io
from typing import Any, ClassVar

import imagehash
import pyarrow as pa
from PIL import Image
from pydantic import Field

from pipelines.global_stage import DedupOperator
from pipelines.imaging import to_rgb
from pipelines.operator import OperatorConfig
from pipelines.schema import set_columns

HASH_BITS = 64


class NearDedupConfig(OperatorConfig):
    hamming_threshold: int = Field(4, ge=0, le=32, description="Two images whose 64-bit pHashes differ in at most this many bits are near-duplicates.")
    bands: int | None = Field(
        None, ge=1, le=64,
        description="LSH bands the hash is cut into; candidates share a band. None: threshold+1, which finds every pair "
        "within the threshold (pigeonhole); fewer bands cost less and may miss some.",
    )


class NearDedup(DedupOperator):
    """Survivor of a near-duplicate pair: the higher CLIP score (when scored), then the smaller key."""

    name = "near_dedup"
    Config = NearDedupConfig
    adds: ClassVar[tuple[str, ...]] = ("phash",)
    key_columns: ClassVar[tuple[str, ...]] = ("phash",)
    order_columns: ClassVar[tuple[tuple[str, bool], ...]] = (("clip_score", True),)

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        hashes = []
        for data in batch.column("image").to_pylist():
            try:
                hashes.append(str(imagehash.phash(to_rgb(Image.open(io.BytesIO(data))))))
            except Exception:  # noqa: BLE001 - no hash, no near-duplicate search; decode already vetted the bytes
                hashes.append(None)
        return set_columns(batch, {"phash": hashes})

    def _band_edges(self) -> list[tuple[int, int]]:
        bands = self.config.bands or min(HASH_BITS, self.config.hamming_threshold + 1)
        edges = [round(i * HASH_BITS / bands) for i in range(bands + 1)]
        return list(zip(edges[:-1], edges[1:], strict=True))

    def buckets(self, keys: pa.RecordBatch, state: Any) -> list[list[str]]:
        edges = self._band_edges()
        out = []
        for h in keys.column("phash").to_pylist():
            bits = format(int(h, 16), f"0{HASH_BITS}b")
            out.append([f"{i}:{bits[a:b]}" for i, (a, b) in enumerate(edges)])
        return out

    def matches(self, a: dict[str, Any], b: dict[str, Any], state: Any) -> bool:
        return (int(a["phash"], 16) ^ int(b["phash"], 16)).bit_count() <= self.config.hamming_threshold

    def drop_reason(self, survivor_key: str) -> str:
        return f"near_duplicate:{survivor_key}"
