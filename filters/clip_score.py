"""CLIP score filter: cosine(image, caption) of an open_clip model; keeps the L2-normalised embeddings as float16."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from filters.clip_model import LoadedClip, checkpoint_threshold, fit_batch_size, load_clip
from pipelines.columns import sidecar
from pipelines.imaging import DecodedViews, jpeg_frame, views
from pipelines.operator import Operator, OperatorConfig, with_verdicts

DECODE_FAILED = "clip_decode_failed"


class ClipScoreConfig(OperatorConfig):
    model: str = Field("ViT-B-32", description="open_clip model name (e.g. 'ViT-B-32', 'ViT-L-14') or 'hf-hub:org/repo'.")
    pretrained: str | None = Field(
        None, description="Pretrained tag (e.g. 'openai', must be cached) or a local checkpoint path; None = random init."
    )
    model_config_path: str | None = Field(
        None, alias="model_config",
        description="Path to a custom open_clip model-config json (its file stem is the model name), registered before creating.",
    )
    threshold: float | Literal["auto"] = Field(
        0.3, description="Keep rows whose cosine score is >= this (0.3 as in the GLM-4.1V report, for OpenAI-scale CLIPs); "
        "'auto' reads threshold.json beside the local checkpoint (written by `vlmdata train clip`).",
    )
    batch_size: int | Literal["auto"] = Field(
        64, description="Images and captions per forward pass; 'auto': the largest power of two that fits in 70% of the "
        "GPU's free memory (measured at setup; 64 on CPU).",
    )
    device: str = Field("auto", description="'auto' (cuda when present, else cpu), 'cpu', 'cuda', 'cuda:1', ...")
    decode_on_device: Literal["auto", "always", "never"] = Field(
        "auto", description="'auto': when the model runs on a GPU, JPEGs are decoded there (nvJPEG through torchvision) "
        "and every picture is resized and normalised there; 'never': Pillow on the CPU, exactly open_clip's preprocess "
        "(the pixels the demo CLIP was trained on); 'always': the tensor path even on CPU (torchvision's decoder, "
        "torch's antialiased resize: tests and the GPU script's smoke run).",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="Model weights' precision; 'auto' = bf16 on GPU, fp32 on CPU."
    )
    keep_embeddings: bool = Field(True, description="Fill image_embedding/text_embedding (float16) for dedup and retrieval.")
    num_threads: int = Field(
        2, ge=1, description="Threads decoding and resizing the next sub-batch while the model encodes this one."
    )
    torch_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads per worker; None = OMP_NUM_THREADS if set (Spark sets it to "
        "spark.task.cpus), else the cores this process may use.",
    )

    model_config = {**OperatorConfig.model_config, "populate_by_name": True, "protected_namespaces": ()}


class ClipScore(Operator):
    """Scores every live row; rows under the threshold are dropped as `clip_score_low:<score>`."""

    name = "clip_score"
    Config = ClipScoreConfig
    reads = ("image", "text")
    adds = (
        pa.field("clip_score", pa.float32()),  # cosine(image, caption) of the CLIP filter model
        # L2-normalised embeddings, kept beside the shards (NAME.embeddings.parquet) for dedup and retrieval
        sidecar(pa.field("image_embedding", pa.list_(pa.float16())), "embeddings"),
        sidecar(pa.field("text_embedding", pa.list_(pa.float16())), "embeddings"),
    )

    clip: LoadedClip | None = None
    threshold: float = 0.3
    batch: int = 64  # resolved batch_size
    on_device: bool = False  # decode (JPEG) and preprocess with torch on the model's device
    _pool: ThreadPoolExecutor | None = None
    _pil_steps: Any = None
    _normalize: Any = None

    def preflight(self) -> None:
        """On the driver, before anything starts: the named weights must be here (nothing downloads)."""
        from filters.clip_model import ModelMissing, missing_weights

        if self.config.model_config_path and not Path(self.config.model_config_path).exists():
            raise ModelMissing(f"clip_score: model config {self.config.model_config_path} does not exist")
        reason = missing_weights(self.config.model, self.config.pretrained)
        if reason:
            raise ModelMissing(f"clip_score: {reason}")

    def setup(self) -> None:
        import torch

        cfg = self.config
        threads = cfg.torch_threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or len(os.sched_getaffinity(0))
        torch.set_num_threads(max(1, threads))
        self.threshold = (
            checkpoint_threshold(cfg.pretrained, cfg.model_config_path) if cfg.threshold == "auto" else float(cfg.threshold)
        )
        self.clip = load_clip(cfg.model, cfg.pretrained, cfg.model_config_path, cfg.device, cfg.precision)
        self._split_preprocess()
        self._pool = ThreadPoolExecutor(cfg.num_threads, thread_name_prefix="clip-decode")
        self.batch = fit_batch_size(self.clip) if cfg.batch_size == "auto" else cfg.batch_size
        on_gpu = str(self.clip.device).startswith("cuda")
        wanted = cfg.decode_on_device == "always" or (cfg.decode_on_device == "auto" and on_gpu)
        self.on_device = wanted and self._tensor_steps_work()
        if cfg.decode_on_device == "always" and not self.on_device:
            raise ValueError(f"clip_score: decode_on_device: always, but {cfg.model}'s preprocess has no tensor path "
                             "(it must be torchvision transforms then ToTensor + Normalize)")

    # -- decoding (runs on the pool, overlapping the model's forward on the previous sub-batch) --

    def _split_preprocess(self) -> None:
        """Split `Compose([...PIL steps, ToTensor, Normalize])` so the PIL steps run per image on the pool and
        ToTensor + Normalize run once per sub-batch on a uint8 stack (per-image tensor ops cost more than the resize)."""
        from torchvision import transforms as T

        assert self.clip is not None
        steps = getattr(self.clip.preprocess, "transforms", None)
        self._pil_steps, self._normalize = None, None
        if steps and len(steps) >= 2 and isinstance(steps[-2], T.ToTensor) and isinstance(steps[-1], T.Normalize):
            self._pil_steps, self._normalize = T.Compose(steps[:-2]), steps[-1]

    def _tensor_steps_work(self) -> bool:
        """The preprocess's resize/crop steps accept a uint8 tensor and give what they give a PIL picture's shape."""
        import torch
        from PIL import Image

        if self._pil_steps is None:
            return False
        try:
            probe = Image.new("RGB", (37, 23), (10, 200, 30))
            want = np.asarray(self._pil_steps(probe)).shape
            got = self._pil_steps(torch.from_numpy(np.array(probe)).permute(2, 0, 1))
            return isinstance(got, torch.Tensor) and got.dtype == torch.uint8 and tuple(got.permute(1, 2, 0).shape) == want
        except Exception:  # noqa: BLE001 - a PIL-only step: no tensor path
            return False

    def _pixels(self, data: bytes | None, pictures: DecodedViews | None = None) -> Any:
        """A preprocessed image (uint8 HWC array on the split path, else a tensor), or None when the bytes do not decode.
        `pictures`: the pass's decoded views (pool threads do not see `views()`); None decodes here."""
        assert self.clip is not None
        try:
            rgb = (pictures or views()).rgb(data or b"")
            if self._pil_steps is not None:
                return np.asarray(self._pil_steps(rgb), dtype=np.uint8)
            return self.clip.preprocess(rgb)
        except Exception:  # noqa: BLE001 - any undecodable image becomes an error row, never an exception
            return None

    def _stack(self, good: list[Any]) -> Any:
        import torch

        if not isinstance(good[0], np.ndarray):
            return torch.stack(good)
        norm = self._normalize
        if any(g.shape != good[0].shape for g in good):  # a PIL pipeline without a fixed crop: per image, then stack
            from torchvision.transforms import functional as F

            return torch.stack([norm(F.to_tensor(g)) for g in good])
        return self._normalised(torch.from_numpy(np.stack(good)).permute(0, 3, 1, 2))  # [B, 3, H, W]

    def _normalised(self, pixels: Any) -> Any:
        """[B, 3, H, W] uint8 → the model's float input (/255, then the preprocess's mean and std), on their device."""
        import torch

        norm = self._normalize
        x = pixels.float().div_(255)
        mean = torch.tensor(norm.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(norm.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return x.sub_(mean).div_(std)

    def _per_thread(self, fn: Any, items: list[Any]) -> list[Any]:
        """`fn` over `items` with one pool task per decode thread (a contiguous share), not one per item: a future per
        image costs about as much CPU as a small stamp's resize."""
        assert self._pool is not None
        step = max(1, -(-len(items) // max(1, min(self.config.num_threads, len(items)))))
        chunks = [items[i:i + step] for i in range(0, len(items), step)]
        return [r for done in self._pool.map(lambda chunk: [fn(x) for x in chunk], chunks) for r in done]

    # -- the tensor path: nvJPEG decode, resize and normalisation on the model's device --

    def _host_picture(self, data: bytes | None, pictures: DecodedViews) -> Any:
        """[3, H, W] uint8 CPU tensor of the picture `decode_rgb` gives (decoded once per pass), or None."""
        import torch

        try:
            return torch.from_numpy(np.array(pictures.rgb(data or b""))).permute(2, 0, 1)
        except Exception:  # noqa: BLE001 - an undecodable image becomes an error row
            return None

    def _device_jpegs(self, blobs: list[bytes]) -> list[Any]:
        """nvJPEG (torchvision.io.decode_jpeg) on the model's device: [3, H, W] uint8 each, None where it fails.
        One batched call; if any image fails the batch (the call returns nothing partial), each is decoded alone."""
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        assert self.clip is not None
        device = self.clip.device
        tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        try:
            return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True))
        except Exception:  # noqa: BLE001 - find the one(s) the decoder refuses
            out = []
            for t in tensors:
                try:
                    out.append(decode_jpeg(t, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True))
                except Exception:  # noqa: BLE001
                    out.append(None)
            return out

    def _prepare_on_device(self, images: list[bytes | None], pictures: DecodedViews) -> tuple[Any, list[bool]]:
        """Pictures this pass already decoded are reused; other plain JPEGs (1 or 3 components, within Pillow's bomb
        limit) are decoded on the device; everything else (PNG, CMYK, what nvJPEG refuses) by Pillow, as `decode`
        does. Then the preprocess's own resize/crop steps run on the device tensors, and one normalisation."""
        import torch
        from PIL import Image

        assert self.clip is not None and self._pool is not None
        limit = Image.MAX_IMAGE_PIXELS
        device_side: list[int] = []
        for i, data in enumerate(images):
            frame = jpeg_frame(data or b"") if pictures.peek(data or b"") is None else None
            if frame is not None and frame[2] in (1, 3) and (limit is None or frame[0] * frame[1] <= limit):
                device_side.append(i)
        found: list[Any] = [None] * len(images)
        if device_side:
            for i, t in zip(device_side, self._device_jpegs([images[i] or b"" for i in device_side]), strict=True):
                found[i] = t
        host = [i for i in range(len(images)) if found[i] is None]
        for i, t in zip(host, self._per_thread(lambda b: self._host_picture(b, pictures), [images[i] for i in host]),
                        strict=True):
            found[i] = t
        ok = [t is not None for t in found]
        if not any(ok):
            return None, ok
        device = self.clip.device
        pixels = torch.stack([self._pil_steps(t.to(device, non_blocking=True)) for t in found if t is not None])
        return self._normalised(pixels), ok

    def _prepare(self, images: list[bytes | None], texts: list[str | None],
                 pictures: DecodedViews) -> tuple[Any, Any, list[bool]]:
        assert self.clip is not None and self._pool is not None
        if self.on_device:
            x, ok = self._prepare_on_device(images, pictures)
        else:
            pixels = self._per_thread(lambda b: self._pixels(b, pictures), images)
            ok = [p is not None for p in pixels]
            good = [p for p in pixels if p is not None]
            x = self._stack(good) if good else None
        tokens = self.clip.tokenizer([t or "" for t, o in zip(texts, ok, strict=True) if o]) if x is not None else None
        return x, tokens, ok

    def _encode(self, x: Any, tokens: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores [n] float32, image embeddings [n, d] float16, text embeddings [n, d] float16)."""
        import torch

        assert self.clip is not None
        clip = self.clip
        with torch.inference_mode():
            img = clip.model.encode_image(x.to(clip.device, clip.dtype), normalize=True).float()
            txt = clip.model.encode_text(tokens.to(clip.device), normalize=True).float()
            scores = (img * txt).sum(-1)
        return scores.cpu().numpy(), img.half().cpu().numpy(), txt.half().cpu().numpy()

    def encode_batches(self, images: list[bytes | None], texts: list[str | None]):
        """Yield (ok mask, scores, image emb, text emb) per sub-batch; decoding of sub-batch i+1 overlaps encoding of i."""
        if self.clip is None:
            self.setup()
        assert self._pool is not None
        pictures = views()  # this thread's (the pass's) decoded views, handed to the decoding threads
        bs = self.batch
        starts = list(range(0, len(images), bs))
        # The sub-batch's own decode fans out over the pool; its preparation runs on a separate thread
        # so the pool is free for it while the model (which releases the GIL) encodes the previous one.
        with ThreadPoolExecutor(1, thread_name_prefix="clip-prepare") as ahead:
            pending: Future | None = ahead.submit(self._prepare, images[0:bs], texts[0:bs], pictures) if starts else None
            for i, _ in enumerate(starts):
                assert pending is not None
                x, tokens, ok = pending.result()
                nxt = starts[i + 1] if i + 1 < len(starts) else None
                pending = ahead.submit(self._prepare, images[nxt:nxt + bs], texts[nxt:nxt + bs], pictures) if nxt is not None else None
                if x is None:
                    yield ok, None, None, None
                else:
                    yield ok, *self._encode(x, tokens)

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        n = batch.num_rows
        images = batch.column("image").to_pylist()
        texts = batch.column("text").to_pylist()
        ok_all: list[bool] = []
        scores = np.full(n, np.nan, dtype=np.float32)
        dim = 0
        img_rows: list[np.ndarray] = []
        txt_rows: list[np.ndarray] = []
        for ok, s, ie, te in self.encode_batches(images, texts):
            start = len(ok_all)
            idx = [start + j for j, o in enumerate(ok) if o]
            ok_all.extend(ok)
            if s is None:
                continue
            scores[idx] = s
            dim = ie.shape[1]
            img_rows.append(ie)
            txt_rows.append(te)
        keep, reason, error = [], [], []
        for i in range(n):
            if not ok_all[i]:
                keep.append(False), reason.append(DECODE_FAILED), error.append(True)
            elif scores[i] >= self.threshold:
                keep.append(True), reason.append(None), error.append(False)
            else:
                keep.append(False), reason.append(f"clip_score_low:{scores[i]:.3f}"), error.append(False)
        columns: dict[str, Any] = {"clip_score": pa.array(scores, type=pa.float32(), from_pandas=True)}
        if self.config.keep_embeddings and img_rows:
            mask = np.array([not o for o in ok_all])
            columns["image_embedding"] = _embedding_column(np.concatenate(img_rows), mask, dim)
            columns["text_embedding"] = _embedding_column(np.concatenate(txt_rows), mask, dim)
        return with_verdicts(batch, keep, reason, error, columns=columns)

    def __getstate__(self) -> dict[str, Any]:
        # Engines ship operators to workers by pickling: the model and pool are rebuilt there by setup().
        state = dict(self.__dict__)
        state.pop("clip", None)
        for name in ("_pool", "_pil_steps", "_normalize"):
            state.pop(name, None)
        return state


def _embedding_column(values: np.ndarray, missing: np.ndarray, dim: int) -> pa.Array:
    """list<float16> with one row of `dim` values per present row (values [n_present, dim]) and nulls where missing."""
    lengths = np.where(missing, 0, dim)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = pa.array(values.reshape(-1).astype(np.float16), type=pa.float16())
    return pa.ListArray.from_arrays(pa.array(offsets), flat, mask=pa.array(missing) if missing.any() else None)
