import io

import pyarrow as pa
from PIL import Image

from filters.dedup_exact import ExactDedup
from pipelines.operator import apply_map
from pipelines.plan import _Decision
from pipelines.schema import record_schema
from tests.images import png_bytes


def test_map_hashes_pixels_when_decode_did_not():
    img = Image.open(io.BytesIO(png_bytes((20, 20), seed=7)))
    a, b = io.BytesIO(), io.BytesIO()
    img.save(a, format="PNG", compress_level=0)
    img.save(b, format="PNG", compress_level=9)
    rows = [
        {"key": k, "image": data, "text": "t", "source": "s", "dataset": "d", "meta": "{}", "part": 0, "ord": i,
         "keep": True, "error": False}
        for i, (k, data) in enumerate([("a", a.getvalue()), ("b", b.getvalue()), ("c", png_bytes((20, 20), seed=8))])
    ]
    out = ExactDedup()(pa.RecordBatch.from_pylist(rows, schema=record_schema()))
    hashes = out.column("pixel_sha1").to_pylist()
    assert hashes[0] == hashes[1] != hashes[2]


def test_apply_drops_losers_naming_their_survivor():
    schema = record_schema(ExactDedup.adds)
    rows = [
        {"key": k, "image": b"x", "text": "t", "source": "s", "dataset": "d", "meta": "{}", "part": 0, "ord": i,
         "keep": keep, "error": False, "pixel_sha1": "h"}
        for i, (k, keep) in enumerate([("a", True), ("b", True), ("c", False)])
    ]
    decision = _Decision(ExactDedup(), {"b": "a", "c": "a"})
    out = apply_map(decision, pa.RecordBatch.from_pylist(rows, schema=schema), schema).to_pylist()
    assert out[0]["keep"] and out[0]["reason"] is None
    assert not out[1]["keep"] and out[1]["reason"] == "exact_duplicate:a" and out[1]["stage"] == "exact_dedup"
    assert out[1]["image"] is None
    assert out[2]["reason"] is None  # already dead: untouched
