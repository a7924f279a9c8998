"""Raw WebDataset samples of the toy world in every shape the trainer's encoder meets: non-square images of several
patch grids, every task, a sample with two images and a text-only one. Shared by the packing tests and
scripts/gpu_check_training.py, which check that a packed batch gives each sample the loss it gets alone."""

from __future__ import annotations

import io
import json
import random

from PIL import Image

from synth.toy_reasoning import ToyConfig, render_sample

TASKS = ["count", "colour", "position", "arithmetic"]


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def raw_from(sample: dict, size: tuple[int, int] | None = None, key: str = "k") -> dict:
    """A rendered sample as the raw dict the shard reader yields (image resized to `size` when given)."""
    img = sample["image"] if size is None else sample["image"].resize(size)
    return {"__key__": key, "png": png(img), "txt": sample["caption"].encode(),
            "json": json.dumps({"messages": sample["messages"]}).encode()}


def two_image_raw(rng: random.Random, image_size: int = 112) -> dict:
    s = image_size
    a, b = (render_sample(rng, "count", ToyConfig(image_size=s)) for _ in range(2))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                             {"type": "text", "text": "Which has more shapes?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": a["messages"][1]["content"]}]}]
    return {"__key__": "two", "0.png": png(a["image"].resize((s, s // 2))),
            "1.png": png(b["image"].resize((s // 2, s * 3 // 4))), "json": json.dumps({"messages": messages}).encode()}


def text_only_raw(rng: random.Random) -> dict:
    s = render_sample(rng, "arithmetic", ToyConfig())
    return {"__key__": "text", "json": json.dumps({"messages": [
        {"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": s["messages"][1]["content"]},
    ]}).encode()}


def mixed_raws(n: int, image_size: int = 112) -> list[dict]:
    """n single-image samples (every task, four aspect ratios) plus a two-image and a text-only one, third and
    fourth. Deterministic."""
    rng = random.Random(0)
    s = image_size
    sizes = [(s, s // 2), (s // 2, s * 5 // 4), (s * 3 // 4, s * 3 // 4), (s * 5 // 4, s // 2)]
    out = [raw_from(render_sample(rng, TASKS[i % 4], ToyConfig(image_size=s)), size=sizes[i % 4], key=f"s{i}")
           for i in range(n)]
    return [*out[:2], two_image_raw(rng, s), text_only_raw(rng), *out[2:]]
