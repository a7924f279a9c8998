"""Decoded views: within one pass each stored picture is decoded once and shared by every stage that looks at
pixels (decode, exact_dedup, near_dedup with crops, clip_score), with outputs equal to stages decoding alone."""

from __future__ import annotations

import io
import json
from collections import Counter

import pyarrow as pa
import pytest
from PIL import Image

import pipelines.imaging as imaging
from filters.clip_score import ClipScore
from filters.decode import Decode
from filters.dedup_exact import ExactDedup
from filters.dedup_near import NearDedup
from pipelines.imaging import DecodeError, decode_rgb, decoded_views, views
from pipelines.operator import apply_map, ready
from pipelines.plan import Step, run_steps
from pipelines.schema import record_schema
from tests.images import jpeg_bytes, png_bytes
from tests.pipelines.test_imaging import STAMPS, exif_rotated_jpeg, la_partial, p_trns, rgba_partial

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> list:
    path = tmp_path_factory.mktemp("clip") / "tiny-clip-views.json"
    path.write_text(json.dumps(TINY_CLIP))
    clip = ClipScore({"model": "tiny-clip-views", "model_config": str(path), "batch_size": 3, "threshold": -1.0})
    return [Decode(), ExactDedup(), NearDedup(crops=True), clip]


def _images() -> list[bytes]:
    stamps = sorted(STAMPS.rglob("*.png"))[:6]  # real clip art: RGBA, LA and palette PNGs
    return [p.read_bytes() for p in stamps] + [
        jpeg_bytes((96, 64), seed=1), png_bytes((40, 70), seed=2), png_bytes((50, 50), seed=3, mode="RGBA"),
        rgba_partial(), la_partial(), p_trns(),
        exif_rotated_jpeg(),  # decode re-encodes it upright: later stages must see the picture of the new bytes
        b"<html>not an image</html>",  # an error row: decode drops it, no later stage looks at it
    ]


def _batch(images: list[bytes]) -> pa.RecordBatch:
    rows = [{"key": f"k{i:02d}", "image": im, "text": f"picture {i}", "source": f"s{i}", "dataset": "d", "meta": "{}",
             "part": 0, "ord": i, "keep": True, "error": False, "stage": None, "reason": None}
            for i, im in enumerate(images)]
    return pa.RecordBatch.from_pylist(rows, schema=record_schema())


def _steps(ops: list) -> list[Step]:
    fields: list[pa.Field] = []
    steps = []
    for op in ops:
        fields.extend(op.adds)
        steps.append(Step("map", op, record_schema(fields)))
    return steps


@pytest.fixture
def decoded(monkeypatch) -> Counter:
    """Counts every picture the stages' decoder is asked for, by its bytes (`imaging.decode`: the entry point of
    `DecodedViews` and so of every stage)."""
    seen: Counter = Counter()
    original = imaging.decode

    def counting(data, **kw):
        seen[data] += 1
        return original(data, **kw)

    monkeypatch.setattr(imaging, "decode", counting)
    return seen


def test_a_pass_decodes_each_picture_once_and_matches_stages_decoding_alone(stages, decoded):
    images = _images()
    steps = _steps(stages)

    shared = [b for out in run_steps(steps, iter([_batch(images)])) for b in out.to_pylist()]
    shared_counts = dict(decoded)
    decoded.clear()
    alone = _batch(images)
    for s in steps:  # the uncached path: each stage decodes for itself
        alone = apply_map(ready(s.op), alone, s.schema)
    alone_rows = alone.to_pylist()

    assert shared == alone_rows  # every column: pixel hashes, pHashes, crop grids, thumbnails, CLIP scores, embeddings
    assert [r["keep"] for r in shared] == [True] * (len(images) - 1) + [False]
    assert shared[-1]["reason"] == "not_an_image"
    assert shared[0]["clip_score"] is not None and shared[0]["thumbnail"]

    reencoded = [r["image"] for r, src in zip(shared, images, strict=True) if r["image"] not in (src, None)]
    assert len(reencoded) == 1  # the EXIF-rotated JPEG
    # once per stored picture: every input once (decode), the re-encoded bytes once more (their first reader)
    assert shared_counts == Counter({**dict.fromkeys(images, 1), reencoded[0]: 1})
    # the stages alone decode each live picture in each of the three stages that look at pixels
    assert decoded[images[0]] == 3  # decode, near_dedup, clip_score (exact_dedup reads decode's pixel_sha1)


