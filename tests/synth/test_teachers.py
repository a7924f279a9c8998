"""Teacher clients against real servers on loopback: `vlmdata serve-model --model tiny` for answers, and small
aiohttp servers that fail with 503 or never answer, for retries and timeouts; the in-process teacher agrees."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from aiohttp import web
from pydantic import ValidationError

from synth.teachers import TeacherConfig, TeacherError, TeacherTimeout, attach_images, teacher_from_spec
from synth.teachers.inproc import InprocTeacher
from synth.teachers.openai_http import OpenAITeacher
from tests.aio import serve_in_thread
from tests.images import png_bytes
from tests.model.test_serve import running_server

TEXT = [{"role": "user", "content": [{"type": "text", "text": "how many blue squares?"}]}]
IMAGE = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what colour is the shape?"}]}]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_server("--model", "tiny") as url:
        yield url


@pytest.fixture(scope="module")
def inproc() -> InprocTeacher:
    return InprocTeacher("tiny")


def image_conversation(seed: int = 0):
    return attach_images(IMAGE, [png_bytes(size=(112, 84), seed=seed)])


def test_openai_teacher_answers_text_and_image_conversations(server):
    teacher = TeacherConfig(endpoint=server).build()
    assert isinstance(teacher, OpenAITeacher) and teacher.model == "tiny"  # the served name, from /v1/models
    out = teacher.chat([TEXT, image_conversation(1), image_conversation(2)], n=2, max_tokens=8, temperature=0.9,
                       seed=5)
    assert [len(c) for c in out] == [2, 2, 2]
    for completions in out:
        for c in completions:
            assert c.text and c.finish_reason in ("stop", "length")
        assert completions[0].usage.completion_tokens <= 2 * 8
    # 12 image tokens + begin/end of image; the text of IMAGE differs from TEXT, so compare the two images
    assert out[1][0].usage.prompt_tokens == out[2][0].usage.prompt_tokens > out[0][0].usage.prompt_tokens


def test_inproc_teacher_gives_the_servers_greedy_text(server, inproc):
    http = teacher_from_spec(server, "tiny")
    conversations = [TEXT, image_conversation(3)]
    a = http.chat(conversations, max_tokens=16, temperature=0)
    b = inproc.chat(conversations, max_tokens=16, temperature=0)
    assert [c[0].text for c in a] == [c[0].text for c in b]
    assert [c[0].usage for c in a] == [c[0].usage for c in b]
    assert all(c[0].text for c in a)


def test_inproc_teacher_reports_a_bad_conversation_and_answers_the_rest(inproc):
    too_long = [{"role": "user", "content": "word " * 5000}]
    broken = attach_images(IMAGE, [b"not an image"])
    out = inproc.chat([TEXT, too_long, broken], max_tokens=4, temperature=0, return_exceptions=True)
    assert out[0][0].text
    assert isinstance(out[1], TeacherError) and "context" in str(out[1])
    assert isinstance(out[2], TeacherError) and "not a readable image" in str(out[2])
    with pytest.raises(TeacherError, match="context"):
        inproc.chat([TEXT, too_long], max_tokens=4, temperature=0)


def test_server_refusal_is_not_retried_and_names_the_reason(server):
    teacher = OpenAITeacher(server, "tiny", retries=3, backoff=0.01)
    remote = [{"role": "user", "content": "hi"}]
    out = teacher.chat([remote], max_tokens=10_000, return_exceptions=True)
    assert isinstance(out[0], TeacherError) and "HTTP 400" in str(out[0]) and "context length" in str(out[0])
    assert "gave up" not in str(out[0])


@contextmanager
def flaky_server(failures: int, delay_s: float = 0.0) -> Iterator[tuple[str, list[int]]]:
    """A loopback chat endpoint that answers 503 `failures` times, then a valid completion (after `delay_s`)."""
    hits: list[int] = []

    async def chat(request: web.Request) -> web.Response:
        hits.append(1)
        if len(hits) <= failures:
            return web.json_response({"error": {"message": "overloaded", "type": "server_error"}}, status=503)
        await asyncio.sleep(delay_s)
        return web.json_response({"id": "x", "object": "chat.completion", "model": "m", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    with serve_in_thread(app) as url:
        yield f"{url}/v1", hits


def test_retries_503_with_backoff_then_succeeds():
    with flaky_server(failures=2) as (url, hits):
        out = OpenAITeacher(url, "m", retries=3, backoff=0.05).chat([TEXT])
    assert out[0][0].text == "fine" and len(hits) == 3


def test_last_retry_raises_a_clear_error():
    with flaky_server(failures=10) as (url, hits):
        with pytest.raises(TeacherError, match=r"gave up after 3 attempt\(s\); last error: HTTP 503: overloaded"):
            OpenAITeacher(url, "m", retries=2, backoff=0.01).chat([TEXT])
    assert len(hits) == 3


def test_timeout_is_a_clear_error():
    with flaky_server(failures=0, delay_s=5.0) as (url, hits):
        with pytest.raises(TeacherTimeout, match=r"gave up after 2 attempt\(s\); last error: no answer within 0.3 s"):
            OpenAITeacher(url, "m", retries=1, backoff=0.01, timeout=0.3).chat([TEXT])
    assert len(hits) == 2


def test_teacher_config_is_strict_and_specs_are_checked():
    with pytest.raises(ValidationError):
        TeacherConfig(endpoint="http://127.0.0.1:1/v1", concurrancy=4)
    with pytest.raises(ValueError, match="inproc:PATH_OR_PRESET"):
        teacher_from_spec("ftp://example/v1")
    with pytest.raises(TeacherError, match="cannot list the models"):
        # nothing listens on port 9 of loopback: the model lookup fails with a clear error
        TeacherConfig(endpoint="http://127.0.0.1:9/v1", timeout=5).build()
