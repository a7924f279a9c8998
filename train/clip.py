"""Train the demo's small CLIP filter model with open_clip's own trainer on WebDataset shards, then calibrate it.

`train_clip(cfg)` splits the input shards by key hash into train and held-out samples, runs `open_clip_train`
in a subprocess (the custom model config and two compatibility patches live only there), and writes into
`cfg.output`: `clip.pt` (weights), the model-config json, `threshold.json` and `metrics.json`.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import io
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

REPO = Path(__file__).resolve().parent.parent
IMAGE_EXTS = ("jpg", "png", "jpeg", "webp")  # what open_clip_train's wds loader reads (`jpg;png;jpeg;webp`)
CHECKPOINT = "clip.pt"


class ClipTrainConfig(BaseModel):
    """One run of `vlmdata train clip` (YAML recipe: configs/clip/demo_train.yaml)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    shards: str = Field(..., description="Input shard glob (or brace pattern): WebDataset tars with {key}.png|jpg and {key}.txt.")
    output: Path = Field(Path("models/clip-demo"), description="Folder for clip.pt, the model config, threshold.json, metrics.json.")
    model_config_path: Path = Field(
        REPO / "configs" / "clip" / "vlmdata-clip-demo.json",
        description="open_clip model-config json; its file stem is the model name.",
    )
    epochs: int = Field(10, ge=1, description="Passes over the training split.")
    batch_size: int = Field(128, ge=2, description="Contrastive batch size (negatives per sample = batch_size - 1).")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (AdamW, cosine schedule).")
    wd: float = Field(0.1, ge=0, description="Weight decay.")
    warmup: int = Field(10, ge=0, description="Warm-up steps.")
    seed: int = Field(0, description="Seed of the split, the trainer, its shuffles and the shuffled-caption evaluation.")
    holdout_fraction: float = Field(0.1, ge=0, lt=1, description="Share of samples (by key hash) held out of training.")
    keep_true_fraction: float = Field(
        0.95, gt=0, le=1, description="threshold.json = the score that keeps at least this share of true pairs."
    )
    calibrate_on: Literal["corpus", "heldout"] = Field(
        "corpus", description="True pairs the threshold is the quantile of: 'corpus' = every pair of the input shards "
        "(right when the model filters the corpus it was trained on, as in the demo); 'heldout' = held-out pairs only "
        "(right when it filters data it never saw).",
    )
    workers: int = Field(1, ge=0, description="DataLoader workers of the trainer (decode overlaps the step).")
    device: str = Field("cpu", description="Trainer device: cpu or cuda.")
    precision: str = Field("fp32", description="Trainer precision (open_clip_train --precision): fp32 on CPU, amp_bf16 on GPU.")
    eval_batch_size: int = Field(128, ge=1, description="Batch size of the scoring pass.")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides) -> ClipTrainConfig:
        data = yaml.safe_load(Path(path).read_text()) or {}
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(data)


# ---------------------------------------------------------------- samples and split


def iter_samples(pattern: str) -> Iterator[tuple[str, str, bytes, str]]:
    """(key, image extension, image bytes, caption) of every sample with an image and a caption, in shard order."""
    from pipelines.codec import TarSamples, open_url

    paths = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else _expand(pattern)
    if not paths:
        raise FileNotFoundError(f"no shards match {pattern!r}")
    for path in paths:
        with open_url(path) as stream:
            samples = TarSamples(stream)
            for sample in samples:
                yield from _pair(sample)
        if samples.error:
            raise ValueError(f"{path}: {samples.error}")


def _expand(pattern: str) -> list[str]:
    import braceexpand

    return [p for p in braceexpand.braceexpand(pattern) if os.path.exists(p)]


def _pair(sample: dict[str, bytes | str]) -> Iterator[tuple[str, str, bytes, str]]:
    files = {k.lower(): v for k, v in sample.items() if k != "__key__"}
    ext = next((e for e in IMAGE_EXTS if e in files), None)
    if ext and "txt" in files:
        key = str(sample["__key__"]).rsplit("/", 1)[-1]
        yield key, ext, files[ext], files["txt"].decode("utf-8", errors="replace").strip()  # type: ignore[union-attr]


def is_heldout(key: str, fraction: float, seed: int) -> bool:
    h = int(hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()[:8], 16)
    return h / 2**32 < fraction


