"""`vlmdata serve-model --model tiny` as a real subprocess on a loopback port, driven by the official `openai`
client: models, text and image chats, n, stop, streaming, usage, concurrent batching, OpenAI-style errors."""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import openai
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from model.serve.engine import Engine, Job, SamplingParams
from model.serve.loading import load_model
from model.serve.protocol import APIError, load_image_url
from orchestration.serve_model_cli import serve_model
from tests.images import png_bytes

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def running_server(*args: str, startup_s: float = 180.0) -> Iterator[str]:
    """Start `vlmdata serve-model --port 0 ARGS` and yield its base URL (…/v1); stopped (SIGTERM) afterwards."""
    script = Path(sys.executable).parent / "vlmdata"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "orchestration.cli"]
    proc = subprocess.Popen([*cmd, "serve-model", "--port", "0", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines: queue.Queue[str | None] = queue.Queue()
    log: list[str] = []

    def pump() -> None:  # keep draining so the server never blocks on a full pipe
        for line in proc.stdout:
            log.append(line)
            lines.put(line)
        lines.put(None)
    threading.Thread(target=pump, daemon=True).start()
    try:
        while True:
            line = lines.get(timeout=startup_s)
            if line is None:
                raise RuntimeError(f"serve-model exited with {proc.wait()}:\n{''.join(log)}")
            if line.startswith("serving ") and " on http" in line:
                yield line.rsplit(" on ", 1)[1].strip()
                break
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_server("--model", "tiny") as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server, api_key="none", max_retries=0, timeout=120) as c:
        yield c


def png_data_url(**kw) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(**kw)).decode()


def ask(client: openai.OpenAI, text: str, **kw):
    return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": text}], **kw)


def test_models_list_names_the_served_model(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"


def test_text_chat_greedy_is_repeatable_and_counts_usage(client):
    a = ask(client, "how many red circles?", max_tokens=12, temperature=0)
    b = ask(client, "how many red circles?", max_tokens=12, temperature=0)
    assert a.object == "chat.completion" and a.model == "tiny" and a.id.startswith("chatcmpl-")
    choice = a.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.message.content == b.choices[0].message.content
    if choice.finish_reason == "length":
        assert a.usage.completion_tokens == 12
    else:
        assert choice.finish_reason == "stop" and a.usage.completion_tokens < 12
    # "[gMASK]<sop><|user|>\n" … "<|assistant|>\n": the prompt is longer than the question alone
    longer = ask(client, "how many red circles are there on the left of the page?", max_tokens=1, temperature=0)
    assert longer.usage.prompt_tokens > a.usage.prompt_tokens > 4
    assert a.usage.total_tokens == a.usage.prompt_tokens + a.usage.completion_tokens


def test_image_chat_counts_image_tokens(client):
    text = [{"type": "text", "text": "What colour is it?"}]
    image = [{"type": "image_url", "image_url": {"url": png_data_url(size=(112, 84), seed=3)}}]
    plain = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": text}],
                                           max_tokens=6, temperature=0)
    with_image = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": image + text}],
                                                max_tokens=6, temperature=0)
    assert with_image.choices[0].message.content
    # 112x84 px → 8x6 patches of 14 px → 2x2 merge → 12 image tokens, plus <|begin_of_image|> and <|end_of_image|>
    assert with_image.usage.prompt_tokens - plain.usage.prompt_tokens == 12 + 2


def test_n_choices_sampled_with_seed(client):
    kw = dict(max_tokens=16, temperature=1.0, top_p=0.95, n=3, seed=7)
    a = ask(client, "describe the chart", **kw)
    b = ask(client, "describe the chart", **kw)
    assert [c.index for c in a.choices] == [0, 1, 2]
    texts = [c.message.content for c in a.choices]
    assert texts == [c.message.content for c in b.choices]  # the seed fixes every choice
    assert len(set(texts)) > 1  # but the choices are separate samples
    if all(c.finish_reason == "length" for c in a.choices):
        assert a.usage.completion_tokens == 3 * 16
    else:
        assert a.usage.completion_tokens < 3 * 16


