"""Model and processor for a run: resumed from the run folder, loaded from a saved model, or built from a
preset with a BPE tokenizer trained on the run's own shards."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import webdataset as wds
from transformers import AutoProcessor, Glm4vForConditionalGeneration, Glm4vProcessor

from model.build import build, load
from train.config import TrainConfig
from train.data.counters import SkipCounter
from train.data.shards import expand_urls
from train.dist import DistInfo, barrier


def corpus_texts(cfg: TrainConfig) -> Iterator[str]:
    """Captions, questions and answers (CoT included) of the first samples of each source, in shard order."""
    counter = SkipCounter()
    per_source = max(1, cfg.tokenizer_samples // max(1, len(cfg.data.sources)))
    for source in cfg.data.sources:
        ds = wds.WebDataset(expand_urls(source.urls), shardshuffle=False, handler=counter.handler, empty_check=False)
        for sample in itertools.islice(ds, per_source):
            try:
                if "txt" in sample:
                    yield sample["txt"].decode("utf-8")
                meta = json.loads(sample["json"]) if "json" in sample else {}
            except (ValueError, UnicodeDecodeError):
                continue
            for msg in meta.get("messages") or []:
                content = msg.get("content")
                if isinstance(content, str):
                    yield content
                elif isinstance(content, list):
                    yield from (c["text"] for c in content if isinstance(c, dict) and c.get("type") == "text")


def is_saved_model(ref: str) -> bool:
    return (Path(ref) / "config.json").exists()


def setup_model(cfg: TrainConfig, dist_info: DistInfo) -> tuple[Glm4vForConditionalGeneration, Glm4vProcessor]:
    """Same weights on every rank (seeded init or loaded); the processor is saved to OUTPUT/processor once."""
    proc_dir = cfg.run.output / "processor"
    if is_saved_model(cfg.model):
        return load(cfg.model)
    if not (proc_dir / "processor_config.json").exists():
        if dist_info.is_main:
            _, processor = build(cfg.model, texts=corpus_texts(cfg))
            processor.save_pretrained(proc_dir)
        barrier()
    processor = AutoProcessor.from_pretrained(str(proc_dir))
    model, _ = build(cfg.model, processor=processor)
    return model, processor