def test_exact_dedup_without_decode_shares_the_pass_pictures(stages, decoded):
    _, exact, near, clip = stages
    images = _images()[:8]
    out = next(run_steps(_steps([exact, near, clip]), iter([_batch(images)]))).to_pylist()
    assert dict(decoded) == dict.fromkeys(images, 1)
    assert [r["pixel_sha1"] for r in out] == [imaging.pixel_digest(decode_rgb(im)) for im in images]


def test_views_are_released_with_the_batch_and_store_nothing_outside_a_pass(decoded):
    data = png_bytes((30, 20), seed=4, mode="RGBA")
    assert views().rgb(data) is not views().rgb(data)  # outside a pass every call decodes
    assert decoded[data] == 2
    with decoded_views() as cache:
        first = views().rgb(data)
        assert views().rgb(data) is first
        assert cache.held == 30 * 20 * 3 and cache.decodes == 1
        assert first.tobytes() == decode_rgb(data).tobytes()
    assert cache.held == 0
    assert decoded[data] == 3  # 2 outside, 1 in the pass (the comparison's decode_rgb is the trainer's own call)


def test_each_caller_keeps_its_own_bomb_limit_and_decode_errors_are_remembered(decoded):
    data = png_bytes((64, 64), seed=5)
    with decoded_views():
        assert views().rgb(data).size == (64, 64)
        with pytest.raises(DecodeError, match=r"^decompression_bomb:64x64$"):
            views().rgb(data, max_pixels=64 * 63)  # the limit open_image would apply, from the cached size
        for _ in range(2):
            with pytest.raises(DecodeError) as err:
                views().rgb(b"GIF89a-broken")
            assert err.value.reason == "not_an_image"
    assert decoded[data] == 1 and decoded[b"GIF89a-broken"] == 1


def test_a_limit_refused_first_is_not_remembered_as_a_failure():
    data = png_bytes((64, 64), seed=6)
    with decoded_views():
        with pytest.raises(DecodeError, match="decompression_bomb"):
            views().rgb(data, max_pixels=100)
        assert views().rgb(data).size == (64, 64)


def test_pictures_past_the_budget_are_decoded_again_not_kept(decoded):
    big, small = png_bytes((100, 100), seed=7), png_bytes((10, 10), seed=8)
    with decoded_views(budget=100 * 100 * 3 - 1) as cache:
        for _ in range(2):
            views().rgb(big)
            views().rgb(small)
        assert cache.held == 10 * 10 * 3
    assert decoded[big] == 2 and decoded[small] == 1


def test_a_shared_picture_is_the_one_decode_rgb_gives_for_every_kind():
    kinds = [rgba_partial(), la_partial(), p_trns(), exif_rotated_jpeg(), jpeg_bytes((33, 17), seed=9)]
    with decoded_views():
        for data in kinds:
            shared = views().decoded(data)
            plain = decode_rgb(data)
            assert (shared.rgb.mode, shared.rgb.size, shared.rgb.tobytes()) == (plain.mode, plain.size, plain.tobytes())
            assert shared.format == Image.open(io.BytesIO(data)).format


def test_a_pass_with_one_stage_reading_pixels_keeps_no_pictures():
    from pipelines.operator import Operator

    seen: list[int] = []

    class Probe(Operator):
        name = "probe"
        reads = ("width",)

        def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
            seen.append(views().budget)
            return batch

    class PixelProbe(Probe):
        reads = ("image",)

    batch = _batch(_images()[:2])
    list(run_steps(_steps([Decode(), Probe()]), iter([batch])))
    list(run_steps(_steps([Decode(), ExactDedup(), Probe()]), iter([batch])))  # exact_dedup reuses decode's hashes
    list(run_steps(_steps([Decode(), PixelProbe()]), iter([batch])))
    list(run_steps(_steps([ExactDedup(), PixelProbe()]), iter([batch])))
    assert seen == [0, 0, imaging.VIEWS_BUDGET_BYTES, imaging.VIEWS_BUDGET_BYTES]