def write_shards(samples: list[tuple[str, str, bytes, str]], out_dir: Path, min_shards: int) -> str:
    """WebDataset tars of `samples` (at least `min_shards`: the trainer wants a shard per loader worker); returns a brace pattern."""
    from pipelines.shards import ShardWriter

    per_shard = max(1, -(-len(samples) // max(1, min_shards)))
    writer = ShardWriter(str(out_dir), str(out_dir / ".tmp"), "train", per_shard, 1 << 40, with_stats=False)
    for key, ext, image, caption in samples:
        writer.write({"__key__": key, ext: image, "txt": caption.encode()})
    shards = writer.close()
    shutil.rmtree(out_dir / ".tmp", ignore_errors=True)
    return str(out_dir / f"train-{{0000..{len(shards) - 1:04d}}}.tar")


# ---------------------------------------------------------------- training (subprocess)


def trainer_argv(cfg: ClipTrainConfig, train_data: str, n_samples: int, logs: Path) -> list[str]:
    return [
        "--train-data", train_data, "--train-num-samples", str(n_samples), "--dataset-type", "webdataset",
        "--model", cfg.model_config_path.stem, "--batch-size", str(cfg.batch_size), "--epochs", str(cfg.epochs),
        "--lr", str(cfg.lr), "--wd", str(cfg.wd), "--warmup", str(cfg.warmup), "--seed", str(cfg.seed),
        "--workers", str(cfg.workers), "--device", cfg.device, "--precision", cfg.precision,
        "--logs", str(logs), "--name", "run", "--save-frequency", "0", "--zeroshot-frequency", "0",
        "--val-frequency", "0", "--log-every-n-steps", "5", "--report-to", "",
    ]


def _white_rgb_handler(key: str, data: bytes):
    """webdataset decoder handler: images → RGB with transparency over white, exactly as the clip_score filter sees them."""
    from PIL import Image

    from pipelines.imaging import to_rgb

    if key.rsplit(".", 1)[-1].lower() not in IMAGE_EXTS:
        return None
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return to_rgb(img)


def _run_trainer(model_config: str, seed: int, argv: list[str]) -> None:
    """Inside the training subprocess: register the model config, patch, and run open_clip_train's main."""
    import open_clip
    import webdataset
    import webdataset.filters
    import webdataset.tariterators
    from open_clip_train import data as oc_data
    from open_clip_train.main import main

    open_clip.add_model_config(model_config)  # must happen in the process that trains
    # webdataset 1.0.2 yields an end-of-shard marker without 'fname' that open_clip's grouper chokes on (issue 935).
    oc_data.tar_file_expander = functools.partial(webdataset.tariterators.tar_file_expander, eof_value=None)
    # open_clip's sample shuffle seeds itself from pid and time; seed it so a run is reproducible.
    counter = itertools.count()

    def seeded_shuffle(bufsize=1000, initial=100, **_):
        return lambda src: webdataset.filters._shuffle(src, bufsize, initial, rng=random.Random(seed * 7919 + next(counter)))

    webdataset.shuffle = seeded_shuffle
    plain_decode = webdataset.decode

    def decode(*handlers, **kw):
        return plain_decode(*[_white_rgb_handler if h == "pilrgb" else h for h in handlers], **kw)

    webdataset.decode = decode
    main(argv)


def run_trainer(cfg: ClipTrainConfig, train_data: str, n_samples: int, work: Path) -> Path:
    """Run open_clip_train in a fresh process; returns its final checkpoint (raises with the log's tail on failure)."""
    logs = work / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    argv = trainer_argv(cfg, train_data, n_samples, logs)
    code = (
        "import json,sys; from train.clip import _run_trainer; "
        f"_run_trainer({str(cfg.model_config_path)!r}, {cfg.seed}, json.loads(sys.argv[1]))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
           "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": str(cfg.seed)}
    log_path = work / "train.log"
    with open(log_path, "w") as log:
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(argv)], stdout=log, stderr=subprocess.STDOUT,
                              env=env, cwd=str(work))
    ckpt = logs / "run" / "checkpoints" / f"epoch_{cfg.epochs}.pt"
    if proc.returncode != 0 or not ckpt.exists():
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise RuntimeError(f"open_clip_train failed (exit {proc.returncode}); log {log_path}:\n{tail}")
    return ckpt


# ---------------------------------------------------------------- evaluation and calibration


def roc_auc(pos, neg) -> float:
    """Probability that a positive outscores a negative (ties count half): the Mann-Whitney form of ROC-AUC."""
    from scipy.stats import rankdata

    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    ranks = rankdata(np.concatenate([pos, neg]))  # ties get their average rank
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def mismatched_captions(captions: list[str], seed: int) -> list[str]:
    """Each caption moved to another image (a random permutation; an image never gets its own caption's text)."""
    rng = random.Random(seed)
    n = len(captions)
    perm = list(range(n))
    rng.shuffle(perm)
    for i in range(n):  # break the few fixed points (same text): swap with a neighbour whose caption differs
        if captions[perm[i]] == captions[i]:
            for j in itertools.chain(range(i + 1, n), range(i)):
                if captions[perm[j]] != captions[i] and captions[perm[i]] != captions[j]:
                    perm[i], perm[j] = perm[j], perm[i]
                    break
    return [captions[p] for p in perm]


