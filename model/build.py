"""Build a GLM-4.1V model from a preset, load one from a local path, and save both in Hugging Face format."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import AutoProcessor, Glm4vConfig, Glm4vForConditionalGeneration, Glm4vProcessor

from model import tokens
from model.config import ModelConfig, load_preset
from model.init import seeded_init
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
    preset: str | ModelConfig, texts: Iterable[str] | None = None, processor: Glm4vProcessor | None = None,
    device: str | torch.device | None = None,
) -> tuple[Glm4vForConditionalGeneration, Glm4vProcessor]:
    """A freshly initialised model and its processor; the tokenizer is trained on `texts` unless a processor (e.g. a
    real checkpoint's) is given. The weights are the preset's: `seeded_init` from its `seed`, the same ones a
    training run of the preset starts from on any number of ranks. device="meta" builds the structure without
    memory (for ranks that receive their weights after sharding)."""
    cfg = preset if isinstance(preset, ModelConfig) else load_preset(preset)
    if processor is None:
        if texts is None:
            raise ValueError("building a tokenizer needs texts (captions, OCR, CoT) or an existing processor")
        processor = build_processor(cfg, train_tokenizer(texts, cfg.vocab_size))
    with torch.device("meta"):  # no weights drawn twice: the structure, then the preset's init into real storage
        model = Glm4vForConditionalGeneration(hf_config(cfg, processor))
    target = torch.device(device or "cpu")
    if target.type != "meta":
        model.to_empty(device=target)
        seeded_init(model, cfg.seed)
    return model, processor


def build_empty(path: str | Path) -> tuple[Glm4vForConditionalGeneration, Glm4vProcessor]:
    """A saved model's structure on the meta device (no weights read) and its processor."""
    from transformers import AutoConfig

    with torch.device("meta"):
        model = Glm4vForConditionalGeneration(AutoConfig.from_pretrained(str(path)))
    return model, AutoProcessor.from_pretrained(str(path))


def load(path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[Glm4vForConditionalGeneration, Glm4vProcessor]:
    """A saved model and processor from a local folder (or a hub name when the user has it cached)."""
    model = Glm4vForConditionalGeneration.from_pretrained(str(path), dtype=dtype)
    processor = AutoProcessor.from_pretrained(str(path))
    return model, processor


def save(model: Glm4vForConditionalGeneration, processor: Glm4vProcessor, path: str | Path,
         dtype: torch.dtype = torch.bfloat16, state_dict: dict | None = None) -> Path:
    """Hugging Face format in `dtype` (bf16 by default) that transformers 5, transformers 4.5x and vLLM read:
    config.json, safetensors, tokenizer.json + tokenizer_config.json (PreTrainedTokenizerFast), the processor
    (processor_config.json and the older preprocessor_config.json / video_preprocessor_config.json) and the
    chat template (chat_template.jinja and chat_template.json)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sd = state_dict if state_dict is not None else model.state_dict()
    sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    model.save_pretrained(path, state_dict=sd)
    processor.save_pretrained(path)
    _write_compat_files(path, processor, dtype)
    return path


def _write_compat_files(path: Path, processor: Glm4vProcessor, dtype: torch.dtype) -> None:
    """The files and keys older readers look for, beside transformers 5's own."""
    import json

    name = str(dtype).removeprefix("torch.")
    cfg = json.loads((path / "config.json").read_text())
    cfg["dtype"] = cfg["torch_dtype"] = name
    text = cfg.get("text_config", {})
    rope = text.get("rope_parameters") or {}
    if rope:  # transformers 4.5x reads rope_theta / partial_rotary_factor / rope_scaling.mrope_section
        text.setdefault("rope_theta", rope.get("rope_theta"))
        text.setdefault("partial_rotary_factor", rope.get("partial_rotary_factor", 0.5))
        text.setdefault("rope_scaling", {"rope_type": "default", "type": "default",
                                         "mrope_section": rope.get("mrope_section")})
    if text:  # GLM's q/k/v projections carry biases; vLLM's Glm4 decoder adds them only when this says so
        text.setdefault("attention_bias", True)
    (path / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    image = {**processor.image_processor.to_dict(), "processor_class": "Glm4vProcessor"}
    (path / "preprocessor_config.json").write_text(json.dumps(image, indent=2, sort_keys=True) + "\n")
    video = {**processor.video_processor.to_dict(), "processor_class": "Glm4vProcessor"}
    (path / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2, sort_keys=True, default=str) + "\n")
    (path / "chat_template.json").write_text(json.dumps({"chat_template": processor.chat_template}, indent=2) + "\n")
    tok = json.loads((path / "tokenizer_config.json").read_text())
    tok["tokenizer_class"] = "PreTrainedTokenizerFast"  # TokenizersBackend exists in transformers 5 only
    # 4.5x wants the model-specific tokens as a name -> token mapping (5 writes a list)
    tok["extra_special_tokens"] = {k: tok[k] for k in ("image_token", "video_token") if k in tok}
    tok["chat_template"] = processor.chat_template
    (path / "tokenizer_config.json").write_text(json.dumps(tok, indent=2, sort_keys=True) + "\n")


def num_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
