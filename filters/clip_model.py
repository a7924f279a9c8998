"""Load an open_clip model, its eval preprocess and tokenizer from config: a name + tag, a local checkpoint or `hf-hub:`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

THRESHOLD_FILE = "threshold.json"  # written beside a checkpoint by `vlmdata train clip`


@dataclass
class LoadedClip:
    model: Any  # open_clip.CLIP, eval mode, on `device`
    preprocess: Any  # PIL RGB image -> float tensor [3, H, W]
    tokenizer: Any  # list[str] -> long tensor [B, context_length]
    device: str
    dtype: Any  # torch dtype of the model's weights (inputs are cast to it)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_precision(precision: str, device: str) -> str:
    """`auto`: bf16 on GPU, fp32 on CPU (bf16 matmuls on CPUs without AMX are slower than fp32)."""
    if precision == "auto":
        return "bf16" if device.startswith("cuda") else "fp32"
    return precision


def register_model_config(path: str | os.PathLike) -> str:
    """Register a custom open_clip model-config json (or a folder of them); returns the model name of a file."""
    import open_clip

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"open_clip model config {p} does not exist")
    open_clip.add_model_config(p)
    return p.stem


def load_clip(
    model: str,
    pretrained: str | None = None,
    model_config: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    init_seed: int = 0,
) -> LoadedClip:
    """Build the model (nothing downloads when HF_HUB_OFFLINE=1: tags must be cached, paths must exist).

    Initialisation is seeded, so a randomly initialised model (no `pretrained`) is the same in every worker.
    """
    import open_clip
    import torch

    if model_config:
        register_model_config(model_config)
    if pretrained and not _is_tag(model, pretrained) and not Path(pretrained).exists():
        raise FileNotFoundError(f"CLIP checkpoint {pretrained} does not exist (and is not a pretrained tag of {model})")
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        clip, _, preprocess = open_clip.create_model_and_transforms(
            model, pretrained=pretrained or None, precision=prec, device=dev
        )
    clip.eval()
    tokenizer = open_clip.get_tokenizer(model)
    dtype = next(clip.parameters()).dtype
    return LoadedClip(clip, preprocess, tokenizer, dev, dtype)


class ModelMissing(RuntimeError):
    """Weights a recipe names are not on this machine: the message names them and how to provide them."""


def missing_weights(model: str, pretrained: str | None) -> str | None:
    """Why the weights `model`/`pretrained` cannot be loaded offline, or None when they can (or none are named:
    a randomly initialised model). Checks without loading: a path exists; a pretrained tag or hub name is cached."""
    if not pretrained and not model.startswith("hf-hub:"):
        return None
    if pretrained and _is_checkpoint_path(pretrained):
        return None  # without importing open_clip (7 s of torch, torchvision and transformers here) on the driver
    if pretrained and not model.startswith("hf-hub:") and not _is_tag(model, pretrained):
        if Path(pretrained).exists():
            return None
        return f"CLIP checkpoint {pretrained} does not exist (and is not a pretrained tag of {model})"
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    if model.startswith("hf-hub:"):
        repo, files = model.removeprefix("hf-hub:"), ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
        label = model
    else:
        cfg = open_clip.get_pretrained_cfg(model, pretrained or "")
        repo = (cfg.get("hf_hub") or "").strip("/")
        files = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "open_clip_config.json")
        label = f"{model} (pretrained: {pretrained})"
        if not repo:
            return f"CLIP weights {label} have no hub copy open_clip can find offline; pass a local checkpoint path"
    if any(isinstance(try_to_load_from_cache(repo, f), str) for f in files):
        return None
    return (f"the CLIP weights {label} are not on this machine (hub repo {repo!r} is not in the Hugging Face cache "
            "and nothing is downloaded at run time). Provide them: on a machine with network run "
            f"`huggingface-cli download {repo}` and copy the cache (~/.cache/huggingface) here, or set the stage's "
            "`pretrained:` to a local open_clip checkpoint file")


def _is_checkpoint_path(pretrained: str) -> bool:
    """An existing file named with a folder (`models/clip.pt`, `./clip.pt`): never an open_clip tag, which has no
    path separator. A bare name (`openai`, or a file `clip.pt` in the working folder) is asked of open_clip."""
    return os.sep in pretrained and Path(pretrained).is_file()


def _is_tag(model: str, pretrained: str) -> bool:
    import open_clip

    if model.startswith("hf-hub:"):
        return False
    return pretrained.lower() in {t.lower() for t in open_clip.list_pretrained_tags_by_model(model)}


def checkpoint_threshold(pretrained: str | None, model_config: str | None = None) -> float:
    """The calibrated threshold written beside a local checkpoint (`threshold.json`, key `threshold`)."""
    candidates = [Path(p).parent / THRESHOLD_FILE for p in (pretrained, model_config) if p and Path(p).exists()]
    for path in candidates:
        if path.exists():
            data = json.loads(path.read_text())
            if "threshold" not in data:
                raise ValueError(f"{path} has no 'threshold' key")
            return float(data["threshold"])
    where = ", ".join(str(c) for c in candidates) or "no local checkpoint path given"
    raise ValueError(
        f"threshold: auto needs a {THRESHOLD_FILE} beside the local checkpoint ({where}); "
        "`vlmdata train clip` writes one, or give a number"
    )


def fit_batch_size(clip: LoadedClip, *, context: int | None = None, headroom: float = 0.7, largest: int = 4096) -> int:
    """The largest power-of-two image+text batch that fits in `headroom` of the GPU's free memory, measured: one
    forward at a probe batch gives the activation memory per sample (CUDA only; on CPU 64).

    context: text tokens per caption (default: the model's context length)."""
    import torch

    if not str(clip.device).startswith("cuda"):
        return 64
    device = torch.device(clip.device)
    size = _image_size(clip)
    probe = 16
    ctx = context or int(getattr(clip.model, "context_length", 77))
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    with torch.inference_mode():
        x = torch.zeros(probe, 3, size, size, device=device, dtype=clip.dtype)
        t = torch.zeros(probe, ctx, device=device, dtype=torch.long)
        clip.model.encode_image(x, normalize=True)
        clip.model.encode_text(t, normalize=True)
    torch.cuda.synchronize(device)
    per_sample = max(1, (torch.cuda.max_memory_allocated(device) - before) // probe)
    free, _ = torch.cuda.mem_get_info(device)
    fits = int(free * headroom // per_sample)
    return max(1, min(largest, 1 << max(0, fits.bit_length() - 1)))


def _image_size(clip: LoadedClip) -> int:
    size = getattr(getattr(clip.model, "visual", None), "image_size", 224)
    return int(size[0] if isinstance(size, tuple | list) else size)
