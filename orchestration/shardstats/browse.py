"""One sample as the HTML browser shows it: a small inlined thumbnail, caption, task, boxes, json and messages."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from PIL import Image

from orchestration.shardstats.sample_fields import boxes_of
from pipelines.shard_stats import image_extension, task_of

THUMB_QUALITY = 82
MAX_CAPTION_CHARS = 400


def thumbnail(data: bytes, px: int) -> tuple[str, int, int]:
    """(data URI of a JPEG at most `px` on its longest side, stored width, stored height)."""
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
        im.draft("RGB", (px, px))  # JPEG: decode at reduced scale directly
        im.thumbnail((px, px))
        if im.mode in ("RGBA", "LA", "P"):
            rgba = im.convert("RGBA")
            im = Image.new("RGB", rgba.size, "white")
            im.paste(rgba, mask=rgba.getchannel("A"))
        elif im.mode != "RGB":
            im = im.convert("RGB")
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=THUMB_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode(), width, height


def browse_record(
    sample: dict[str, Any], fields: dict[str, Any] | None, shard: str, thumb_px: int, max_json_chars: int
) -> dict[str, Any]:
    fields = fields or {}
    record: dict[str, Any] = {"key": sample.get("__key__", ""), "shard": shard, "task": task_of(fields)}
    caption = fields.get("caption") if isinstance(fields.get("caption"), str) else None
    if "txt" in sample:
        caption = sample["txt"].decode("utf-8", errors="replace")
    record["caption"] = (caption or "")[:MAX_CAPTION_CHARS]
    ext = image_extension(sample)
    record["thumb"] = None
    if ext is None:
        record["problem"] = "no image"
    else:
        try:
            record["thumb"], record["width"], record["height"] = thumbnail(sample[ext], thumb_px)
        except Exception as exc:  # noqa: BLE001 - an undecodable image is shown as such
            record["problem"] = f"image unreadable: {exc}"
    record["boxes"] = boxes_of(fields)
    if "json" in sample:
        text = json.dumps(fields, indent=1, ensure_ascii=False) if fields else sample["json"].decode("utf-8", "replace")
        record["json"] = text if len(text) <= max_json_chars else text[:max_json_chars] + "\n… (cut)"
    messages = fields.get("messages")
    record["messages"] = messages if isinstance(messages, list) else None
    return record
