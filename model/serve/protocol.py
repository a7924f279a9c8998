"""OpenAI chat-completions wire format: the request as pydantic models, its messages turned into the model's chat
messages and images, and the response / stream-chunk / error bodies the official `openai` client parses."""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model.serve.engine import Result, SamplingParams
from pipelines.imaging import DecodeError, decode_rgb

MAX_STOP_STRINGS = 8


class APIError(Exception):
    """An error the client caused (4xx) or one the server reports (5xx), as OpenAI's JSON error body."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The fields of /v1/chat/completions this server honours; unknown fields are ignored, as OpenAI's server
    does, and options it cannot honour (logprobs, tools, penalties, JSON mode) are refused by `check_supported`."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=64)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    def check_supported(self) -> None:
        extra = self.model_extra or {}
        for name in ("logprobs", "tools", "functions", "logit_bias"):
            if extra.get(name):
                raise APIError(400, f"{name} is not supported by this server", param=name)
        for name in ("presence_penalty", "frequency_penalty"):
            if extra.get(name) not in (None, 0, 0.0):
                raise APIError(400, f"{name} is not supported by this server (only 0)", param=name)
        fmt = extra.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
            raise APIError(400, "response_format other than text is not supported by this server",
                           param="response_format")

    def stop_strings(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOP_STRINGS:
            raise APIError(400, f"at most {MAX_STOP_STRINGS} stop strings", param="stop")
        return tuple(s for s in stops if s)

    def sampling(self, prompt_tokens: int, max_model_len: int) -> SamplingParams:
        room = max_model_len - prompt_tokens
        wanted = self.max_completion_tokens or self.max_tokens
        if room <= 0 or (wanted is not None and wanted > room):
            raise APIError(
                400, f"This model's maximum context length is {max_model_len} tokens. However, you requested "
                f"{prompt_tokens + (wanted or 0)} tokens ({prompt_tokens} in the messages, {wanted or 0} in the "
                "completion). Please reduce the length of the messages or completion.",
                param="messages", code="context_length_exceeded")
        return SamplingParams(max_tokens=wanted or room, temperature=self.temperature, top_p=self.top_p,
                              n=self.n, stop=self.stop_strings(), seed=self.seed)


def parse_request(raw: bytes) -> ChatRequest:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise APIError(400, "request body must be a JSON object")
    try:
        req = ChatRequest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise APIError(400, f"{loc}: {err['msg']}", param=loc or None) from None
    req.check_supported()
    return req


def decode_image(data: bytes, where: str) -> Image.Image:
    """Encoded bytes → RGB image (the curate decode stage's rule and bomb limit); a corrupt file or a decompression
    bomb is the client's error, not a crash, with the same message for the same bytes."""
    try:
        return decode_rgb(data)
    except DecodeError as exc:
        raise APIError(400, f"{where}: not a readable image ({exc.reason})", param=where) from None


def load_image_url(url: str, where: str, local_media: Path | None) -> Image.Image:
    """data:image/…;base64 URLs, and file:// paths inside the folder the server was told it may read."""
    if url.startswith("data:"):
        header, sep, payload = url.partition(",")
        if not sep or not header.startswith("data:image/") or not header.endswith(";base64"):
            raise APIError(400, f"{where}: expected a data:image/<format>;base64,<data> URL", param=where)
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise APIError(400, f"{where}: the data URL is not valid base64", param=where) from None
        return decode_image(data, where)
    scheme = urlparse(url).scheme
    if scheme == "file":
        if local_media is None:
            raise APIError(400, f"{where}: file:// images are refused unless the server was started with "
                           "--allowed-local-media-path; send a data: URL instead", param=where)
        path = Path(unquote(urlparse(url).path)).resolve()
        if not path.is_relative_to(local_media.resolve()):
            raise APIError(400, f"{where}: {path} is outside the allowed local media folder", param=where)
        if not path.is_file():
            raise APIError(400, f"{where}: no such file {path}", param=where)
        return decode_image(path.read_bytes(), where)
    if scheme in ("http", "https"):
        raise APIError(400, f"{where}: remote image URLs are never fetched by this server (no outbound "
                       "requests); send the image as a data:image/...;base64 URL", param=where)
    raise APIError(400, f"{where}: unsupported image URL scheme {scheme or url[:16]!r}", param=where)


def to_model_messages(req: ChatRequest, local_media: Path | None = None) -> tuple[list[dict], list[Image.Image]]:
    """OpenAI messages → the chat template's messages ({"type": "image"} / {"type": "text"} parts) and images."""
    messages, images = [], []
    for m, msg in enumerate(req.messages):
        role = "system" if msg.role == "developer" else msg.role
        if msg.content is None or isinstance(msg.content, str):
            messages.append({"role": role, "content": msg.content or ""})
            continue
        parts = []
        for p, part in enumerate(msg.content):
            where = f"messages.{m}.content.{p}"
            kind = part.get("type")
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append({"type": "text", "text": part["text"]})
            elif kind == "image_url":
                spec = part.get("image_url")
                url = spec.get("url") if isinstance(spec, dict) else spec
                if not isinstance(url, str):
                    raise APIError(400, f"{where}: image_url needs a url", param=where)
                images.append(load_image_url(url, where, local_media))
                parts.append({"type": "image"})
            else:
                raise APIError(400, f"{where}: unsupported content part {kind!r} (text and image_url are)",
                               param=where)
        messages.append({"role": role, "content": parts})
    return messages, images


def new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(result: Result) -> dict[str, int]:
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens}


def completion_body(result: Result, model: str, id_: str, created: int) -> dict[str, Any]:
    return {
        "id": id_, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": c.index, "message": {"role": "assistant", "content": c.text},
                     "finish_reason": c.finish_reason, "logprobs": None} for c in result.choices],
        "usage": usage(result),
    }


def chunk_body(model: str, id_: str, created: int, choices: list[dict], usage_: dict | None = None) -> dict:
    return {"id": id_, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": choices, "usage": usage_}


def stream_choice(index: int, delta: dict, finish_reason: str | None = None) -> dict:
    return {"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}


def model_card(name: str, created: int, max_model_len: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "vlmdata", "root": name,
            "max_model_len": max_model_len}


def now() -> int:
    return int(time.time())
