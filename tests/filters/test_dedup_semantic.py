import numpy as np
import pyarrow as pa

from filters.clip_score import ClipScore
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

    schema = record_schema(ClipScore.adds)
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


def test_semantic_dedup_after_clip_gives_the_same_ledger_on_spark_and_beam(spark, tmp_path):
    import io

    import pyarrow.parquet as pq
    from PIL import Image

    from pipelines.engines.beam import BeamEngine
    from pipelines.engines.spark import SparkEngine
    from pipelines.run import run_pipeline
    from pipelines.spec import PipelineSpec
    from tests.filters.test_clip_score import TINY
    from tests.images import jpeg_bytes

    config = tmp_path / "tiny-clip-sem.json"
    config.write_text(__import__("json").dumps(TINY))
    src = tmp_path / "in"
    src.mkdir()
    for i in range(30):
        data = jpeg_bytes((64, 48), seed=i, color=(8 * i, 200 - 5 * i, 90))
        (src / f"{i:02d}.jpg").write_bytes(data)
        (src / f"{i:02d}.txt").write_text(f"picture {i}")
        if i % 10 == 0:  # a resized copy: other pixels, nearly the same embedding
            buf = io.BytesIO()
            Image.open(io.BytesIO(data)).resize((60, 45)).save(buf, format="JPEG", quality=95)
            (src / f"{i:02d}-copy.jpg").write_bytes(buf.getvalue())
            (src / f"{i:02d}-copy.txt").write_text(f"picture {i}")
    stages = [{"op": "decode"},
              {"op": "clip_score", "model": "tiny-clip-sem", "model_config": str(config), "threshold": -1.0},
              {"op": "semantic_dedup", "epsilon": 0.002, "clusters": 2, "fit_sample": 20}]
    ledgers = {}
    for name, make in (("spark", lambda s: SparkEngine(s.engine, spark)), ("beam", lambda s: BeamEngine(s.engine))):
        spec = PipelineSpec.model_validate({"reader": {"part_size": 8}, "stages": stages, "engine": {"name": name}})
        run_pipeline(spec, [str(src)], str(tmp_path / name), make(spec))
        ledgers[name] = pq.read_table(tmp_path / name / "ledger.parquet")
    assert ledgers["spark"].equals(ledgers["beam"])
    rows = ledgers["spark"].to_pylist()
    assert len(rows) == 33
    dropped = [r for r in rows if r["status"] == "dropped"]
    assert all(r["stage"] == "semantic_dedup" and r["reason"].startswith("semantic_duplicate:") for r in dropped)
    # A random model maps these pictures close together, so this checks that the engines agree on the fit, the
    # buckets and the survivors, not the quality of the model.
    assert dropped
