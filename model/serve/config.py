"""The server's settings: a plain dataclass, so the CLI can read its defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_rows: int = 32
    batch_wait_ms: float = 10.0
    allowed_local_media_path: Path | None = None
    max_body_mb: int = 64
