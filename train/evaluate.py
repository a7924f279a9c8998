"""Held-out accuracy: greedy answers to the prompts of SFT shards, scored by exact match of the boxed answer."""

from __future__ import annotations

import io
import itertools
import json
from collections import Counter, defaultdict
from pathlib import Path

import torch
from PIL import Image

from model.build import load
from pipelines.codec import tarfile_samples
from pipelines.formats import extract_boxed as extract_answer
from train.data.counters import SkipCounter
from train.data.encode import IMAGE_KEYS
from train.data.shards import expand_urls


def read_eval_samples(shards: str, limit: int) -> list[tuple[Image.Image, list[dict], str, str]]:
    """(image, prompt messages, reference answer, task) of the first `limit` usable samples."""
    counter = SkipCounter()
    out = []
    for s in tarfile_samples(expand_urls(shards), handler=counter.handler):
        try:
            meta = json.loads(s["json"])
            image = Image.open(io.BytesIO(next(s[k] for k in IMAGE_KEYS if k in s))).convert("RGB")
            messages = meta["messages"]
            ref = extract_answer(messages[-1]["content"])
        except Exception as e:  # a held-out set may hold bad samples too: skip and count
            counter.skip("bad_eval_sample", repr(e))
            continue
        if ref is None:
            counter.skip("no_boxed_answer", s.get("__key__", "?"))
            continue
        out.append((image, messages[:-1], ref, meta.get("task", "all")))
        if len(out) == limit:
            break
    return out


@torch.no_grad()
def generate_answers(model, processor, samples, batch_size: int, max_new_tokens: int) -> list[str]:
    processor.tokenizer.padding_side = "left"
    texts = []
    it = iter(samples)
    while batch := list(itertools.islice(it, batch_size)):
        prompts = [processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for _, m, _, _ in batch]
        inputs = processor(text=prompts, images=[im for im, _, _, _ in batch], padding=True, return_tensors="pt")
        inputs.pop("token_type_ids", None)
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=processor.tokenizer.eos_token_id,
                             pad_token_id=processor.tokenizer.pad_token_id)
        new = out[:, inputs["input_ids"].shape[1]:]
        texts += processor.batch_decode(new, skip_special_tokens=False)
    return texts


def majority_baseline(samples) -> dict:
    """Per task, the accuracy of always giving that task's most frequent reference answer of this very set (the
    best any constant answer can score here), and that answer; `all` is their sample-weighted mean."""
    refs: dict[str, list[str]] = defaultdict(list)
    for _, _, ref, task in samples:
        refs[task].append(ref)
    per_task = {t: Counter(v).most_common(1)[0] for t, v in sorted(refs.items())}
    n = sum(len(v) for v in refs.values())
    return {"per_task": {t: c / len(refs[t]) for t, (_, c) in per_task.items()},
            "answer": {t: a for t, (a, _) in per_task.items()},
            "all": sum(c for _, c in per_task.values()) / max(1, n)}


def evaluate(model_path: str | Path, shards: str, limit: int = 400, batch_size: int = 32,
             max_new_tokens: int = 96) -> dict:
    """{"accuracy": …, "per_task": {task: accuracy}, "majority_baseline": {...}, "n": …, "examples": [...]}"""
    model, processor = load(model_path)
    model.eval()
    samples = read_eval_samples(shards, limit)
    outputs = generate_answers(model, processor, samples, batch_size, max_new_tokens)
    return score_answers(samples, outputs)


def score_answers(samples, outputs: list[str]) -> dict:
    """Exact-match accuracy overall and per task, beside the majority-answer baseline per task."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for (_, _, ref, task), text in zip(samples, outputs, strict=True):
        hits[task].append(extract_answer(text) == ref)
    all_hits = [h for v in hits.values() for h in v]
    return {
        "n": len(all_hits),
        "accuracy": sum(all_hits) / max(1, len(all_hits)),
        "per_task": {t: sum(v) / len(v) for t, v in sorted(hits.items())},
        "majority_baseline": majority_baseline(samples),
        "examples": [{"reference": s[2], "output": o} for s, o in list(zip(samples, outputs, strict=True))[:4]],
    }
