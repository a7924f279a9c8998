import io

import pyarrow as pa
from PIL import Image, ImageEnhance

from filters.dedup_near import NearDedup
from pipelines.global_stage import dedup_in_process, reduce_rows, reduce_schema
from pipelines.schema import record_schema
from tests.images import png_bytes


def _img(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def _bytes(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _smooth(seed: int) -> bytes:
    """A picture with large-scale structure (pHash looks at low frequencies), not white noise."""
    small = _img(png_bytes((6, 6), seed=seed))
    return _bytes(small.resize((128, 96), Image.Resampling.BICUBIC))


def _reduce(op, rows):
    """The whole dedup reduce in process: buckets → candidates → best survivor per loser."""
    schema = record_schema(["phash", "clip_score"])
    batch = op(pa.RecordBatch.from_pylist(rows, schema=schema))
    keys = reduce_rows(batch, op, reduce_schema(op, batch.schema))
    return {k: survivor for k, (_, survivor) in dedup_in_process(op, None, [keys]).items()}


def _row(key, data, score=None):
    return {"key": key, "image": data, "text": "t", "source": key, "dataset": "d", "meta": "{}", "part": 0,
            "ord": 0, "keep": True, "error": False, "clip_score": score}


def test_resized_recompressed_and_brightened_copies_lose_to_the_best_scored_original():
    original = _img(_smooth(1))
    rows = [
        _row("a-original", _bytes(original), score=0.9),
        _row("b-resized", _bytes(original.resize((90, 67))), score=0.5),
        _row("c-jpeg", _bytes(original, "JPEG", quality=30), score=0.4),
        _row("d-brighter", _bytes(ImageEnhance.Brightness(original).enhance(1.1)), score=0.95),
        _row("e-other", _smooth(2), score=0.1),
        _row("f-other", _smooth(3), score=0.2),
    ]
    losers = _reduce(NearDedup(hamming_threshold=6), rows)
    # The brighter copy has the highest CLIP score: it is the survivor of its group.
    assert losers == {"a-original": "d-brighter", "b-resized": "d-brighter", "c-jpeg": "d-brighter"}


def test_without_scores_the_smallest_key_survives_and_bands_find_every_pair_within_the_threshold():
    op = NearDedup(hamming_threshold=10)
    assert len(op._band_edges()) == 11
    original = _img(_smooth(4))
    rows = [_row("z", _bytes(original)), _row("m", _bytes(original.resize((100, 75)))), _row("q", _smooth(5))]
    assert _reduce(op, rows) == {"z": "m"}
    pairs = op.matches({"phash": "ffffffffffffffff"}, {"phash": "fffffffffffffc00"}, None)
    assert pairs  # 10 bits apart
    assert not op.matches({"phash": "ffffffffffffffff"}, {"phash": "fffffffffffff800"}, None)
