"""clip_score's tensor path (nvJPEG decode + resize/normalise on the model's device), run on CPU with
`decode_on_device: always`, against the exact Pillow path; the JPEG frame reader it routes by; the GPU check script's
CPU smoke mode."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from filters.clip_score import ClipScore
from pipelines.imaging import decoded_views, jpeg_frame, views
from tests.filters.test_clip_score import IMAGES, TINY, _run
from tests.images import jpeg_bytes, png_bytes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "tiny-clip-device.json"
    path.write_text(json.dumps({**TINY, "vision_cfg": {**TINY["vision_cfg"], "image_size": 48}}))
    return str(path)


def _op(tiny_config, **cfg):
    return ClipScore({"model": "tiny-clip-device", "model_config": tiny_config, "batch_size": 3, "threshold": -1.0, **cfg})


def _photo(size: tuple[int, int], seed: int) -> bytes:
    """A smooth picture (JPEG decoders agree on it to within a level or two), stored as JPEG."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_jpeg_frame_reads_size_and_components_without_decoding():
    assert jpeg_frame(jpeg_bytes((64, 48))) == (64, 48, 3)
    buf = io.BytesIO()
    Image.new("L", (30, 70)).save(buf, format="JPEG", progressive=True)
    assert jpeg_frame(buf.getvalue()) == (30, 70, 1)
    buf = io.BytesIO()
    Image.new("CMYK", (5, 6)).save(buf, format="JPEG")
    assert jpeg_frame(buf.getvalue()) == (5, 6, 4)  # nvJPEG is not asked: Pillow decodes CMYK as a viewer shows it
    assert jpeg_frame(png_bytes((10, 10))) is None
    assert jpeg_frame(b"\xff\xd8\xff") is None and jpeg_frame(b"") is None


def test_tensor_path_scores_like_the_pillow_path(tiny_config):
    images = [_photo((160, 120), s) for s in range(4)] + [_photo((90, 200), 9)] + IMAGES[5:]  # + PNG, RGBA PNG
    exact = _run(_op(tiny_config, decode_on_device="never"), images)
    op = _op(tiny_config, decode_on_device="always")
    tensor = _run(op, images)
    auto = _op(tiny_config)
    auto.setup()
    assert op.on_device and not auto.on_device  # on a CPU, auto keeps Pillow's exact preprocess
    assert [r["error"] for r in tensor] == [False] * len(images)
    a = np.array([r["clip_score"] for r in exact])
    b = np.array([r["clip_score"] for r in tensor])
    # other decoders and resize kernels move pixels by a few levels, not the picture: scores agree closely
    assert np.abs(a - b).max() < 0.02, (a, b)
    ea = np.array([r["image_embedding"] for r in exact], np.float32)
    eb = np.array([r["image_embedding"] for r in tensor], np.float32)
    assert (ea * eb).sum(1).min() > 0.99


def test_tensor_path_pixels_are_within_a_few_levels_of_open_clip_preprocess(tiny_config):
    op = _op(tiny_config, decode_on_device="always")
    op.setup()
    images = [_photo((160, 120), 1), png_bytes((50, 50), seed=3, mode="RGBA")]
    with decoded_views() as pictures:
        x, ok = op._prepare_on_device(images, pictures)
        want = op._stack([op._pixels(b, pictures) for b in images])  # open_clip's preprocess, Pillow, exact
    assert ok == [True, True] and x.shape == want.shape == (2, 3, 48, 48)
    std = torch.tensor(op._normalize.std).view(1, -1, 1, 1)
    levels = ((x - want) * std).abs() * 255  # back to 8-bit levels
    assert float(levels.mean()) < 1.5 and float(levels.max()) < 40


def test_tensor_path_reuses_the_pass_pictures_and_makes_bad_bytes_error_rows(tiny_config, monkeypatch):
    op = _op(tiny_config, decode_on_device="always")
    op.setup()
    jpeg = _photo((64, 64), 5)
    asked: list[int] = []
    real = op._device_jpegs
    monkeypatch.setattr(op, "_device_jpegs", lambda blobs: asked.append(len(blobs)) or real(blobs))
    with decoded_views():
        views().rgb(jpeg)  # an earlier stage of the pass decoded it
        x, ok = op._prepare_on_device([jpeg, _photo((64, 64), 6)], views())
    assert ok == [True, True] and asked == [1]  # only the picture nobody decoded yet goes to the JPEG decoder
    rows = _run(op, [jpeg, jpeg[:300], b"\xff\xd8\xff\xe0 not really", b"junk", None])
    assert [r["error"] for r in rows] == [False, True, True, True, True]
    assert all(r["reason"] == "clip_decode_failed" for r in rows[1:])


def test_gpu_check_script_cpu_smoke(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check_clip.py"), "--cpu-smoke"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "images/s" in out.stdout and "ratio" in out.stdout and "not a GPU figure" in out.stdout
    assert list(tmp_path.iterdir()) == []  # it writes nothing
