"""The teacher interface generators call: a batch of conversations in, `n` completions per conversation out.

Conversations use the project's chat format (pipelines/columns.py): content is a string or a list of parts
{"type": "text", "text": …} / {"type": "image", "image": <encoded bytes or PIL image>}; `attach_images` fills
a row's {"type": "image"} placeholders with its image bytes."""

from __future__ import annotations

import copy
import io
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

Messages = list[dict[str, Any]]


class TeacherError(RuntimeError):
    """A conversation the teacher could not answer (bad request, server error after the last retry, …)."""


class TeacherTimeout(TeacherError):
    """The teacher did not answer within the timeout, on every attempt."""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int  # summed over the n completions of the request


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" (EOS or a stop string) | "length" (max_tokens reached)
    usage: Usage  # of the whole request: shared by its n completions


class Teacher(ABC):
    """Answers conversations; implementations: OpenAITeacher (HTTP) and InprocTeacher (the project's model)."""

    model: str

    @abstractmethod
    def chat(self, conversations: Sequence[Messages], *, n: int = 1, max_tokens: int = 256, temperature: float = 0.0,
             top_p: float = 1.0, stop: Sequence[str] = (), seed: int | None = None,
             return_exceptions: bool = False) -> list[list[Completion] | TeacherError]:
        """One list of `n` completions per conversation, in order. A conversation that fails raises its
        TeacherError (after all others finished), or, with `return_exceptions`, stands in its place."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free what the teacher holds (connections, model memory)."""


def attach_images(messages: Messages, images: Sequence[bytes | Image.Image]) -> Messages:
    """A copy of `messages` whose {"type": "image"} parts carry `images`, in order (a row's image bytes)."""
    out = copy.deepcopy(messages)
    parts = [p for m in out if isinstance(m.get("content"), list) for p in m["content"] if p.get("type") == "image"]
    if len(parts) != len(images):
        raise ValueError(f"{len(parts)} image parts in the messages but {len(images)} images given")
    for part, image in zip(parts, images, strict=True):
        part["image"] = image
    return out


def image_bytes(image: bytes | Image.Image) -> tuple[bytes, str]:
    """Encoded bytes and their MIME type; PIL images (and unknown formats) become PNG."""
    if isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
        for magic, mime in ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"GIF8", "image/gif")):
            if data.startswith(magic):
                return data, mime
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return data, "image/webp"
        image = Image.open(io.BytesIO(data))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue(), "image/png"


def image_parts(messages: Messages) -> list[bytes | Image.Image]:
    """The images carried by a conversation's image parts, in order; a part without one is an error."""
    out = []
    for m in messages:
        for p in m.get("content") if isinstance(m.get("content"), list) else ():
            if p.get("type") == "image":
                if p.get("image") is None:
                    raise TeacherError("an image part carries no image (use attach_images with the row's bytes)")
                out.append(p["image"])
    return out


def settle(results: list[list[Completion] | TeacherError], return_exceptions: bool) -> list:
    if not return_exceptions:
        for r in results:
            if isinstance(r, TeacherError):
                raise r
    return results
