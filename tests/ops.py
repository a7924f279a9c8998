"""Operators that misbehave on purpose, referenced by import path (`tests.ops:Name`) from test recipes."""

from __future__ import annotations

import os

import pyarrow as pa
from pydantic import Field

from pipelines.operator import Operator, OperatorConfig, with_verdicts


class WordConfig(OperatorConfig):
    word: str = Field(description="A caption containing this word makes the whole batch raise.")


class FailOnWord(Operator):
    """Raises on any batch holding a caption with `word`: a deterministic failure tied to certain rows."""

    name = "fail_on_word"
    Config = WordConfig

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        texts = batch.column("text").to_pylist()
        if any(self.config.word in (t or "") for t in texts):
            raise ValueError(f"cannot handle captions with {self.config.word!r}")
        return with_verdicts(batch, [True] * batch.num_rows, [None] * batch.num_rows)


class FlagConfig(OperatorConfig):
    flag: str = Field(description="A file: absent, the operator misbehaves once and creates it.")


def _first_time(flag: str) -> bool:
    try:
        fd = os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


class KillWorkerOnce(Operator):
    """Kills its worker process the first time it runs anywhere, as an out-of-memory kill would."""

    name = "kill_worker_once"
    Config = FlagConfig

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if _first_time(self.config.flag):
            os._exit(137)
        return with_verdicts(batch, [True] * batch.num_rows, [None] * batch.num_rows)


class FailSetupOnce(Operator):
    """Fails to set up the first time (a model server not up yet): the whole stage fails, then a retry succeeds."""

    name = "fail_setup_once"
    Config = FlagConfig

    def setup(self) -> None:
        if _first_time(self.config.flag):
            raise RuntimeError("setup failed on purpose (first attempt)")

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return with_verdicts(batch, [True] * batch.num_rows, [None] * batch.num_rows)
