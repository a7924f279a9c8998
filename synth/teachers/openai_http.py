"""A teacher behind an OpenAI-compatible chat API (vLLM, SGLang, `vlmdata serve-model`): a concurrency limit,
retries with exponential backoff on 429/5xx/timeouts/connection errors, images sent as data URLs."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import threading
from collections.abc import Sequence
from typing import Any

import aiohttp

from synth.teachers.base import (
    Completion,
    Messages,
    Teacher,
    TeacherError,
    TeacherTimeout,
    Usage,
    image_bytes,
    settle,
)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def data_url(image: Any) -> str:
    data, mime = image_bytes(image)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def to_openai_messages(messages: Messages) -> list[dict]:
    """Project chat parts → OpenAI parts: {"type": "image", "image": bytes} becomes an image_url data URL."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for p in content:
                if p.get("type") == "image":
                    if p.get("image") is None:
                        raise TeacherError("an image part carries no image (use attach_images with the row's bytes)")
                    parts.append({"type": "image_url", "image_url": {"url": data_url(p["image"])}})
                elif p.get("type") == "text":
                    parts.append({"type": "text", "text": p.get("text", "")})
                else:
                    raise TeacherError(f"unsupported content part {p.get('type')!r}")
            content = parts
        out.append({"role": m["role"], "content": content})
    return out


def _error_message(body: str) -> str:
    try:
        err = json.loads(body).get("error")
        return err.get("message", str(err)) if isinstance(err, dict) else str(err)
    except (ValueError, AttributeError):
        return body[:300]


class OpenAITeacher(Teacher):
    def __init__(self, base_url: str, model: str | None = None, api_key: str = "none", concurrency: int = 16,
                 retries: int = 3, backoff: float = 1.0, timeout: float = 300.0):
        self.base_url = base_url.rstrip("/")
        self.api_key, self.concurrency, self.retries = api_key, concurrency, retries
        self.backoff, self.timeout = backoff, timeout
        self.model = model or self._only_model()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def _only_model(self) -> str:
        async def fetch() -> list[str]:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as s:
                async with s.get(f"{self.base_url}/models", headers=self._headers()) as r:
                    if r.status != 200:
                        raise TeacherError(f"{self.base_url}/models answered HTTP {r.status}: "
                                           f"{_error_message(await r.text())}")
                    return [m["id"] for m in (await r.json())["data"]]
        try:
            names = _run(fetch())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TeacherError(f"cannot list the models of {self.base_url}: {exc or type(exc).__name__}") from None
        if len(names) != 1:
            raise TeacherError(f"{self.base_url} serves {names}: name the model to use")
        return names[0]

    def chat(self, conversations: Sequence[Messages], *, n: int = 1, max_tokens: int = 256, temperature: float = 0.0,
             top_p: float = 1.0, stop: Sequence[str] = (), seed: int | None = None,
             return_exceptions: bool = False) -> list[list[Completion] | TeacherError]:
        results = _run(self.achat(conversations, n=n, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                  stop=stop, seed=seed))
        return settle(results, return_exceptions)

    async def achat(self, conversations: Sequence[Messages], *, n: int = 1, max_tokens: int = 256,
                    temperature: float = 0.0, top_p: float = 1.0, stop: Sequence[str] = (),
                    seed: int | None = None) -> list[list[Completion] | TeacherError]:
        """The async form: every conversation's completions or its TeacherError, in order."""
        sampling: dict[str, Any] = {"n": n, "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p}
        if stop:
            sampling["stop"] = list(stop)
        if seed is not None:
            sampling["seed"] = seed
        gate = asyncio.Semaphore(self.concurrency)
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(connector=connector, headers=self._headers()) as session:
            async def one(messages: Messages) -> list[Completion] | TeacherError:
                try:
                    body = {"model": self.model, "messages": to_openai_messages(messages), **sampling}
                    return await self._post(session, gate, body)
                except TeacherError as exc:
                    return exc
            return list(await asyncio.gather(*(one(m) for m in conversations)))

    async def _post(self, session: aiohttp.ClientSession, gate: asyncio.Semaphore, body: dict) -> list[Completion]:
        url = f"{self.base_url}/chat/completions"
        last: TeacherError = TeacherError("no attempt made")
        for attempt in range(self.retries + 1):
            delay = self.backoff * 2 ** attempt * (1 + 0.25 * random.random())
            try:
                async with gate, session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=self.timeout)) as r:
                    if r.status == 200:
                        return _completions(await r.json())
                    message = _error_message(await r.text())
                    if r.status not in RETRY_STATUS:
                        raise TeacherError(f"{url} refused the request (HTTP {r.status}): {message}")
                    last = TeacherError(f"HTTP {r.status}: {message}")
                    retry_after = r.headers.get("Retry-After", "")
                    if retry_after.replace(".", "", 1).isdigit():
                        delay = min(float(retry_after), 60.0)
            except TimeoutError:
                last = TeacherTimeout(f"no answer within {self.timeout:g} s")
            except aiohttp.ClientError as exc:
                last = TeacherError(f"{type(exc).__name__}: {exc}")
            if attempt < self.retries:
                await asyncio.sleep(delay)
        raise type(last)(f"{self.model} at {url}: gave up after {self.retries + 1} attempt(s); last error: {last}")


def _completions(data: dict) -> list[Completion]:
    try:
        u = data.get("usage") or {}
        usage = Usage(int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0)))
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        return [Completion(c["message"].get("content") or "", c.get("finish_reason") or "stop", usage)
                for c in choices]
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise TeacherError(f"malformed chat completion ({type(exc).__name__}: {exc})") from None


def _run(coro: Any) -> Any:
    """asyncio.run, also from a thread that already runs an event loop (a notebook, an async caller)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc
    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
