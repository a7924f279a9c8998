import numpy as np
import pyarrow as pa

from filters.dedup_semantic import SemanticDedup
from pipelines.global_stage import dedup_in_process, reduce_rows, reduce_schema
from pipelines.schema import record_schema


def test_kmeans_clusters_then_cosine_within_cluster_names_the_best_scored_survivor():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(6, 32))
    rows, expected = [], {}
    for c in range(6):
        for j in range(40):
            v = centers[c] + rng.normal(scale=0.6, size=32)  # distinct members of one topic
            rows.append((f"c{c}-{j:02d}", v, 0.5))
    base = centers[2] + rng.normal(scale=0.6, size=32)
    rows.append(("dup-original", base, 0.6))
    rows.append(("dup-copy", base + rng.normal(scale=0.01, size=32), 0.9))  # a near-identical embedding
    expected["dup-original"] = "dup-copy"  # the copy has the higher CLIP score

    schema = record_schema(["clip_score", "image_embedding"])
    batch = pa.RecordBatch.from_pylist(
        [{"key": k, "image": b"x", "text": "t", "source": k, "dataset": "d", "meta": "{}", "part": 0, "ord": i,
          "keep": True, "error": False, "clip_score": s,
          "image_embedding": (v / np.linalg.norm(v)).astype(np.float16).tolist()} for i, (k, v, s) in enumerate(rows)],
        schema=schema,
    )
    op = SemanticDedup(epsilon=0.02, clusters=6)
    keys = reduce_rows(batch, op, reduce_schema(op, schema))
    assert keys.schema.field("image_embedding").type == pa.binary()
    state = op.fit(pa.Table.from_batches([keys]))
    assert state.shape == (6, 32)
    buckets = {b for bs in op.buckets(keys, state) for b in bs}
    assert 3 <= len(buckets) <= 6
    got = {k: survivor for k, (_, survivor) in dedup_in_process(op, state, [keys]).items()}
    assert got == expected
