"""`count:N`: N numbered seed rows for procedural generators (no image, no text, `meta.seed` = the index)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa

from pipelines.readers.base import Part, Source, _count_of

if TYPE_CHECKING:
    from pipelines.readers.base import BatchBuilder, ReaderConfig


class CountSource(Source):
    name = "count"

    def detect(self, path: str) -> bool:
        return path.startswith("count:")

    def plan(self, root: str, dataset: str, config: ReaderConfig, first_id: int) -> Iterator[Part]:
        n = _count_of(root if root.startswith("count:") else f"count:{root}")
        name = config.dataset or "seeds"
        for i, start in enumerate(range(0, n, config.part_size)):
            yield Part(id=first_id + i, format=self.name, root=f"count:{n}", dataset=name, path="",
                       row_start=start, row_end=min(n, start + config.part_size))

    def files(self, part: Part) -> list[str]:
        return []

    def read(self, part: Part, config: ReaderConfig, out: BatchBuilder) -> Iterator[pa.RecordBatch]:
        for seed in range(part.row_start, part.row_end):
            yield from out.add(f"seed={seed}", f"{part.root}#seed={seed}", None, None, {"seed": seed})
