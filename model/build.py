"""Build a GLM-4.1V model from a preset, load one from a local path, and save both in Hugging Face format."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import AutoProcessor, Glm4vConfig, Glm4vForConditionalGeneration, Glm4vProcessor

from model import tokens
from model.config import ModelConfig, load_preset
from model.processor import build_processor
from model.tokenizer import train_tokenizer


def hf_config(cfg: ModelConfig, processor: Glm4vProcessor) -> Glm4vConfig:
    """Translate a preset into transformers' Glm4vConfig, with token ids taken from the tokenizer."""
    tok = processor.tokenizer
    ids = {name: tok.convert_tokens_to_ids(t) for name, t in [
        ("image_token_id", tokens.IMAGE), ("video_token_id", tokens.VIDEO),
        ("image_start_token_id", tokens.IMAGE_BEGIN), ("image_end_token_id", tokens.IMAGE_END),
        ("video_start_token_id", tokens.VIDEO_BEGIN), ("video_end_token_id", tokens.VIDEO_END),
    ]}
    t, v = cfg.text, cfg.vision
    return Glm4vConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=t.hidden_size,
            intermediate_size=t.intermediate_size,
            num_hidden_layers=t.num_hidden_layers,
            num_attention_heads=t.num_attention_heads,
            num_key_value_heads=t.num_key_value_heads,
            max_position_embeddings=t.max_position_embeddings,
            rms_norm_eps=t.rms_norm_eps,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": t.rope_theta,
                "mrope_section": t.mrope_section,
                "partial_rotary_factor": t.partial_rotary_factor,
            },
        ),
        vision_config=dict(
            depth=v.depth,
            hidden_size=v.hidden_size,
            intermediate_size=v.intermediate_size,
            num_heads=v.num_heads,
            out_hidden_size=t.hidden_size,
            patch_size=v.patch_size,
            temporal_patch_size=v.temporal_patch_size,
            spatial_merge_size=v.spatial_merge_size,
            image_size=v.image_size,
        ),
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **ids,
    )


def build(
    preset: str | ModelConfig, texts: Iterable[str] | None = None, processor: Glm4vProcessor | None = None
) -> tuple[Glm4vForConditionalGeneration, Glm4vProcessor]:
    """A freshly initialised (seeded) model and its processor; the tokenizer is trained on `texts`
    unless a processor (e.g. a real checkpoint's) is given."""
    cfg = preset if isinstance(preset, ModelConfig) else load_preset(preset)
    if processor is None:
        if texts is None:
            raise ValueError("building a tokenizer needs texts (captions, OCR, CoT) or an existing processor")
        processor = build_processor(cfg, train_tokenizer(texts, cfg.vocab_size))
    torch.manual_seed(cfg.seed)
    model = Glm4vForConditionalGeneration(hf_config(cfg, processor))
    return model, processor


def load(path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[Glm4vForConditionalGeneration, Glm4vProcessor]:
    """A saved model and processor from a local folder (or a hub name when the user has it cached)."""
    model = Glm4vForConditionalGeneration.from_pretrained(str(path), dtype=dtype)
    processor = AutoProcessor.from_pretrained(str(path))
    return model, processor


def save(model: Glm4vForConditionalGeneration, processor: Glm4vProcessor, path: str | Path) -> Path:
    """Hugging Face format (config.json, safetensors, tokenizer, processor) that from_pretrained and vLLM read."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def num_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
