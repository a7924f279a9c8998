"""Turns one raw sample (image + messages or caption) into token ids, 3D positions, pixels and shifted labels."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from transformers import Glm4vConfig, Glm4vModel, Glm4vProcessor

from model import tokens
from pipelines.imaging import decode_rgb
from train.data.counters import SkipCounter

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
IGNORE = -100


@dataclass
class Encoded:
    """One sample ready for packing. labels are already shifted: labels[t] is the target of position t."""

    input_ids: torch.Tensor  # [n]
    labels: torch.Tensor  # [n]
    positions: torch.Tensor  # [3, n] (t, h, w) rope positions, starting at 0
    mm_token_type_ids: torch.Tensor  # [n]
    pixel_values: torch.Tensor | None  # [patches, 3*tp*p*p]
    image_grid_thw: torch.Tensor | None  # [images, 3]

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


class _RopeIndex:
    """Reuses transformers' own GLM-4.1V 3D-position code without instantiating a model."""

    get_rope_index = Glm4vModel.get_rope_index
    get_vision_position_ids = Glm4vModel.get_vision_position_ids

    def __init__(self, config: Glm4vConfig) -> None:
        self.config = config


def rope_positions(config: Glm4vConfig, input_ids: torch.Tensor, mm: torch.Tensor, grid: torch.Tensor | None) -> torch.Tensor:
    """[3, n] positions of one unpacked sample, as the model would compute them itself."""
    if grid is None:
        return torch.arange(input_ids.shape[0]).expand(3, -1).clone()
    pos, _ = _RopeIndex(config).get_rope_index(input_ids[None], mm[None], image_grid_thw=grid)
    return pos[:, 0]


class Encoder:
    """Sample -> Encoded with the processor; counts and skips bad samples instead of raising."""

    def __init__(self, processor: Glm4vProcessor, config: Glm4vConfig, target: str, counter: SkipCounter,
                 max_len: int | None = None) -> None:
        self.processor, self.config, self.counter = processor, config, counter
        self.target, self.max_len = target, max_len
        self.eos = processor.tokenizer.eos_token

    def prompt_and_answer(self, meta: dict, caption: str | None) -> tuple[str, str] | None:
        messages = meta.get("messages")
        has_caption = bool(caption and caption.strip())
        if self.target == "caption" and has_caption:
            return tokens.GMASK + tokens.SOP + tokens.IMAGE_BEGIN + tokens.IMAGE + tokens.IMAGE_END, caption.strip()
        if messages:
            if messages[-1].get("role") != "assistant" or not isinstance(messages[-1].get("content"), str):
                self.counter.skip("bad_messages", str(messages)[:200])
                return None
            prompt = self.processor.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
            return prompt, messages[-1]["content"]
        if self.target != "messages" and has_caption:
            return tokens.GMASK + tokens.SOP + tokens.IMAGE_BEGIN + tokens.IMAGE + tokens.IMAGE_END, caption.strip()
        self.counter.skip("no_text", "")
        return None

    def __call__(self, raw: dict) -> Encoded | None:
        key = raw.get("__key__", "?")
        try:
            meta = json.loads(raw["json"]) if "json" in raw else {}
            caption = raw["txt"].decode("utf-8") if "txt" in raw else None
        except (ValueError, UnicodeDecodeError) as e:
            self.counter.skip("bad_json_or_text", f"{key}: {e}")
            return None
        image_bytes = next((raw[k] for k in IMAGE_KEYS if k in raw), None)
        if image_bytes is None:
            self.counter.skip("no_image", key)
            return None
        try:
            image = decode_rgb(image_bytes)
        except Exception as e:  # PIL raises many types for corrupt files
            self.counter.skip("bad_image", f"{key}: {e}")
            return None
        pa = self.prompt_and_answer(meta, caption)
        if pa is None:
            return None
        prompt, answer = pa
        if prompt.count(tokens.IMAGE) != 1:
            self.counter.skip("image_count", f"{key}: {prompt.count(tokens.IMAGE)} image slots for 1 image")
            return None
        enc = self.processor(text=[prompt], images=[image], return_tensors="pt")
        answer_ids = self.processor.tokenizer(answer + self.eos, add_special_tokens=False, return_tensors="pt")
        ids = torch.cat([enc["input_ids"][0], answer_ids["input_ids"][0]])
        n_prompt = enc["input_ids"].shape[1]
        if self.max_len is not None and len(ids) > self.max_len:
            self.counter.skip("too_long", f"{key}: {len(ids)} tokens")
            return None
        mm = torch.cat([enc["mm_token_type_ids"][0], torch.zeros(len(ids) - n_prompt, dtype=torch.long)]).long()
        labels = torch.full_like(ids, IGNORE)
        labels[n_prompt - 1 : -1] = ids[n_prompt:]
        grid = enc["image_grid_thw"]
        return Encoded(ids, labels, rope_positions(self.config, ids, mm, grid), mm, enc["pixel_values"], grid)
