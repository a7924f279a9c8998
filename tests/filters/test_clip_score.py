"""The clip_score operator on a tiny, randomly initialised open_clip model built from a config (nothing downloads)."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from filters.clip_score import ClipScore
from pipelines.engines.spark import SparkEngine
from pipelines.operator import apply_map, build_operator
from pipelines.run import run_pipeline
from pipelines.schema import record_schema
from pipelines.spec import PipelineSpec
from tests.images import jpeg_bytes, png_bytes

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "tiny-clip-test.json"
    path.write_text(json.dumps(TINY))
    return str(path)


def _op(tiny_config, **cfg):
    return ClipScore({"model": "tiny-clip-test", "model_config": tiny_config, "batch_size": 3, **cfg})


def _batch(images, texts=None):
    rows = [
        {"key": f"k{i}", "image": im, "text": (texts or [f"a picture number {i}"] * len(images))[i], "source": f"s{i}",
         "dataset": "d", "meta": "{}", "part": 0, "ord": i, "keep": True, "error": False, "stage": None, "reason": None}
        for i, im in enumerate(images)
    ]
    return pa.RecordBatch.from_pylist(rows, schema=record_schema())


def _run(op, images, texts=None):
    return apply_map(op, _batch(images, texts), record_schema(op.adds)).to_pylist()


IMAGES = [jpeg_bytes((64, 48), seed=i, color=(40 * i, 200 - 30 * i, 90)) for i in range(5)] + [
    png_bytes((40, 70), seed=7), png_bytes((50, 50), seed=8, mode="RGBA")
]


def test_registered_and_scores_are_cosines_with_normalised_float16_embeddings(tiny_config):
    op = build_operator("clip_score", {"model": "tiny-clip-test", "model_config": tiny_config, "threshold": -1.0})
    assert isinstance(op, ClipScore)
    out = apply_map(op, _batch(IMAGES), record_schema(op.adds))
    assert out.schema.field("image_embedding").type == pa.list_(pa.float16())
    rows = out.to_pylist()
    assert all(r["keep"] and r["reason"] is None for r in rows)
    for r in rows:
        assert -1.0 <= r["clip_score"] <= 1.0
        img, txt = np.array(r["image_embedding"], np.float32), np.array(r["text_embedding"], np.float32)
        assert img.shape == txt.shape == (32,)
        assert abs(np.linalg.norm(img) - 1) < 2e-3 and abs(np.linalg.norm(txt) - 1) < 2e-3
        assert abs(float(img @ txt) - r["clip_score"]) < 5e-3  # the score is the cosine of the stored embeddings


def test_sub_batches_give_the_same_scores_as_one_batch(tiny_config):
    one = [r["clip_score"] for r in _run(_op(tiny_config, threshold=-1.0, batch_size=64), IMAGES)]
    many = [r["clip_score"] for r in _run(_op(tiny_config, threshold=-1.0, batch_size=2, num_threads=3), IMAGES)]
    assert np.allclose(one, many, atol=1e-5)


def test_threshold_drops_rows_with_their_score_as_reason(tiny_config):
    scores = [r["clip_score"] for r in _run(_op(tiny_config, threshold=-1.0), IMAGES)]
    cut = float(np.median(scores))
    rows = _run(_op(tiny_config, threshold=cut), IMAGES)
    for r, s in zip(rows, scores, strict=True):
        assert r["keep"] == (s >= cut)
        if not r["keep"]:
            assert r["reason"] == f"clip_score_low:{s:.3f}" and r["stage"] == "clip_score" and not r["error"]
            assert r["image"] is None  # the engine frees a dropped row's bytes
    assert 0 < sum(r["keep"] for r in rows) < len(rows)


def test_an_undecodable_image_is_an_error_row_and_the_rest_is_scored(tiny_config):
    images = [IMAGES[0], IMAGES[1][:200], b"not an image at all", IMAGES[2], None]
    rows = _run(_op(tiny_config, threshold=-1.0), images)
    assert [r["error"] for r in rows] == [False, True, True, False, True]
    for r in rows:
        if r["error"]:
            assert not r["keep"] and r["reason"] == "clip_decode_failed" and r["stage"] == "clip_score"
            assert r["clip_score"] is None and r["image_embedding"] is None
        else:
            assert r["keep"] and -1 <= r["clip_score"] <= 1 and len(r["image_embedding"]) == 32


def test_no_embeddings_when_not_kept(tiny_config):
    rows = _run(_op(tiny_config, threshold=-1.0, keep_embeddings=False), IMAGES[:2])
    assert all(r["image_embedding"] is None and r["clip_score"] is not None for r in rows)


def test_local_checkpoint_and_threshold_auto(tiny_config, tmp_path):
    import torch

    source = _op(tiny_config, threshold=-1.0)
    source.setup()
    ckpt = tmp_path / "clip.pt"
    torch.save({"epoch": 1, "state_dict": source.clip.model.state_dict()}, ckpt)
    expected = [r["clip_score"] for r in _run(source, IMAGES)]
    cut = float(np.median(expected))
    (tmp_path / "threshold.json").write_text(json.dumps({"threshold": cut}))
    rows = _run(_op(tiny_config, pretrained=str(ckpt), threshold="auto"), IMAGES)
    assert np.allclose([r["clip_score"] for r in rows], expected, atol=1e-5)  # the weights came from the file
    assert [r["keep"] for r in rows] == [s >= cut for s in expected]


def test_threshold_auto_without_threshold_json_fails_clearly(tiny_config, tmp_path):
    with pytest.raises(ValueError, match="threshold.json"):
        _op(tiny_config, threshold="auto").setup()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _op(tiny_config, pretrained=str(tmp_path / "missing.pt")).setup()


def test_clip_score_after_decode_in_a_spark_pipeline(spark, tiny_config, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i, data in enumerate(IMAGES):
        ext = "png" if data.startswith(b"\x89PNG") else "jpg"
        (src / f"img{i}.{ext}").write_bytes(data)
        (src / f"img{i}.txt").write_text(f"a picture number {i}")
    (src / "broken.jpg").write_bytes(IMAGES[0][:300])
    (src / "broken.txt").write_text("a broken picture")
    scores = sorted(r["clip_score"] for r in _run(_op(tiny_config, threshold=-1.0), IMAGES))
    cut = scores[2]  # the two lowest-scoring pairs are dropped
    spec = PipelineSpec.model_validate({
        "name": "clip-test",
        "reader": {"part_size": 4, "batch_size": 4},
        "stages": [{"op": "decode"},
                   {"op": "clip_score", "model": "tiny-clip-test", "model_config": tiny_config, "threshold": cut,
                    "batch_size": 2}],
        "engine": {"name": "spark", "master": "local[2]"},
    })
    out = tmp_path / "out"
    run_pipeline(spec, [str(src)], str(out), SparkEngine(spec.engine, spark))
    ledger = pq.read_table(out / "ledger.parquet").to_pylist()
    assert len(ledger) == len(IMAGES) + 1
    by_status = {s: [r for r in ledger if r["status"] == s] for s in ("kept", "dropped", "error")}
    assert len(by_status["kept"]) == len(IMAGES) - 2
    assert [r["stage"] for r in by_status["error"]] == ["decode"]
    assert all(r["stage"] == "clip_score" and r["reason"].startswith("clip_score_low:") for r in by_status["dropped"])
    assert len(by_status["dropped"]) == 2


def test_preflight_names_what_is_missing_and_checks_a_local_checkpoint_without_open_clip(tiny_config, tmp_path,
                                                                                         monkeypatch):
    """The driver's check before a run: a local checkpoint is checked for existence only (importing open_clip costs
    the driver seconds of torch and transformers), a missing one or an uncached tag is named."""
    import subprocess
    import sys

    from filters.clip_model import ModelMissing

    ckpt = tmp_path / "clip.pt"
    ckpt.write_bytes(b"weights")
    script = ("import sys; from filters.clip_score import ClipScore; "
              f"ClipScore({{'model': 'ViT-B-32', 'pretrained': {str(ckpt)!r}}}).preflight(); "
              "print(sorted(m for m in ('open_clip', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
    with pytest.raises(ModelMissing, match="missing.pt does not exist"):
        _op(tiny_config, pretrained=str(tmp_path / "missing.pt")).preflight()
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))  # whatever this machine holds
    with pytest.raises(ModelMissing, match="not on this machine"):
        ClipScore({"model": "ViT-B-32", "pretrained": "openai"}).preflight()
