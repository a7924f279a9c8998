"""Model configuration: one pydantic object per model size, read from YAML presets under configs/model."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, Field

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs" / "model"


class TextConfig(BaseModel):
    """The GLM language decoder (3D-RoPE)."""

    hidden_size: int = Field(description="Width of the decoder; must equal vision.out_hidden_size.")
    intermediate_size: int = Field(description="Hidden width of the gated MLP.")
    num_hidden_layers: int = Field(description="Number of decoder layers.")
    num_attention_heads: int = Field(description="Query heads.")
    num_key_value_heads: int = Field(description="Key/value heads (grouped-query attention).")
    max_position_embeddings: int = Field(32768, description="Longest sequence the RoPE is set up for.")
    rope_theta: float = Field(10000.0, description="RoPE base.")
    partial_rotary_factor: float = Field(0.5, description="Share of each head's dims that are rotated.")
    mrope_section: list[int] = Field(
        description="Rotary dims per (t, h, w) axis; 2*sum = head_dim*partial_rotary_factor."
    )
    rms_norm_eps: float = Field(1e-5, description="RMSNorm epsilon.")


class VisionConfig(BaseModel):
    """The ViT encoder (3D patch conv, 2D-RoPE) and its 2x2 merger / MLP projector."""

    depth: int = Field(description="Number of ViT blocks.")
    hidden_size: int = Field(description="ViT width.")
    intermediate_size: int = Field(description="Hidden width of the MLP projector (merger); the ViT MLP width is the decoder width.")
    num_heads: int = Field(description="ViT attention heads.")
    patch_size: int = Field(14, description="Spatial patch size in pixels.")
    temporal_patch_size: int = Field(2, description="Frames per 3D patch (images are repeated).")
    spatial_merge_size: int = Field(2, description="Patches merged per side into one LLM token.")
    image_size: int = Field(336, description="Reference size for the learned position embedding.")


class ImageConfig(BaseModel):
    """How the processor resizes images (multiples of patch*merge, bounded pixel count)."""

    min_pixels: int = Field(112 * 112, description="Smallest resized image area.")
    max_pixels: int = Field(28 * 28 * 1024, description="Largest resized image area.")


class ModelConfig(BaseModel):
    """One model size: the decoder, the encoder, image sizing and the tokenizer it is built with."""

    name: str = Field(description="Preset name, e.g. tiny, small, glm-4.1v-9b.")
    text: TextConfig
    vision: VisionConfig
    image: ImageConfig = Field(default_factory=ImageConfig)
    vocab_size: int = Field(
        description="BPE vocabulary size to train for tiny/small (including special tokens); "
        "for a checkpoint built from a real tokenizer, its length."
    )
    seed: int = Field(0, description="Seed for weight initialisation.")

    @classmethod
    def from_yaml(cls, path: str | Path) -> ModelConfig:
        return cls.model_validate(yaml.safe_load(Path(path).read_text()))


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name_or_path: str | Path) -> ModelConfig:
    """A preset name (tiny, small, glm-4.1v-9b) or the path of a YAML file."""
    path = Path(name_or_path)
    if str(name_or_path) in preset_names():
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no model preset {name_or_path!r}; presets: {preset_names()}")
    return ModelConfig.from_yaml(path)
