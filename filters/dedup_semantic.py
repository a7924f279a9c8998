"""SemDeDup: k-means (faiss) over CLIP image embeddings, then cosine ≥ 1 − ε within each cluster."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from pipelines.global_stage import DedupOperator
from pipelines.operator import OperatorConfig


class SemanticDedupConfig(OperatorConfig):
    epsilon: float = Field(0.03, gt=0.0, lt=1.0, description="Duplicates have cosine similarity ≥ 1 − epsilon.")
    clusters: int = Field(100, ge=1, description="k-means clusters (fewer when the sample is small: ≥ 20 points each).")
    fit_sample: int = Field(100_000, ge=10, description="Embeddings the k-means is trained on at most.")
    seed: int = Field(0, description="k-means seed.")


def _vectors(values: list[bytes]) -> np.ndarray:
    """float16 bytes (as they travel to the reduce) → L2-normalised float32 rows."""
    arr = np.stack([np.frombuffer(v, dtype=np.float16) for v in values]).astype(np.float32)
    return arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)


class SemanticDedup(DedupOperator):
    """Needs `image_embedding` from the CLIP stage; rows without one are left alone."""

    name = "semantic_dedup"
    Config = SemanticDedupConfig
    key_columns: ClassVar[tuple[str, ...]] = ("image_embedding",)
    reads = ("image_embedding",)  # clip_score's
    order_columns: ClassVar[tuple[tuple[str, bool], ...]] = (("clip_score", True),)

    @property
    def fit_sample(self) -> int:  # type: ignore[override]
        return self.config.fit_sample

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch  # the map phase is the CLIP stage's: embeddings are already on the rows

    def fit(self, sample: pa.Table) -> np.ndarray:
        import faiss

        x = _vectors(sample.column("image_embedding").to_pylist())
        k = max(1, min(self.config.clusters, len(x) // 20))
        if k == 1:
            return x.mean(axis=0, keepdims=True)
        # gpu=True: every GPU faiss-gpu sees (faiss-cpu sees none and trains on the CPU)
        kmeans = faiss.Kmeans(x.shape[1], k, niter=25, seed=self.config.seed, spherical=True, verbose=False, gpu=True)
        kmeans.train(x)
        return kmeans.centroids.copy()

    def buckets(self, keys: pa.RecordBatch, state: Any) -> list[list[str]]:
        x = _vectors(keys.column("image_embedding").to_pylist())
        nearest = np.argmax(x @ np.asarray(state).T, axis=1)
        return [[str(int(c))] for c in nearest]

    def matches(self, a: dict[str, Any], b: dict[str, Any], state: Any) -> bool:
        va, vb = _vectors([a["image_embedding"], b["image_embedding"]])
        return float(va @ vb) >= 1.0 - self.config.epsilon

    def drop_reason(self, survivor_key: str) -> str:
        return f"semantic_duplicate:{survivor_key}"
