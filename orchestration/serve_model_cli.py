"""`vlmdata serve-model`: serve a saved model folder or a preset (random weights, for smoke tests) over an
OpenAI-compatible HTTP API (/v1/models, /v1/chat/completions) that the official `openai` client talks to."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from model.serve.config import ServerConfig

_D = ServerConfig()


def serve_model(
    model: Annotated[str, typer.Option("--model", "-m", help="Saved model folder (e.g. a training run's OUTPUT/hf) or a preset name (tiny, small, …: seeded random weights, for smoke tests).")],
    host: Annotated[str, typer.Option(help="Address to bind; the default is loopback only.")] = _D.host,
    port: Annotated[int, typer.Option(help="Port to bind; 0 picks a free one (the URL is printed).")] = _D.port,
    served_model_name: Annotated[str | None, typer.Option(help="Name clients pass as `model`; default: --model as given.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, …")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16.")] = "auto",
    max_model_len: Annotated[int | None, typer.Option(help="Longest prompt + completion in tokens; default: the model's.")] = None,
    max_batch_rows: Annotated[int, typer.Option(help="Most sequences generated together (a request with n=k counts k).")] = _D.max_batch_rows,
    batch_wait_ms: Annotated[float, typer.Option(help="How long the first request of a batch waits for others.")] = _D.batch_wait_ms,
    allowed_local_media_path: Annotated[Path | None, typer.Option(help="Folder whose images may be sent as file:// URLs; without it only data: URLs are read.")] = None,
) -> None:
    """Serve a model over an OpenAI-compatible API, batching concurrent requests into one generate call."""
    from model.serve.app import ModelServer, serve
    from model.serve.engine import Engine
    from model.serve.loading import load_model

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        loaded = load_model(model, device=device, dtype=dtype, name=served_model_name)
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    config = ServerConfig(host=host, port=port, max_batch_rows=max_batch_rows, batch_wait_ms=batch_wait_ms,
                          allowed_local_media_path=allowed_local_media_path)
    server = ModelServer(Engine(loaded, max_model_len=max_model_len), config)

    def ready(url: str) -> None:
        typer.echo(f"serving {loaded.name} ({loaded.source}) on {url}", color=False)

    try:
        asyncio.run(serve(server, ready=ready))
    except OSError as exc:  # port in use, address not available
        typer.echo(f"error: cannot listen on {host}:{port}: {exc}", err=True)
        raise typer.Exit(2) from None
