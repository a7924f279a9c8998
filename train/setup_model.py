"""Model and processor for a run: resumed from the run folder, loaded from a saved model, or built from a
preset with a BPE tokenizer trained on the run's own shards."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import torch
import webdataset as wds
from transformers import AutoProcessor, Glm4vForConditionalGeneration, Glm4vProcessor

from model.attention import resolve_backend, use_varlen_attention
from model.build import build, build_empty, load
from model.config import load_preset
from pipelines import codec
from pipelines.columns import message_text
from train.config import TrainConfig
from train.data.counters import SkipCounter
from train.data.shards import expand_urls
from train.dist import DistInfo, barrier
from train.parallelize import materialize, parallelize


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
    """The model (on the CPU) and processor; the processor is saved to OUTPUT/processor once. A preset is built
    by `build` with the preset's weights (`seeded_init`, the same on any number of ranks); a saved model is
    loaded. on_meta: only the structure, on the meta device, on every rank (FSDP2: `materialize` gives each rank
    its shards after sharding)."""
    proc_dir = cfg.run.output / "processor"
    if is_saved_model(cfg.model):
        return build_empty(cfg.model) if on_meta else load(cfg.model)
    if not (proc_dir / "processor_config.json").exists():
        if dist_info.is_main:
            _, processor = build(cfg.model, texts=corpus_texts(cfg), device="meta")  # the processor only
            processor.save_pretrained(proc_dir)
        barrier()
    processor = AutoProcessor.from_pretrained(str(proc_dir))
    model, _ = build(cfg.model, processor=processor, device="meta" if on_meta else "cpu")  # seeded from the preset
    return model, processor


def model_seed(cfg: TrainConfig) -> int:
    """The seed of a preset's initial weights (the preset's own `seed`)."""
    return 0 if is_saved_model(cfg.model) else load_preset(cfg.model).seed


def prepare_model(cfg: TrainConfig, dist_info: DistInfo) -> tuple[torch.nn.Module, Glm4vProcessor, str]:
    """The run's model ready to train: packed attention installed, on its device, parallelised. Under FSDP2
    every rank builds it on the meta device and materialises only its own shards after sharding (seeded, or a
    saved model's weights read on rank 0 and broadcast), so no rank holds the full model in host memory."""
    run = cfg.run
    sharded = dist_info.world > 1 and run.fsdp
    model, processor = setup_model(cfg, dist_info, on_meta=sharded)
    backend = resolve_backend(run.attention, dist_info.device)
    use_varlen_attention(model, backend)
    if not sharded:
        model.to(dist_info.device)
    model = parallelize(model, run, dist_info)
    if sharded:
        materialize(model, model_seed(cfg), dist_info, cfg.model if is_saved_model(cfg.model) else None)
    return model, processor, backend