def test_stop_string_cuts_the_text_before_it(client):
    full = ask(client, "count the squares", max_tokens=24, temperature=0).choices[0].message.content
    assert len(full) > 8
    stop = full[5:8]
    cut = ask(client, "count the squares", max_tokens=24, temperature=0, stop=[stop, "never-seen-§"])
    assert cut.choices[0].message.content == full[: full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_stream_reassembles_to_the_non_streaming_text(client):
    whole = ask(client, "which shape is on top?", max_tokens=20, temperature=0)
    stream = ask(client, "which shape is on top?", max_tokens=20, temperature=0, stream=True,
                 stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # really incremental
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_stream_with_stop_never_sends_the_stop_string(client):
    full = ask(client, "count the squares", max_tokens=24, temperature=0).choices[0].message.content
    stop = full[6:10]
    stream = ask(client, "count the squares", max_tokens=24, temperature=0, stop=stop, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == full[: full.index(stop)]


def test_concurrent_requests_are_batched_and_all_answered(client, server):
    prompts = [f"question number {i}: how many stars?" for i in range(8)]
    alone = [ask(client, p, max_tokens=8 + i, temperature=0).choices[0] for i, p in enumerate(prompts)]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda ip: ask(client, ip[1], max_tokens=8 + ip[0], temperature=0).choices[0],
                                 enumerate(prompts)))
    # Same greedy answers whether a prompt ran alone or in a left-padded batch with others.
    assert [c.message.content for c in together] == [c.message.content for c in alone]
    assert [c.finish_reason for c in together] == [c.finish_reason for c in alone]
    health = json.loads(urllib.request.urlopen(server.removesuffix("/v1") + "/health").read())
    assert health["batching"]["largest_batch_requests"] > 1


def test_errors_are_openai_json_with_4xx(client, server):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 404 and err.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="remote image URLs are never fetched"):
        client.chat.completions.create(model="tiny", max_tokens=2, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/cat.png"}}]}])
    with pytest.raises(openai.BadRequestError, match="not a readable image") as err:
        client.chat.completions.create(model="tiny", max_tokens=2, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"no png").decode()}}]}])
    assert "0x" not in err.value.body["message"]  # the same message for the same request (no object address)
    with pytest.raises(openai.BadRequestError, match="processor refused the input.*aspect ratio") as err:
        client.chat.completions.create(model="tiny", max_tokens=2, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": png_data_url(size=(8400, 40), seed=1)}}]}])
    assert err.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError, match="maximum context length is 4096") as err:
        ask(client, "hi", max_tokens=5000)
    assert err.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError, match="temperature"):
        ask(client, "hi", temperature=3.5)

    def raw(path: str, body: bytes | None) -> tuple[int, dict]:
        req = urllib.request.Request(server.removesuffix("/v1") + path, data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())
    status, body = raw("/v1/chat/completions", b'{"model": "tiny", "messages": [')
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    status, body = raw("/v1/chat/completions", b'{"model": "tiny"}')
    assert status == 400 and body["error"]["param"] == "messages"
    status, body = raw("/v1/nothing-here", None)
    assert status == 404 and body["error"]["type"] == "not_found_error"
    # the server is still answering after all of that
    assert ask(client, "still there?", max_tokens=2, temperature=0).choices[0].message.content


def test_local_files_only_from_the_allowed_folder(tmp_path):
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "a.png").write_bytes(png_bytes(size=(56, 56)))
    (tmp_path / "secret.png").write_bytes(png_bytes(size=(56, 56)))
    media = tmp_path / "media"
    assert load_image_url((media / "a.png").as_uri(), "img", media).size == (56, 56)
    with pytest.raises(APIError, match="outside the allowed local media folder"):
        load_image_url((media / ".." / "secret.png").as_uri(), "img", media)
    with pytest.raises(APIError, match="--allowed-local-media-path"):
        load_image_url((media / "a.png").as_uri(), "img", None)


def test_a_missing_model_stops_before_serving():
    app = typer.Typer()
    app.command()(serve_model)
    out = CliRunner().invoke(app, ["--model", "/nonexistent/model", "--port", "0"])
    assert out.exit_code == 2 and "no model at '/nonexistent/model'" in out.output and "tiny" in out.output


def test_paused_and_resumed_rows_give_the_uninterrupted_text():
    """The worker pauses a batch so waiting requests can join; resumed rows must continue exactly as before."""
    engine = Engine(load_model("tiny"))
    prompts = [engine.prepare([{"role": "user", "content": [{"type": "text", "text": f"how many stars? {i}"}]}])
               for i in range(3)]
    prompts.append(engine.prepare([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "colour?"}]}],
                                  [Image.open(io.BytesIO(png_bytes(size=(112, 84))))]))

    def jobs() -> list[Job]:
        return [Job(p, SamplingParams(max_tokens=24, temperature=0)) for p in prompts] + \
            [Job(prompts[0], SamplingParams(max_tokens=20, temperature=1.0, seed=3, n=2, stop=("§",)))]
    uninterrupted = engine.run(jobs())
    resumed_jobs = jobs()
    rows = [engine.new_rows(j) for j in resumed_jobs]
    calls = 0
    while any(r.finish is None for rs in rows for r in rs):
        engine.step([r for rs in rows for r in rs if r.finish is None], should_yield=lambda unfinished: True)
        calls += 1
    assert calls >= 5  # 24 tokens, paused every few steps
    resumed = [engine.result(j, rs) for j, rs in zip(resumed_jobs, rows, strict=True)]
    assert [[(c.text, c.finish_reason) for c in r.choices] for r in resumed] == \
        [[(c.text, c.finish_reason) for c in r.choices] for r in uninterrupted]
