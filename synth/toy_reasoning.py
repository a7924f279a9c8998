"""A procedurally rendered visual-reasoning toy world (count, colour, position, digit arithmetic) with
verifiable answers, written as WebDataset shards in the long-CoT answer format."""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel, Field

from pipelines.codec import encode_json
from pipelines.shards import ShardWriter, write_index

Task = Literal["count", "colour", "position", "arithmetic"]
TASKS: tuple[Task, ...] = ("count", "colour", "position", "arithmetic")
COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 60),
           "yellow": (230, 200, 30), "purple": (140, 60, 180), "orange": (240, 130, 20)}
SHAPES = ("circle", "square", "triangle")
FONT_PATH = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


class ToyConfig(BaseModel):
    """What to render and where to write it."""

    samples: int = Field(2000, description="Number of samples to write.")
    image_size: int = Field(112, description="Side of the square images in pixels.")
    difficulty: int = Field(1, ge=1, le=3, description="1 = few objects, 2 colours, one-digit sums; 3 = crowded, 6 colours, two-digit numbers.")
    tasks: list[Task] = Field(default_factory=lambda: list(TASKS), description="Task families to mix uniformly.")
    seed: int = Field(0, description="Seed; train and held-out sets use different seeds.")
    shard_size: int = Field(1000, description="Samples per shard.")
    split: Literal["all", "train", "heldout"] = Field(
        "all", description="`train` / `heldout`: only items of that side of `split_of` (disjoint by image and "
        "question, and by the expression for arithmetic); `all`: no split (items may repeat across sets).")
    heldout_percent: int = Field(20, ge=1, le=50, description="Share of the item space reserved for `heldout`.")


def _levels(difficulty: int) -> dict:
    return {
        # radius: shapes shrink as scenes get crowded (a 2-layer ViT misses 16-px shapes early in training)
        1: dict(colours=2, max_count=3, distractors=0, digits=(0, 9), ops="+", radius=1 / 6),
        2: dict(colours=4, max_count=5, distractors=2, digits=(0, 9), ops="+-", radius=1 / 9),
        3: dict(colours=6, max_count=8, distractors=4, digits=(10, 49), ops="+-", radius=1 / 12),
    }[difficulty]