def score_pairs(op, images: list[bytes], captions: list[str]) -> np.ndarray:
    """Cosine scores of (image, caption) pairs through the clip_score operator's own decode and encode path."""
    out = []
    for ok, s, _, _ in op.encode_batches(images, captions):
        part = np.full(len(ok), np.nan, dtype=np.float32)
        if s is not None:
            part[np.flatnonzero(ok)] = s
        out.append(part)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def evaluate(op, samples: list[tuple[str, str, bytes, str]], heldout: list[bool], cfg: ClipTrainConfig) -> dict:
    images = [s[2] for s in samples]
    captions = [s[3] for s in samples]
    true = score_pairs(op, images, captions)
    false = score_pairs(op, images, mismatched_captions(captions, cfg.seed))
    held = np.array(heldout)
    if cfg.calibrate_on == "heldout" and held.sum() < 20:
        raise ValueError(f"calibrate_on: heldout needs >= 20 held-out pairs, got {int(held.sum())}")
    calib = true[held] if cfg.calibrate_on == "heldout" else true
    threshold = float(np.quantile(calib, 1 - cfg.keep_true_fraction, method="lower"))

    def rates(mask: np.ndarray) -> dict:
        t, f = true[mask], false[mask]
        return {"samples": int(mask.sum()), "roc_auc": round(roc_auc(t, f), 4) if mask.any() else None,
                "true_kept": round(float((t >= threshold).mean()), 4) if mask.any() else None,
                "mismatched_dropped": round(float((f < threshold).mean()), 4) if mask.any() else None,
                "true_score_mean": round(float(t.mean()), 4) if mask.any() else None,
                "mismatched_score_mean": round(float(f.mean()), 4) if mask.any() else None}

    return {"threshold": threshold, "all": rates(np.ones(len(true), bool)), "train": rates(~held), "heldout": rates(held)}


# ---------------------------------------------------------------- the command


def train_clip(cfg: ClipTrainConfig, log=print) -> dict:
    """Split, train, save and calibrate; returns metrics.json's content."""
    start = time.perf_counter()
    out = cfg.output
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    samples = list(iter_samples(cfg.shards))
    heldout = [is_heldout(k, cfg.holdout_fraction, cfg.seed) for k, *_ in samples]
    train = [s for s, h in zip(samples, heldout, strict=True) if not h]
    if len(train) < cfg.batch_size:
        raise ValueError(f"{len(train)} training samples in {cfg.shards!r}: fewer than one batch of {cfg.batch_size}")
    log(f"clip: {len(samples)} samples ({len(train)} train, {len(samples) - len(train)} held out) from {cfg.shards}")
    train_data = write_shards(train, work / "shards", max(2, cfg.workers))
    t0 = time.perf_counter()
    ckpt = run_trainer(cfg, train_data, len(train), work)
    train_seconds = time.perf_counter() - t0
    log(f"clip: open_clip_train ran {cfg.epochs} epochs in {train_seconds:.0f} s")

    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    torch.save({"epoch": state["epoch"], "name": state["name"], "state_dict": state["state_dict"]}, out / CHECKPOINT)
    model_json = out / cfg.model_config_path.name
    shutil.copyfile(cfg.model_config_path, model_json)
    shutil.copyfile(work / "train.log", out / "train.log")

    metrics = calibrate(cfg, samples, heldout, train_seconds, start)
    shutil.rmtree(work, ignore_errors=True)
    return metrics


def calibrate(cfg: ClipTrainConfig, samples: list[tuple[str, str, bytes, str]], heldout: list[bool],
              train_seconds: float | None = None, start: float | None = None) -> dict:
    """Score the trained model in `cfg.output` on every pair; write threshold.json and metrics.json. Returns the metrics."""
    from filters.clip_score import ClipScore

    out = cfg.output
    model_json = out / cfg.model_config_path.name
    start = time.perf_counter() if start is None else start
    op = ClipScore(model=model_json.stem, pretrained=str(out / CHECKPOINT), model_config=str(model_json),
                   threshold=0.0, batch_size=cfg.eval_batch_size, device=cfg.device)
    op.setup()
    metrics = evaluate(op, samples, heldout, cfg)
    threshold = metrics.pop("threshold")
    (out / "threshold.json").write_text(json.dumps({
        "threshold": round(threshold, 4),
        "rule": f"the {1 - cfg.keep_true_fraction:.2f} quantile of the true-pair scores of the "
                f"{'held-out split' if cfg.calibrate_on == 'heldout' else 'whole input corpus (train + held out)'}: "
                f"keeps >= {cfg.keep_true_fraction:.0%} of those pairs",
        "calibrate_on": cfg.calibrate_on,
        "keep_true_fraction": cfg.keep_true_fraction,
        "samples": metrics["heldout" if cfg.calibrate_on == "heldout" else "all"]["samples"],
    }, indent=1) + "\n")
    metrics = {"model": model_json.stem, "checkpoint": CHECKPOINT, "threshold": round(threshold, 4),
               "epochs": cfg.epochs, "seed": cfg.seed, "train_seconds": round(train_seconds, 1) if train_seconds else None,
               "total_seconds": round(time.perf_counter() - start, 1), "config": cfg.model_dump(mode="json"), **metrics}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics
