"""The HTTP side of the server (aiohttp): /v1/models, /v1/chat/completions (JSON or server-sent events), /health;
every error is an OpenAI-style JSON body with a 4xx/5xx status, never a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from model.serve import protocol as P
from model.serve.config import ServerConfig  # noqa: F401 - re-exported
from model.serve.engine import Engine, Job, Prompt, PromptError, Result
from model.serve.worker import BatchWorker

log = logging.getLogger(__name__)


@web.middleware
async def _json_errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    try:
        return await handler(request)
    except P.APIError as exc:
        return web.json_response(exc.body(), status=exc.status)
    except web.HTTPException as exc:  # unknown route, wrong method, body too large
        kind = "not_found_error" if exc.status == 404 else "invalid_request_error"
        err = P.APIError(exc.status, f"{exc.reason}: {request.method} {request.path}", kind)
        return web.json_response(err.body(), status=exc.status)
    except Exception:  # noqa: BLE001 - logged here; the client gets a JSON 500, not a traceback
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response(P.APIError(500, "internal server error", "server_error").body(), status=500)


class ModelServer:
    """One served model: the aiohttp application around an Engine and its batch worker."""

    def __init__(self, engine: Engine, config: ServerConfig | None = None):
        self.engine = engine
        self.config = config or ServerConfig()
        self.worker = BatchWorker(engine, self.config.max_batch_rows, self.config.batch_wait_ms / 1000)
        # One thread turns messages into tensors (image decoding, processor) off the event loop; the tokenizer
        # it uses is never touched by the generation thread (which decodes with its own copy).
        self._prep = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
        self.created = P.now()
        self.app = web.Application(middlewares=[_json_errors], client_max_size=self.config.max_body_mb << 20)
        self.app.add_routes([
            web.get("/health", self.health),
            web.get("/v1/models", self.models),
            web.get("/v1/models/{model}", self.model),
            web.post("/v1/chat/completions", self.chat),
        ])
        self.app.on_cleanup.append(self._close)

    async def _close(self, _app: web.Application) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.worker.close)
        self._prep.shutdown(wait=False)

    @property
    def name(self) -> str:
        return self.engine.name

    def _card(self) -> dict:
        return P.model_card(self.name, self.created, self.engine.max_model_len)

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "model": self.name, "batching": dict(self.worker.stats)})

    async def models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [self._card()]})

    async def model(self, request: web.Request) -> web.Response:
        if request.match_info["model"] != self.name:
            raise self._unknown(request.match_info["model"])
        return web.json_response(self._card())

    def _unknown(self, name: str) -> P.APIError:
        return P.APIError(404, f"The model `{name}` does not exist; this server serves `{self.name}`.",
                          "not_found_error", param="model", code="model_not_found")

    def _prepare(self, req: P.ChatRequest) -> Prompt:
        messages, images = P.to_model_messages(req, self.config.allowed_local_media_path)
        try:
            return self.engine.prepare(messages, images)
        except PromptError as exc:
            raise P.APIError(400, str(exc), param="messages") from None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        req = P.parse_request(await request.read())
        if req.model != self.name:
            raise self._unknown(req.model)
        loop = asyncio.get_running_loop()
        prompt = await loop.run_in_executor(self._prep, self._prepare, req)
        params = req.sampling(prompt.num_tokens, self.engine.max_model_len)
        id_, created = P.new_id(), P.now()
        if req.stream:
            return await self._stream(request, req, Job(prompt, params), id_, created)
        job = Job(prompt, params)
        future: asyncio.Future[Result | BaseException] = loop.create_future()
        self.worker.submit(job, lambda r: loop.call_soon_threadsafe(_resolve, future, r))
        try:
            result = await future
        except asyncio.CancelledError:  # the client went away: free its rows in the batch
            job.cancelled.set()
            raise
        if isinstance(result, BaseException):
            raise P.APIError(500, f"generation failed: {type(result).__name__}: {result}", "server_error")
        return web.json_response(P.completion_body(result, self.name, id_, created))

    async def _stream(self, request: web.Request, req: P.ChatRequest, job: Job, id_: str,
                      created: int) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple] = asyncio.Queue()
        job.on_event = lambda i, text, finish: loop.call_soon_threadsafe(events.put_nowait, ("delta", i, text, finish))
        self.worker.submit(job, lambda r: loop.call_soon_threadsafe(events.put_nowait, ("done", r)))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        async def send(body: dict) -> None:
            await resp.write(f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode())

        def chunk(choices: list[dict], usage: dict | None = None) -> dict:
            return P.chunk_body(self.name, id_, created, choices, usage)

        try:
            await resp.prepare(request)
            for i in range(job.params.n):
                await send(chunk([P.stream_choice(i, {"role": "assistant", "content": ""})]))
            while True:
                event = await events.get()
                if event[0] == "delta":
                    _, i, text, finish = event
                    if text:
                        await send(chunk([P.stream_choice(i, {"content": text})]))
                    if finish:
                        await send(chunk([P.stream_choice(i, {}, finish)]))
                    continue
                result = event[1]
                if isinstance(result, BaseException):
                    err = P.APIError(500, f"generation failed: {type(result).__name__}: {result}", "server_error")
                    await send(err.body())
                elif include_usage:
                    await send(chunk([], P.usage(result)))
                break
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            job.cancelled.set()
            raise
        return resp


def _resolve(future: asyncio.Future, value: Result | BaseException) -> None:
    if not future.done():
        future.set_result(value)


async def serve(server: ModelServer, ready: Callable[[str], None] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (or SIGINT/SIGTERM); `ready` gets the base URL once the port is bound."""
    runner = web.AppRunner(server.app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, server.config.host, server.config.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    host = f"[{host}]" if ":" in host else host
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (RuntimeError, ValueError):  # not the main thread (a server run in a thread)
            pass
    if ready:
        ready(f"http://{host}:{port}/v1")
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
