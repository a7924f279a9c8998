"""Turns one raw sample (images + messages or caption) into token ids, 3D positions, pixels and shifted labels.

A sample may hold no image, one (`jpg|png|…`) or several (`0.jpg`, `1.png`, … in the order of the image
parts of its messages). `messages` are HF chat messages whose content is a string or a list of parts
(`{"type": "image"}`, `{"type": "text", "text": …}`); the loss is on every assistant turn and on the token
that ends it. Anything the encoder cannot use is skipped and counted by reason, never raised.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers import Glm4vConfig, Glm4vModel, Glm4vProcessor

from model import tokens
from pipelines.columns import message_text
from pipelines.imaging import decode_rgb
from train.data.counters import SkipCounter

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
NUMBERED_IMAGE = re.compile(r"^(\d+)\.(jpg|jpeg|png|webp)$")
IGNORE = -100
IMAGE_BLOCK = tokens.IMAGE_BEGIN + tokens.IMAGE + tokens.IMAGE_END


@dataclass
class Encoded:
    """One sample ready for packing. labels are already shifted: labels[t] is the target of position t."""

    input_ids: torch.Tensor  # [n]
    labels: torch.Tensor  # [n]
    positions: torch.Tensor  # [3, n] (t, h, w) rope positions, starting at 0
    mm_token_type_ids: torch.Tensor  # [n]
    pixel_values: torch.Tensor | None  # [patches, 3*tp*p*p]
    image_grid_thw: torch.Tensor | None  # [images, 3]
    source: str = ""

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


class _RopeIndex:
    """Reuses transformers' own GLM-4.1V 3D-position code without instantiating a model."""

    get_rope_index = Glm4vModel.get_rope_index
    get_vision_position_ids = Glm4vModel.get_vision_position_ids

    def __init__(self, config: Glm4vConfig) -> None:
        self.config = config


def reference_rope_positions(config: Glm4vConfig, input_ids: torch.Tensor, mm: torch.Tensor,
                             grid: torch.Tensor | None) -> torch.Tensor:
    """[3, n] positions from transformers' `Glm4vModel.get_rope_index` (a Python loop over every token): the
    reference `rope_positions` is checked against."""
    if grid is None:
        return torch.arange(input_ids.shape[0]).expand(3, -1).clone()
    pos, _ = _RopeIndex(config).get_rope_index(input_ids[None], mm[None], image_grid_thw=grid)
    return pos[:, 0]


def rope_positions(config: Glm4vConfig, input_ids: torch.Tensor, mm: torch.Tensor, grid: torch.Tensor | None) -> torch.Tensor:
    """[3, n] (t, h, w) positions of one unpacked sample, as the model would compute them itself
    (`Glm4vModel.get_rope_index`), with one step per text span or image instead of one per token: text advances
    all three by 1 per token; an image of merged grid t x h x w starts all three at the current position p
    (t: p + frame, h: p + row, w: p + column) and the text after it continues at p + max(h, w)."""
    n = int(input_ids.shape[0])
    if grid is None:
        return torch.arange(n).expand(3, -1).clone()
    merge = config.vision_config.spatial_merge_size
    m = mm.numpy().astype(bool)  # numpy: a sample's handful of small ops cost less than torch's dispatch
    bounds = [0, *(np.flatnonzero(m[1:] != m[:-1]) + 1).tolist(), n]
    pos = np.empty((3, n), dtype=np.int64)
    grids = iter(grid.tolist())
    cur = 0
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        if not m[s]:
            pos[:, s:e] = np.arange(cur, cur + e - s)
            cur += e - s
            continue
        t, h, w = next(grids)
        h, w = h // merge, w // merge
        if t * h * w != e - s:  # as transformers would fail: a run of image tokens that is not one whole image
            raise ValueError(f"{e - s} image tokens where the image has {t * h * w}")
        pos[0, s:e] = np.repeat(np.arange(cur, cur + t), h * w)
        pos[1, s:e] = np.tile(np.repeat(np.arange(cur, cur + h), w), t)
        pos[2, s:e] = np.tile(np.arange(cur, cur + w), t * h)
        cur += max(h, w)
    return torch.from_numpy(pos).to(input_ids.dtype)


