import pyarrow as pa

from filters.decode import Decode
from filters.heuristics import Heuristics, normalize_caption
from pipelines.operator import apply_map
from pipelines.schema import record_schema

SCHEMA = record_schema(Decode.adds)


def _rows(specs):
    return pa.RecordBatch.from_pylist(
        [
            {"key": f"k{i}", "image": b"x", "text": text, "source": "s", "dataset": "d", "meta": "{}", "part": 0,
             "ord": i, "keep": True, "error": False, "width": w, "height": h, "color_std": std}
            for i, (w, h, std, text) in enumerate(specs)
        ],
        schema=SCHEMA,
    )


def test_normalize_caption_collapses_whitespace_and_strips_control_characters():
    assert normalize_caption("  a\tcat\n\non\u00a0a  mat\x00\u200b ") == "a cat on a mat"
    assert normalize_caption(" \t\n ") == ""
    assert normalize_caption("e\u0301te\u0301") == "été"  # NFC


def test_verdicts_follow_config_thresholds():
    op = Heuristics(min_side=32, max_aspect_ratio=3.0, solid_color_std=2.0, min_caption_chars=3, max_caption_chars=20)
    batch = _rows(
        [
            (64, 64, 30.0, "a red  ball"),  # kept, caption normalised
            (16, 64, 30.0, "small"),
            (200, 40, 30.0, "wide image"),
            (64, 64, 0.5, "flat colour"),
            (64, 64, 30.0, "  \n "),
            (64, 64, 30.0, "ab"),
            (64, 64, 30.0, "x" * 30),
        ]
    )
    rows = apply_map(op, batch, SCHEMA).to_pylist()
    assert rows[0]["keep"] and rows[0]["text"] == "a red ball"
    reasons = [(r["reason"] or "").split(":")[0] for r in rows[1:]]
    assert reasons == ["too_small", "aspect_ratio", "solid_color", "caption_empty", "caption_too_short", "caption_too_long"]
    assert [r["error"] for r in rows] == [False, False, False, False, True, False, False]
    assert all(r["stage"] == "heuristics" for r in rows[1:])


def test_dead_rows_pass_through_untouched_in_order():
    batch = _rows([(64, 64, 30.0, "fine caption"), (8, 8, 30.0, "tiny"), (64, 64, 30.0, "also fine")])
    dead = batch.to_pylist()
    dead[1].update(keep=False, error=True, stage="read", reason="caption_not_utf8")
    batch = pa.RecordBatch.from_pylist(dead, schema=SCHEMA)
    rows = apply_map(Heuristics(min_side=32), batch, SCHEMA).to_pylist()
    assert [r["key"] for r in rows] == ["k0", "k1", "k2"]
    assert rows[1]["stage"] == "read" and rows[1]["reason"] == "caption_not_utf8"
    assert rows[0]["keep"] and rows[2]["keep"]
