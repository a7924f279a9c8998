"""Options of `vlmdata stats`: parallelism, sidecar use, and how much of the data the sample browser shows."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class InspectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, description="Processes that read shards in parallel."
    )
    use_sidecars: bool = Field(
        True, description="Merge the `NAME.stats.json` written beside a shard instead of reading the tar."
    )
    browse_per_shard: int = Field(4, ge=0, description="Samples shown in the browser from each browsed shard.")
    browse_max: int = Field(200, ge=0, description="Samples shown in the browser at most (spread over shards).")
    thumb_px: int = Field(256, ge=32, description="Longest side of a browser thumbnail, in pixels.")
    max_json_chars: int = Field(20_000, ge=100, description="A browsed sample's json is cut after this many chars.")
    top_concepts: int = Field(20, ge=1, description="Concepts listed before/after balancing.")
    max_shard_rows: int = Field(50, ge=1, description="Per-shard rows printed in the terminal.")
    max_html_shard_rows: int = Field(
        5000, ge=1, description="Per-shard rows in the HTML report; broken shards are always listed, `--json` has all."
    )
    start_method: Literal["fork", "forkserver", "spawn"] = Field(
        "fork", description="multiprocessing start method of the scan pool."
    )
