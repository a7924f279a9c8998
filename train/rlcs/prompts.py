"""The RL prompt set: prompts with images, a ground-truth answer, a verifier domain and an offline tier. Read
from the distillation's `rl_prompts.parquet` (or the one `vlmdata train grade` writes, same schema) or from SFT
shards with boxed answers (the toy world)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pipelines.imaging import decode_rgb
from train.evaluate import read_eval_samples
from train.rlcs.tiers import UNSOLVED

# The toy world's tasks -> the verifier that checks their boxed answers.
TOY_DOMAINS = {"count": "counting", "arithmetic": "counting", "colour": "text", "position": "text"}

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
SCHEMA = pa.schema([  # the columns of synth/distill/rlset.py's RL_SCHEMA
    pa.field("key", pa.string()), pa.field("id", pa.string()), pa.field("question", pa.string()),
    pa.field("images", pa.list_(IMAGE)), pa.field("answer", pa.string()), pa.field("domain", pa.string()),
    pa.field("k", pa.int32()), pa.field("passed", pa.int32()), pa.field("pass_at_k", pa.float32()),
    pa.field("difficulty", pa.string()), pa.field("source", pa.string()), pa.field("dataset", pa.string()),
])


@dataclass
class Prompt:
    id: str
    question: str
    images: list[Image.Image]
    answer: str
    domain: str
    tier: str = UNSOLVED
    pass_rate: float | None = None
    dataset: str = ""  # the source the metrics are split by
    cache: dict = field(default_factory=dict, repr=False)  # pixels and prompt ids, computed once

    @property
    def messages(self) -> list[dict]:
        return [{"role": "user", "content": [{"type": "image"} for _ in self.images]
                 + [{"type": "text", "text": self.question}]}]


def from_parquet(path: str | Path) -> list[Prompt]:
    """Prompts of an RL prompt set; rows without a question, answer or domain, or with unreadable images, are
    left out with a count on stderr."""
    out, bad = [], 0
    for r in pq.read_table(str(path)).to_pylist():
        try:
            images = [decode_rgb(im["bytes"]) for im in r.get("images") or []]
            if not (r.get("question") and r.get("answer") is not None and r.get("domain")):
                raise ValueError("missing field")
        except Exception:  # noqa: BLE001 - a bad row is left out, the set goes on
            bad += 1
            continue
        out.append(Prompt(str(r.get("id") or r.get("key") or len(out)), r["question"], images, str(r["answer"]),
                          r["domain"], r.get("difficulty") or UNSOLVED, r.get("pass_at_k"), r.get("dataset") or ""))
    if bad:
        import sys

        print(f"rlcs: {bad} prompt rows of {path} left out (no question/answer/domain or unreadable image)",
              file=sys.stderr)
    return out


def from_shards(shards: str, limit: int) -> list[Prompt]:
    """Prompts from SFT shards whose last assistant turn holds one boxed answer (the toy world's shards)."""
    out = []
    for image, messages, ref, task in read_eval_samples(shards, limit):
        question = next(p["text"] for p in messages[-1]["content"] if p.get("type") == "text")
        out.append(Prompt(f"{task}-{len(out)}", question, [image], ref, TOY_DOMAINS.get(task, "text"),
                          dataset=f"toy-{task}"))
    return out


def write_parquet(prompts: list[Prompt], path: str | Path, k: int | None = None,
                  passed: list[int] | None = None) -> Path:
    """The prompt set in the distillation's RL schema (images as PNG bytes), written atomically."""
    rows = []
    for i, p in enumerate(prompts):
        images = []
        for im in p.images:
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            images.append({"bytes": buf.getvalue(), "path": None})
        rows.append({"key": p.id, "id": p.id, "question": p.question, "images": images, "answer": p.answer,
                     "domain": p.domain, "k": k, "passed": None if passed is None else passed[i],
                     "pass_at_k": p.pass_rate, "difficulty": p.tier, "source": "", "dataset": p.dataset})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), str(tmp))
    tmp.replace(path)
    return path