def answer_space(task: Task, difficulty: int) -> int:
    """How many answers a task can have: chance accuracy is 1 / this."""
    lv = _levels(difficulty)
    # sums reach 2*hi; differences (a >= b) stay inside 0..hi
    return {"count": lv["max_count"], "colour": lv["colours"], "position": 4,
            "arithmetic": 2 * lv["digits"][1] + 1}[task]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: list[int], rgb: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = box
    if shape == "circle":
        draw.ellipse(box, fill=rgb)
    elif shape == "square":
        draw.rectangle(box, fill=rgb)
    else:
        draw.polygon([((x1 + x2) // 2, y1), (x2, y2), (x1, y2)], fill=rgb)


def _place(rng: random.Random, size: int, n: int, r: int) -> list[list[int]]:
    """n non-overlapping square boxes of side 2r inside the image; shrinks r when the scene is too crowded."""
    while r >= 4:
        boxes: list[list[int]] = []
        for _ in range(n * 200):
            if len(boxes) == n:
                return boxes
            cx, cy = rng.randint(r + 1, size - r - 2), rng.randint(r + 1, size - r - 2)
            b = [cx - r, cy - r, cx + r, cy + r]
            if all(b[2] + 2 < o[0] or o[2] + 2 < b[0] or b[3] + 2 < o[1] or o[3] + 2 < b[1] for o in boxes):
                boxes.append(b)
        if len(boxes) == n:
            return boxes
        r = int(r * 0.85)
    raise RuntimeError(f"could not place {n} shapes in {size} px; use a larger image_size")


def _norm(box: list[int], size: int) -> str:
    """Pixel box -> GLM's text form, ints normalised to [0, 1000)."""
    return "[" + ",".join(str(min(999, v * 1000 // size)) for v in box) + "]"


def render_sample(rng: random.Random, task: Task, cfg: ToyConfig) -> dict:
    """One sample: image, caption, question, chain of thought, verifiable answer and object boxes."""
    size, lv = cfg.image_size, _levels(cfg.difficulty)
    img = Image.new("RGB", (size, size), (250, 250, 245))
    draw = ImageDraw.Draw(img)
    colours = list(COLOURS)[: lv["colours"]]
    r = max(6, int(size * lv["radius"]))
    objects: list[tuple[str, str, list[int]]] = []  # (colour, shape, box)
    if task == "arithmetic":
        lo, hi = lv["digits"]
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        op = rng.choice(lv["ops"])
        if op == "-" and b > a:
            a, b = b, a
        value = a + b if op == "+" else a - b
        font = ImageFont.truetype(FONT_PATH, size // 4) if os.path.exists(FONT_PATH) else ImageFont.load_default(size // 4)
        expr = f"{a}{op}{b}"
        draw.text((size // 2, size // 2), expr, fill=(20, 20, 20), font=font, anchor="mm")
        box = [int(v) for v in draw.textbbox((size // 2, size // 2), expr, font=font, anchor="mm")]
        question = "What is the value of the expression in the image?"
        think = f"The image shows {a} {op} {b}. {a} {op} {b} = {value}."
        answer = str(value)
        caption = f"The expression {a} {op} {b} written in black at {_norm(box, size)}."
        objects.append(("black", "text", box))
    else:
        if task == "count":
            target_colour, shape = rng.choice(colours), rng.choice(SHAPES)
            k = rng.randint(1, lv["max_count"])
            others = [(c, s) for c in colours for s in SHAPES if (c, s) != (target_colour, shape)]
            kinds = [(target_colour, shape)] * k + [rng.choice(others) for _ in range(lv["distractors"])]
            question = f"How many {target_colour} {shape}s are in the image?"
            think = f"I look for {target_colour} {shape}s and count them one by one: " + ", ".join(
                str(i + 1) for i in range(k)) + "."
            answer = str(k)
        elif task == "colour":
            shape = rng.choice(SHAPES)
            target_colour = rng.choice(colours)
            others = [s for s in SHAPES if s != shape]
            kinds = [(target_colour, shape)] + [(rng.choice(colours), rng.choice(others)) for _ in range(lv["distractors"])]
            question = f"What colour is the {shape}?"
            think = f"There is one {shape} in the image. Its colour is {target_colour}."
            answer = target_colour
        else:  # position: where is A relative to B (the larger offset axis wins)
            (c1, s1), (c2, s2) = rng.sample([(c, s) for c in colours for s in SHAPES], 2)
            kinds = [(c1, s1), (c2, s2)]
            rest = [(c, s) for c in colours for s in SHAPES if (c, s) not in kinds]
            kinds += [rng.choice(rest) for _ in range(lv["distractors"])]
            question = f"Where is the {c1} {s1} relative to the {c2} {s2}? Answer left, right, above or below."
            answer = think = ""
        boxes = _place(rng, size, len(kinds), r)
        for (c, s), b in zip(kinds, boxes, strict=True):
            _draw_shape(draw, s, b, COLOURS[c])
            objects.append((c, s, b))
        if task == "position":
            (x1, y1, _, _), (x2, y2, _, _) = boxes[0], boxes[1]
            dx, dy = x1 - x2, y1 - y2
            answer = ("right" if dx > 0 else "left") if abs(dx) >= abs(dy) else ("below" if dy > 0 else "above")
            think = (f"The {c1} {s1} is at {_norm(boxes[0], size)} and the {c2} {s2} at {_norm(boxes[1], size)}. "
                     f"The larger offset is {'horizontal' if abs(dx) >= abs(dy) else 'vertical'}, so it is {answer}.")
        order = sorted(objects, key=lambda o: (o[2][1] // 20, o[2][0]))
        caption = "An image with " + "; ".join(f"a {c} {s} at {_norm(b, size)}" for c, s, b in order) + "."
    content = f"<think>{think}</think><answer><|begin_of_box|>{answer}<|end_of_box|></answer>"
    return {
        "image": img,
        "caption": caption,
        "task": task,
        "answer": answer,
        "difficulty": cfg.difficulty,
        "boxes": [b for _, _, b in objects],
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
            {"role": "assistant", "content": content},
        ],
    }


def split_of(sample: dict, heldout_percent: int = 20) -> str:
    """`heldout` or `train`, fixed by what the item is, not by the seed that drew it: a hash of (task, question,
    caption). The caption lists every drawn object with its box (the expression with its box for arithmetic), so
    equal images with equal questions always land on the same side; for arithmetic, whose whole item space is
    small (100 expressions at difficulty 1), the split is by the answer-generating expression itself."""
    question = sample["messages"][0]["content"][1]["text"]
    key = "\x1f".join((sample["task"], question, sample["caption"])).encode()
    return "heldout" if int(hashlib.blake2b(key, digest_size=8).hexdigest(), 16) % 100 < heldout_percent else "train"


def generate(cfg: ToyConfig) -> Iterator[dict]:
    rng = random.Random(cfg.seed)
    for i in range(cfg.samples):
        task = cfg.tasks[i % len(cfg.tasks)]
        s = render_sample(rng, task, cfg)
        while cfg.split != "all" and split_of(s, cfg.heldout_percent) != cfg.split:
            s = render_sample(rng, task, cfg)
        yield s


def write_shards(cfg: ToyConfig, out_dir: str | Path, name: str = "toy") -> list[Path]:
    """Write `{key}.png/.txt/.json` shards (`NAME-00000.tar` …, each with its `.stats.json`) plus a wids index.json
    with sizes, through the project's shard writer: each shard is renamed into place only when complete."""
    out = Path(out_dir)
    tmp = out / ".tmp"
    writer = ShardWriter(str(out), str(tmp), name, cfg.shard_size, 1 << 40, name="{prefix}-{n:05d}.tar")
    for i, s in enumerate(generate(cfg)):
        buf = io.BytesIO()
        s["image"].save(buf, format="PNG")
        meta = {k: v for k, v in s.items() if k not in ("image", "caption")}
        meta.update(width=cfg.image_size, height=cfg.image_size, dataset=name, source=f"toy_reasoning:seed={cfg.seed}:{i}")
        writer.write({"__key__": f"{name}{cfg.seed:04d}{i:07d}", "png": buf.getvalue(), "txt": s["caption"].encode(),
                      "json": encode_json(meta)})
    shards = writer.close()
    write_index(str(out), shards, name)
    shutil.rmtree(tmp, ignore_errors=True)
    return [out / s.url for s in shards]


def write_toy(split: str, samples: int, seed: int, difficulty: int, out_dir: str | Path) -> list[Path]:
    """One split of the toy world (`train` or `heldout`) as shards; the writer RLCS's start builder is handed."""
    return write_shards(ToyConfig(samples=samples, seed=seed, difficulty=difficulty, split=split), out_dir)
