"""The model a server or an in-process teacher runs: a saved model folder, or a preset built with seeded random
weights and a BPE trained on a fixed, seeded text (smoke tests only: its answers are noise)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import Glm4vForConditionalGeneration, Glm4vProcessor

from model.build import build, load
from model.config import load_preset, preset_names

_WORDS = ("a red circle blue square green triangle yellow star image photo of the on left right top bottom "
          "how many what colour is there are count answer question number text page chart table shows "
          "one two three four five six seven eight nine zero and with in at").split()


def smoke_texts(seed: int = 0, count: int = 2000) -> list[str]:
    """A fixed pseudo-corpus (words, digits, boxes, the answer format) for the tokenizer of a random preset."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12)))
        box = [rng.randint(0, 999) for _ in range(4)]
        out.append(f"{words} [{box[0]},{box[1]},{box[2]},{box[3]}] {rng.randint(0, 99)} + {rng.randint(0, 99)}.")
        out.append(f"<think>{words}</think><answer><|begin_of_box|>{rng.randint(0, 999)}<|end_of_box|></answer>")
    return out


def is_saved_model(ref: str | Path) -> bool:
    return (Path(ref) / "config.json").exists()


@dataclass
class LoadedModel:
    model: Glm4vForConditionalGeneration
    processor: Glm4vProcessor
    name: str
    source: str  # "folder:PATH" or "preset:NAME (random weights)"


def load_model(ref: str | Path, *, device: str = "auto", dtype: str = "auto", name: str | None = None) -> LoadedModel:
    """`ref` is a saved Hugging Face folder (e.g. a training run's OUTPUT/hf) or a preset name / preset YAML.

    A missing folder that is not a preset stops here, naming both ways to provide a model."""
    ref_s = str(ref)
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    if is_saved_model(ref_s):
        model, processor = load(ref_s, dtype=torch_dtype)
        source = f"folder:{Path(ref_s).resolve()}"
    elif ref_s in preset_names() or (ref_s.endswith((".yaml", ".yml")) and Path(ref_s).exists()):
        cfg = load_preset(ref_s)
        model, processor = build(cfg, texts=smoke_texts(cfg.seed))
        model = model.to(torch_dtype)
        source = f"preset:{cfg.name} (random weights, seed {cfg.seed})"
    else:
        raise FileNotFoundError(
            f"no model at {ref_s!r}: give a saved model folder (one holding config.json, e.g. a training run's "
            f"OUTPUT/hf) or a preset name ({', '.join(preset_names())})"
        )
    model = model.to(dev).eval()
    return LoadedModel(model=model, processor=processor, name=name or ref_s, source=source)
