"""The GLM-4.1V processor (image resizing/patching + tokenizer + chat template) built offline or loaded."""

from __future__ import annotations

from transformers import Glm4vImageProcessor, Glm4vProcessor, Glm4vVideoProcessor, PreTrainedTokenizerFast

from model import tokens
from model.config import ModelConfig


def build_processor(cfg: ModelConfig, tokenizer: PreTrainedTokenizerFast) -> Glm4vProcessor:
    sizing = dict(
        patch_size=cfg.vision.patch_size,
        temporal_patch_size=cfg.vision.temporal_patch_size,
        merge_size=cfg.vision.spatial_merge_size,
        size={"shortest_edge": cfg.image.min_pixels, "longest_edge": cfg.image.max_pixels},
    )
    return Glm4vProcessor(
        image_processor=Glm4vImageProcessor(**sizing),
        video_processor=Glm4vVideoProcessor(**sizing),
        tokenizer=tokenizer,
        chat_template=tokens.CHAT_TEMPLATE,
    )
