"""Operators that misbehave on purpose, referenced by import path (`tests.ops:Name`) from test recipes."""

from __future__ import annotations

import os

import pyarrow as pa
from pydantic import Field

from pipelines.operator import Drop, Generator, Operator, OperatorConfig, with_verdicts
from pipelines.readers.base import Part, Source


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


class FanOutConfig(OperatorConfig):
    poison: str = Field("poison", description="A parent whose caption holds this word makes generation raise.")


class FanOut(Generator):
    """A plug-in generator: 0, 1 or 3 children per parent (by the parent key), raising on `poison` captions.
    Child i carries `fan_index` = i and a caption of its own; the first child of three is dropped as a verification
    failure would be."""

    name = "fan_out"
    Config = FanOutConfig
    reads = ("text",)
    adds = (pa.field("fan_index", pa.int32()),)

    def generate(self, row: dict) -> list[dict]:
        if self.config.poison in (row["text"] or ""):
            raise ValueError(f"cannot expand captions with {self.config.poison!r}")
        n = (0, 1, 3)[int(row["key"][:8], 16) % 3]
        if n == 0:
            raise Drop("nothing_to_expand")
        children = [{"fan_index": i, "text": f"{row['text']} #{i}"} for i in range(n)]
        if n == 3:
            children[0].update(keep=False, reason="failed_check:0")
        return children


class CountedSource(Source):
    """A plug-in source: `counted:N` → N rows whose text is the number in words."""

    name = "counted"
    columns = (pa.field("number", pa.int64()),)

    def detect(self, path: str) -> bool:
        return path.startswith("counted:")

    def plan(self, root, dataset, config, first_id):
        n = int(root.split(":", 1)[1])
        yield Part(id=first_id, format="tests.ops:CountedSource", root=root, dataset="counted", path="",
                   row_start=0, row_end=n)

    def files(self, part):
        return []

    def read(self, part, config, out):
        for i in range(part.row_start, part.row_end):
            yield from out.add(f"n={i}", f"{part.root}#{i}", None, f"number {i}", {"i": i}, None, {"number": i})


class KillWorker(Operator):
    """Kills its own process on every batch: a row that crashes native code whatever the attempt."""

    name = "kill_worker"

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
        return batch


class SlowPlanSource(CountedSource):
    """`slowplan:N`: CountedSource whose planning takes a second (a large listing), to see what runs meanwhile."""

    name = "slowplan"

    def detect(self, path: str) -> bool:
        return path.startswith("slowplan:")

    def plan(self, root, dataset, config, first_id):
        import time

        time.sleep(1.0)
        yield from super().plan(root, dataset, config, first_id)
