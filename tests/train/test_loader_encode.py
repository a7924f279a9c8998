"""The loader's fast encode path gives the model exactly the input of the slow, obvious path: the image
processor's full call, transformers' get_rope_index and whole-segment tokenization, on real pictures (Debian's
tuxpaint stamps: alpha PNGs of many sizes, re-encoded as JPEG too), multi-image, text-only and truncated samples."""

import io
import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image

from pipelines.imaging import decode_rgb
from synth.toy_samples import mixed_raws, png
from tests.images import jpeg_bytes
from train.data.counters import SkipCounter
from train.data.encode import Encoder, ImageInputs, reference_rope_positions, rope_positions

STAMPS = Path("/usr/share/tuxpaint/stamps")
FIELDS = ("input_ids", "labels", "positions", "mm_token_type_ids", "pixel_values", "image_grid_thw")


def stamp_bytes(n: int) -> list[bytes]:
    paths = sorted(STAMPS.rglob("*.png"))
    return [p.read_bytes() for p in random.Random(3).sample(paths, n)]


def as_jpeg(data: bytes, scale: float = 1.0) -> bytes:
    img = decode_rgb(data)
    if scale != 1.0:
        img = img.resize((max(1, int(img.width * scale)), max(1, int(img.height * scale))))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def real_pictures() -> list[bytes]:
    """Stamps as stored (alpha PNGs), a JPEG of one, a large one (resized down to max_pixels), an extreme
    aspect one, a tiny one (resized up to min_pixels) and a textured photo-like JPEG."""
    stamps = stamp_bytes(8)
    return [*stamps, as_jpeg(stamps[0]), as_jpeg(stamps[1], scale=12.0), as_jpeg(stamps[2], scale=0.1),
            png(Image.new("RGB", (300, 20), (10, 200, 30))), jpeg_bytes((333, 211), seed=4)]


def assert_same(a, b) -> None:
    assert (a is None) == (b is None)
    if a is None:
        return
    for k in FIELDS:
        x, y = getattr(a, k), getattr(b, k)
        assert (x is None) == (y is None), k
        if x is not None:
            assert x.dtype == y.dtype and torch.equal(x, y), k


@pytest.mark.skipif(not STAMPS.is_dir(), reason="Debian's tuxpaint-stamps-default is not installed")
def test_image_inputs_equal_the_processor_call_on_real_pictures(tiny):
    _, proc = tiny
    ip = proc.image_processor
    fast = ImageInputs(ip)
    pictures = [decode_rgb(b) for b in real_pictures()]
    assert len({p.size for p in pictures}) >= 10  # many sizes, so many grids
    for group in [[p] for p in pictures] + [pictures[:3], pictures[5:]]:
        want = ip(images=group, return_tensors="pt")
        got_pixels, got_grid = fast(group)
        assert torch.equal(got_grid, want["image_grid_thw"])
        assert got_pixels.dtype == want["pixel_values"].dtype
        assert torch.equal(got_pixels, want["pixel_values"])
    # a picture that is not plain RGB takes the processor's own path (same values by definition)
    rgba = Image.new("RGBA", (64, 40), (255, 0, 0, 128))
    assert torch.equal(fast([rgba])[0], ip(images=[rgba], return_tensors="pt")["pixel_values"])


@pytest.mark.skipif(not STAMPS.is_dir(), reason="Debian's tuxpaint-stamps-default is not installed")
@pytest.mark.parametrize("target", ["caption", "messages"])
def test_fast_encoder_equals_the_reference_encoder(tiny, target):
    model, proc = tiny
    raws = mixed_raws(8)
    for i, b in enumerate(real_pictures()):
        caption = f"stamp number {i}: a picture <of> something"
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]},
                    {"role": "assistant", "content": caption},
                    {"role": "user", "content": [{"type": "text", "text": "Sure?"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "Yes."}]}]
        raws.append({"__key__": f"s{i}", "png": b, "txt": caption.encode(),
                     "json": json.dumps({"messages": messages}).encode()})
    for max_len in (None, 40):
        fast = Encoder(proc, model.config, target, SkipCounter(), max_len=max_len)
        ref = Encoder(proc, model.config, target, SkipCounter(), max_len=max_len, reference=True)
        got = [fast(r) for r in raws]
        assert sum(e is not None for e in got) >= len(raws) - 3
        for raw, e in zip(raws, got, strict=True):
            assert_same(e, ref(raw))
        assert fast.counter.counts == ref.counter.counts and fast.counter.notes == ref.counter.notes


def test_rope_positions_equal_transformers_get_rope_index(tiny):
    model, _ = tiny
    cfg = model.config
    merge = cfg.vision_config.spatial_merge_size
    grid = torch.tensor([[1, 4, 6], [1, 8, 2], [1, 2, 2]])
    ids = [1, 2]
    for t, h, w in grid.tolist():
        ids += [cfg.image_start_token_id] + [cfg.image_token_id] * (t * h * w // merge**2) + [cfg.image_end_token_id, 9]
    ids = torch.tensor(ids)
    mm = (ids == cfg.image_token_id).long()
    assert torch.equal(rope_positions(cfg, ids, mm, grid), reference_rope_positions(cfg, ids, mm, grid))
    assert torch.equal(rope_positions(cfg, ids, mm, None), reference_rope_positions(cfg, ids, mm, None))
    keep = torch.arange(len(ids)) != 4  # one image token of the first image missing
    with pytest.raises(ValueError, match="image tokens"):
        rope_positions(cfg, ids[keep], mm[keep], grid)