class ImageInputs:
    """The image processor's `pixel_values` and `image_grid_thw` for a sample's RGB pictures, through the
    processor's own resize, rescale/normalise and patchify (so the values are the processor's, bit for bit) but
    without its per-call argument validation and input conversion, which cost more than the pixel work on
    training-size images. Pictures that are not 8-bit RGB go through the processor's full call."""

    def __init__(self, image_processor) -> None:
        ip = self.ip = image_processor
        self.kw: dict | None = None
        try:  # the processor's own defaults, standardised and validated once (as each call would)
            kwargs = {k: getattr(ip, k, None) for k in ip._valid_kwargs_names}
            self.kw = ip._standardize_kwargs(**kwargs)
            ip._validate_preprocess_kwargs(**self.kw)
            self.factor = ip.patch_size * ip.merge_size
        except AttributeError:  # another transformers or processor class: every call takes the full path
            self.kw = None
        self.mean = self.std = None
        kw = self.kw
        if kw is not None and kw["do_rescale"] and kw["do_normalize"]:
            # the processor's fused (x - 255*mean) / (255*std) per channel, laid out along a patch
            # (channel-major: channel x temporal x patch x patch), so uint8 pixels are patchified first (4x less
            # data to permute) and normalised after: the same float32 subtraction and division per value
            mean, std, _ = ip._fuse_mean_std_and_rescale_factor(
                do_normalize=True, image_mean=kw["image_mean"], image_std=kw["image_std"], do_rescale=True,
                rescale_factor=kw["rescale_factor"], device=torch.device("cpu"))
            per = ip.temporal_patch_size * ip.patch_size**2
            self.mean = torch.as_tensor(mean, dtype=torch.float32).repeat_interleave(per)
            self.std = torch.as_tensor(std, dtype=torch.float32).repeat_interleave(per)

    def __call__(self, images: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kw is None or any(im.mode != "RGB" or "transparency" in im.info for im in images):
            out = self.ip(images=images, return_tensors="pt")
            return out["pixel_values"], out["image_grid_thw"]
        ip, kw = self.ip, self.kw
        pixels, grids = [], []
        for im in images:
            x = torch.from_numpy(np.array(im)).permute(2, 0, 1).contiguous()[None]
            if kw["do_resize"]:
                x = ip.resize(images=x, size=kw["size"], resample=kw["resample"], factor=self.factor,
                              temporal_factor=ip.temporal_patch_size)
            if self.mean is None:
                x = ip.rescale_and_normalize(x, kw["do_rescale"], kw["rescale_factor"], kw["do_normalize"],
                                             kw["image_mean"], kw["image_std"])
            patches, gh, gw = ip.patchify(x, patch_size=ip.patch_size, merge_size=ip.merge_size,
                                          temporal_patch_size=ip.temporal_patch_size)
            if self.mean is not None:
                patches = patches.to(torch.float32).sub_(self.mean).div_(self.std)
            pixels.append(patches[0])
            grids.append([1, gh, gw])
        return (pixels[0] if len(pixels) == 1 else torch.cat(pixels)), torch.tensor(grids)


def decode_image(image_bytes: bytes) -> Image.Image:
    """The one place where a sample's image bytes become an RGB picture."""
    return decode_rgb(image_bytes)  # upright, 8-bit, transparency over white: the picture curation judged


def image_bytes_of(raw: dict) -> list[bytes]:
    """The sample's images in order: `jpg|png|…` first, then `N.jpg|png|…` by N."""
    plain = [raw[k] for k in IMAGE_KEYS if k in raw][:1]
    numbered = sorted((int(m.group(1)), raw[k]) for k in raw if isinstance(k, str) and (m := NUMBERED_IMAGE.match(k)))
    return plain + [b for _, b in numbered]


class Skip(Exception):
    """A sample the encoder cannot use; args = (reason, detail)."""


def _check_messages(messages: object) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise Skip("bad_messages", f"messages is {type(messages).__name__}, not a non-empty list")
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise Skip("bad_messages", "a message is not an object with a role")
        content = m.get("content")
        if isinstance(content, list):
            for part in content:
                if not isinstance(part, dict) or part.get("type") not in ("image", "text", "video"):
                    raise Skip("bad_messages", f"content part {str(part)[:80]}")
                if part.get("type") == "video":
                    raise Skip("video_unsupported", "video parts are not trained yet")
                if part.get("type") == "text" and not isinstance(part.get("text"), str):
                    raise Skip("bad_messages", "text part without a string text")
        elif not isinstance(content, str):
            raise Skip("bad_messages", f"content is {type(content).__name__}")
    if not any(m["role"] == "assistant" and message_text(m).strip() for m in messages):
        raise Skip("no_assistant_turn", "no assistant message with text")
    return messages


def _image_slots(messages: list[dict]) -> int:
    return sum(1 for m in messages if isinstance(m["content"], list) for p in m["content"] if p.get("type") == "image")


def _with_image_slots(messages: list[dict], n: int) -> list[dict]:
    """Messages whose content names no image (legacy string content) get the sample's images in front of the
    first user turn, where GLM-4.1V's template puts them."""
    out = [dict(m) for m in messages]
    for m in out:
        if m["role"] == "user":
            text = m["content"] if isinstance(m["content"], str) else None
            parts = [{"type": "text", "text": text}] if text is not None else list(m["content"])
            m["content"] = [{"type": "image"} for _ in range(n)] + parts
            return out
    raise Skip("image_count", f"{n} images but no user turn to put them in")


def _compiled(chat_template: str | None):
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template
    except ImportError:  # a transformers without it: the processor renders
        return None
    return _compile_jinja_template(chat_template) if chat_template else None


class Encoder:
    """Sample -> Encoded with the processor's image processor and tokenizer; counts and skips bad samples."""

    def __init__(self, processor: Glm4vProcessor, config: Glm4vConfig, target: str, counter: SkipCounter,
                 max_len: int | None = None, over_long: str = "truncate", reference: bool = False) -> None:
        """reference=True encodes the slow, obvious way (the processor's full image call, transformers'
        get_rope_index, each segment tokenized with its image tokens spelled out): the fast path is checked
        against it."""
        self.processor, self.config, self.counter = processor, config, counter
        self.target, self.max_len, self.over_long = target, max_len, over_long
        self.reference = reference
        self.tok = processor.tokenizer
        self.bpe = getattr(self.tok, "backend_tokenizer", None)
        # the reference path renders through the processor itself, so the compiled shortcut is checked against it
        self.template = None if reference else _compiled(processor.chat_template)
        self.special_tokens = dict(self.tok.special_tokens_map)
        self.images = ImageInputs(processor.image_processor)
        self.piece_ids: dict[str, list[int]] = {}  # short text pieces (template and role markup) -> ids
        self.eos = self.tok.eos_token
        self.image_id = config.image_token_id
        self.begin_id, self.end_id = config.image_start_token_id, config.image_end_token_id
        self.merge = processor.image_processor.merge_size

    def render(self, messages: list[dict], add_generation_prompt: bool = False, tokenize: bool = False) -> str:
        """The processor's chat template, rendered by its compiled jinja template (the processor's own
        apply_chat_template spends milliseconds per call validating arguments; a sample renders it 2n+1 times)."""
        if self.template is None:
            return self.processor.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                                      tokenize=False)
        return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                    **self.special_tokens)

    # -- text segments: (text, is_target) --------------------------------------------------------------------
    def caption_segments(self, caption: str, n_images: int) -> list[tuple[str, bool]]:
        return [(tokens.GMASK + tokens.SOP + IMAGE_BLOCK * n_images, False), (caption.strip() + self.eos, True)]

    def chat_segments(self, messages: list[dict], n_images: int) -> list[tuple[str, bool]]:
        """The chat template's rendering, split into prompt and assistant spans (each assistant span ends with
        the token after it: the next turn's role token, or EOS)."""
        slots = _image_slots(messages)
        if slots == 0 and n_images:
            messages = _with_image_slots(messages, n_images)
        elif slots != n_images:
            raise Skip("image_count", f"{slots} image parts for {n_images} images")
        render = self.render
        full = render(messages, tokenize=False)
        segments, cursor = [], 0
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            prompt = render(messages[:i], add_generation_prompt=True, tokenize=False)
            upto = render(messages[: i + 1], tokenize=False)
            if not (upto.startswith(prompt) and full.startswith(upto)):
                raise Skip("template_not_prefix", "the chat template does not render turns as prefixes")
            segments += [(full[cursor : len(prompt)], False), (full[len(prompt) : len(upto)], True)]
            cursor = len(upto)
        segments.append((full[cursor:] + self.eos, False))
        return segments

    def segments(self, meta: dict, caption: str | None, n_images: int) -> list[tuple[str, bool]]:
        messages = meta.get("messages")
        has_caption = bool(caption and caption.strip())
        if self.target == "caption" and has_caption:
            return self.caption_segments(caption, n_images)
        if messages is not None:
            return self.chat_segments(_check_messages(messages), n_images)
        if self.target != "messages" and has_caption:
            return self.caption_segments(caption, n_images)
        raise Skip("no_text", "neither a caption nor messages")

    # -- the sample ------------------------------------------------------------------------------------------
    def __call__(self, raw: dict) -> Encoded | None:
        key = str(raw.get("__key__", "?"))
        try:
            return self.encode(raw)
        except Skip as s:
            reason, detail = s.args
            self.counter.skip(reason, f"{key}: {detail}")
        return None

    def encode(self, raw: dict) -> Encoded:
        try:
            meta = json.loads(raw["json"]) if "json" in raw else {}
            caption = raw["txt"].decode("utf-8") if "txt" in raw else None
        except (ValueError, UnicodeDecodeError) as e:
            raise Skip("bad_json_or_text", str(e)) from None
        if not isinstance(meta, dict):
            raise Skip("json_not_object", f"the .json is a {type(meta).__name__}")
        images = []
        for b in image_bytes_of(raw):
            try:
                images.append(decode_image(b))
            except Exception as e:  # PIL raises many types for corrupt files
                raise Skip("bad_image", str(e)) from None
        segments = self.segments(meta, caption, len(images))
        pixel_values = grid = None
        image_tokens: list[int] = []
        if images:
            try:
                if self.reference:
                    out = self.processor.image_processor(images=images, return_tensors="pt")
                    pixel_values, grid = out["pixel_values"], out["image_grid_thw"]
                else:
                    pixel_values, grid = self.images(images)
            except Exception as e:  # e.g. an aspect ratio over 200 after resizing, or a degenerate size
                raise Skip("bad_image_size", f"{[im.size for im in images]}: {e}") from None
            image_tokens = [int(g.prod() // self.merge**2) for g in grid]
        ids, target = self.tokenize(segments, image_tokens)
        if self.max_len is not None and len(ids) > self.max_len:
            ids, target, pixel_values, grid = self.truncate(ids, target, pixel_values, grid)
        labels = torch.full_like(ids, IGNORE)
        labels[:-1] = torch.where(target[1:], ids[1:], IGNORE)
        if not bool((labels != IGNORE).any()):
            raise Skip("no_target_tokens", f"{len(ids)} tokens, none to learn")
        mm = (ids == self.image_id).long()
        positions = (reference_rope_positions if self.reference else rope_positions)(self.config, ids, mm, grid)
        return Encoded(ids, labels, positions, mm, pixel_values, grid, str(raw.get("__source__", "")))

    def _ids(self, text: str) -> list[int]:
        if not text:
            return []
        if (hit := self.piece_ids.get(text)) is not None:
            return hit
        if self.bpe is not None:  # the Rust tokenizer one text at a time: encode_batch's thread pool costs more
            ids = self.bpe.encode(text, add_special_tokens=False).ids
        else:
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
        if len(text) <= 64:  # markup between messages and images repeats in every sample; content rarely does
            if len(self.piece_ids) > 4096:
                self.piece_ids.clear()
            self.piece_ids[text] = ids
        return ids

    def tokenize(self, segments: list[tuple[str, bool]], image_tokens: list[int] | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and the target mask of the segments; the k-th `<|image|>` placeholder becomes
        image_tokens[k] image tokens. The tokenizer splits its text at special tokens before BPE, so the
        placeholders are cut out and their runs inserted as ids (the same ids as tokenizing the spelled-out
        text, which the reference path does)."""
        image_tokens = image_tokens or []
        ids: list[int] = []
        target: list[bool] = []
        if self.reference:
            expand = iter([tokens.IMAGE * k for k in image_tokens])
            try:
                texts = [re.sub(re.escape(tokens.IMAGE), lambda _: next(expand), t) for t, _ in segments]
            except (StopIteration, RuntimeError):
                raise Skip("image_count", "more image placeholders than images") from None
            for (_, is_target), text in zip(segments, texts, strict=True):
                p = self.tok(text, add_special_tokens=False)["input_ids"] if text else []
                ids += p
                target += [is_target] * len(p)
        else:
            runs = iter(image_tokens)
            for text, is_target in segments:
                start = len(ids)
                for j, piece in enumerate(text.split(tokens.IMAGE)):
                    if j:
                        k = next(runs, None)
                        if k is None:
                            raise Skip("image_count", "more image placeholders than images")
                        ids += [self.image_id] * k
                    ids += self._ids(piece)
                target += [is_target] * (len(ids) - start)
            if next(runs, None) is not None:
                raise Skip("image_count", "fewer image placeholders than images")
        # the token right after an assistant span ends the turn: learn it too
        t = torch.tensor(target, dtype=torch.bool)
        t[1:] |= t[:-1].clone() & ~t[1:]
        return torch.tensor(ids, dtype=torch.long), t

    def truncate(self, ids, target, pixel_values, grid):
        """Cut at max_len (over_long=truncate) without splitting an image: an image the cut would split is
        left out whole, with its pixels. over_long=drop skips the sample instead."""
        if self.over_long != "truncate":
            raise Skip("too_long", f"{len(ids)} tokens > {self.max_len}")
        cut = self.max_len
        begins = (ids[:cut] == self.begin_id).nonzero().flatten().tolist()
        ends = (ids[:cut] == self.end_id).nonzero().flatten().tolist()
        if len(begins) > len(ends):  # the cut falls inside the last image block
            cut = begins[-1]
        kept = len(ends)
        if grid is not None:
            patches = int(grid[:kept].prod(dim=1).sum())
            pixel_values = pixel_values[:patches] if kept else None
            grid = grid[:kept] if kept else None
        self.counter.note("truncated")
        return ids[:cut], target[:cut], pixel_values, grid
