"""Model and processor for a run: resumed from the run folder, loaded from a saved model, or built from a
preset with a BPE tokenizer trained on the run's own shards."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import webdataset as wds
from transformers import AutoProcessor, Glm4vForConditionalGeneration, Glm4vProcessor

from model.build import build, build_empty, load
from pipelines import codec
from pipelines.columns import message_text
from train.config import TrainConfig
from train.data.counters import SkipCounter
from train.data.shards import expand_urls
from train.dist import DistInfo, barrier


def corpus_texts(cfg: TrainConfig) -> Iterator[str]:
    """Captions, questions and answers (CoT included) of the first samples of each source, in shard order."""
    counter = SkipCounter()
    per_source = max(1, cfg.tokenizer_samples // max(1, len(cfg.data.sources)))
    for source in cfg.data.sources:
        # every shard, in order, on whichever rank builds the tokenizer: no node or worker splitting
        ds = wds.DataPipeline(wds.SimpleShardList(expand_urls(source.urls)), codec.tarfile_to_samples(handler=counter.handler))
        for sample in itertools.islice(ds, per_source):
            try:
                if "txt" in sample:
                    yield sample["txt"].decode("utf-8")
                meta = json.loads(sample["json"]) if "json" in sample else {}
            except (ValueError, UnicodeDecodeError):
                continue
            messages = meta.get("messages") if isinstance(meta, dict) else None
            for msg in messages if isinstance(messages, list) else []:
                if isinstance(msg, dict) and (text := message_text(msg)):
                    yield text


def is_saved_model(ref: str) -> bool:
    return (Path(ref) / "config.json").exists()


def setup_model(cfg: TrainConfig, dist_info: DistInfo, on_meta: bool = False
                ) -> tuple[Glm4vForConditionalGeneration, Glm4vProcessor]:
    """Same weights on every rank (seeded init or loaded); the processor is saved to OUTPUT/processor once.
    on_meta: only the structure, on the meta device (a rank that gets its weights from rank 0 after sharding)."""
    proc_dir = cfg.run.output / "processor"
    if is_saved_model(cfg.model):
        return build_empty(cfg.model) if on_meta else load(cfg.model)
    if not (proc_dir / "processor_config.json").exists():
        if dist_info.is_main:
            _, processor = build(cfg.model, texts=corpus_texts(cfg))
            processor.save_pretrained(proc_dir)
        barrier()
    processor = AutoProcessor.from_pretrained(str(proc_dir))
    model, _ = build(cfg.model, processor=processor, device="meta" if on_meta else None)
    return model, processor
