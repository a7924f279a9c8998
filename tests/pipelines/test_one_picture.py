"""Curation and training see one picture: the decode stage's pixels (its pixel hash) equal the trainer's
(train.data.encode.Encoder), for every input kind whose plain `convert("RGB")` view differs."""

from __future__ import annotations

import io
import os

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from filters.decode import Decode
from pipelines.imaging import decode_rgb, pixel_digest
from pipelines.operator import apply_map
from pipelines.schema import record_schema
from tests.pipelines.test_imaging import INPUTS, STAMPS

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# kinds whose plain RGB view (what the trainer used to see) is not the picture curation judged
PLAIN_VIEW_DIFFERS = {"rgba", "la", "p_trns", "i16_png", "exif_rotated_jpeg"}


@pytest.fixture(scope="module")
def tiny_processor():
    from model.build import build

    model, processor = build("tiny", ["a picture of a deer", "a red stamp on white", "grey gradient"] * 20)
    return model.config, processor


def curate(images: list[bytes]) -> list[dict]:
    """The decode stage on a batch, as every engine runs it; PNG re-encoding keeps rotated pictures lossless."""
    op = Decode({"reencode_format": "png"})
    rows = [{"key": f"k{i}", "image": im, "text": "t", "source": f"s{i}", "dataset": "d", "meta": "{}", "part": 0,
             "ord": i, "keep": True, "error": False, "stage": None, "reason": None} for i, im in enumerate(images)]
    batch = pa.RecordBatch.from_pylist(rows, schema=record_schema())
    return apply_map(op, batch, record_schema(op.adds)).to_pylist()


def trainer_pixels(config, processor, stored: bytes, ext: str) -> torch.Tensor:
    from train.data.counters import SkipCounter
    from train.data.encode import Encoder

    raw = {"__key__": "k", ext: stored, "txt": b"a caption"}
    encoded = Encoder(processor, config, "caption", SkipCounter())(raw)
    assert encoded is not None and encoded.pixel_values is not None
    return encoded.pixel_values


@pytest.mark.filterwarnings("ignore:Palette images with Transparency")  # Pillow, on the plain view of P+tRNS
@pytest.mark.parametrize("kind", sorted(INPUTS))
def test_curation_and_trainer_see_the_same_pixels(kind, tiny_processor):
    config, processor = tiny_processor
    original = INPUTS[kind]()
    row = curate([original])[0]
    assert row["keep"], row["reason"]
    stored = row["image"]  # what the shard writer stores and the trainer reads

    # (a) pixels: the trainer's decoding of the stored bytes (and of the original ones) hashes as curation's did
    seen = decode_rgb(stored)
    assert pixel_digest(seen) == row["pixel_sha1"]
    assert pixel_digest(decode_rgb(original)) == row["pixel_sha1"]
    assert seen.size == (row["width"], row["height"])

    # (b) the Encoder feeds the model exactly that picture, from the stored bytes and from the original ones
    got = trainer_pixels(config, processor, stored, row["image_format"])
    want = processor.image_processor(images=[seen], return_tensors="pt")["pixel_values"]
    assert torch.equal(got, want)
    original_ext = Image.open(io.BytesIO(original)).format.lower()
    assert torch.equal(trainer_pixels(config, processor, original, original_ext), want)

    # the regression the issue reported: a plain RGB view is another picture for these kinds
    plain = Image.open(io.BytesIO(original)).convert("RGB")
    assert (pixel_digest(plain) != row["pixel_sha1"]) == (kind in PLAIN_VIEW_DIFFERS)
    if kind in PLAIN_VIEW_DIFFERS and plain.size == seen.size:
        plain_pixels = processor.image_processor(images=[plain], return_tensors="pt")["pixel_values"]
        assert not torch.equal(got, plain_pixels)


def test_sixteen_bit_photo_is_not_judged_solid():
    row = curate([INPUTS["i16_png"]()])[0]
    assert row["keep"] and row["color_std"] > 20  # the clipped view was 99.6% white: a colour spread near 0
    assert (np.asarray(decode_rgb(row["image"])) == 255).all(axis=-1).mean() < 0.01


def test_exif_rotation_is_applied_once_in_the_stored_picture():
    data = INPUTS["exif_rotated_jpeg"]()
    row = curate([data])[0]
    assert Image.open(io.BytesIO(data)).size == (64, 16)
    assert (row["width"], row["height"]) == (16, 64) and decode_rgb(row["image"]).size == (16, 64)


@pytest.mark.filterwarnings("ignore:Palette images with Transparency")
@pytest.mark.skipif(not STAMPS.is_dir(), reason="Debian's tuxpaint-stamps-default is not installed")
def test_demo_stamps_train_as_curated():
    """Real stamps with transparency (every 8th): the trainer's picture is the one curation hashed."""
    paths = sorted(STAMPS.rglob("*.png"))[::8]
    rows = curate([p.read_bytes() for p in paths])
    kept = [r for r in rows if r["keep"]]
    assert len(kept) == len(paths)
    assert all(pixel_digest(decode_rgb(r["image"])) == r["pixel_sha1"] for r in kept)
    differs = sum(pixel_digest(Image.open(io.BytesIO(r["image"])).convert("RGB")) != r["pixel_sha1"] for r in kept)
    assert differs > len(kept) // 2  # most stamps have transparency: the plain view was another picture
