"""Prompt sets (JSONL or Parquet): `id`, `images` (paths relative to the file, or URLs), `question`, `answer`,
`domain`; every other field goes into `meta`. The question is the row's text, the first image its image; all image
references stay in `meta.images`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from pipelines import storage
from pipelines.readers.base import Part, Source, SourceOptions

if TYPE_CHECKING:
    from pipelines.readers.base import BatchBuilder, ReaderConfig

FIELDS = ("id", "images", "image", "question", "answer", "domain")


class PromptOptions(SourceOptions):
    rows_per_part: int | None = Field(None, ge=1, description="Prompts per part; default reader.part_size.")


def _files(root: str) -> list[str]:
    if storage.isdir(root):
        return [storage.join(root, rel) for rel, _ in storage.walk_files(root)
                if rel.lower().endswith((".jsonl", ".json", ".parquet"))]
    return [root]


def _records(path: str) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(row, record, error) for every line/row of a prompt file; a bad line is an error, not an exception."""
    if path.lower().endswith(".parquet"):
        with storage.open_file(path) as f:
            row = 0
            for batch in pq.ParquetFile(f).iter_batches(batch_size=256):
                for rec in batch.to_pylist():
                    yield row, rec, None
                    row += 1
        return
    with storage.open_file(path) as f:
        for row, raw in enumerate(f):
            line = raw.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except (ValueError, UnicodeDecodeError) as exc:
                yield row, None, f"prompt_not_json:{type(exc).__name__}"
                continue
            if not isinstance(rec, dict):
                yield row, None, f"prompt_not_object:{type(rec).__name__}"
                continue
            yield row, rec, None


def _count(path: str) -> int:
    if path.lower().endswith(".parquet"):
        with storage.open_file(path) as f:
            return pq.ParquetFile(f).metadata.num_rows
    with storage.open_file(path) as f:
        return sum(1 for _ in f)


class PromptSource(Source):
    name = "prompts"
    Options = PromptOptions
    columns = (pa.field("answer", pa.string()), pa.field("domain", pa.string()))

    def plan(self, root: str, dataset: str, config: ReaderConfig, first_id: int) -> Iterator[Part]:
        size = self.options(config).rows_per_part or config.part_size
        base = root if storage.isdir(root) else storage.dirname(root)
        pid = first_id
        for path in sorted(_files(root)):
            rows = _count(path)
            for start in range(0, max(rows, 1), size):
                yield Part(id=pid, format=self.name, root=base, dataset=dataset, path=path, row_start=start,
                           row_end=min(rows, start + size))
                pid += 1

    def read(self, part: Part, config: ReaderConfig, out: BatchBuilder) -> Iterator[pa.RecordBatch]:
        rel = storage.relpath(part.path, part.root)
        folder = storage.dirname(part.path)
        for row, rec, error in _records(part.path):
            if row < part.row_start:
                continue
            if row >= part.row_end:
                break
            source = f"{part.path}#row={row}"
            if rec is None:
                yield from out.add(f"{rel}#row={row}", source, None, None, None, error)
                continue
            pid = rec.get("id")
            sid = f"{rel}#id={pid}" if pid is not None else f"{rel}#row={row}"
            images = rec.get("images", rec.get("image"))
            refs = [images] if isinstance(images, str) else list(images or []) if isinstance(images, list) else []
            question, answer, domain = rec.get("question"), rec.get("answer"), rec.get("domain")
            meta = {k: v for k, v in rec.items() if k not in FIELDS}
            meta.update({"id": pid, "images": refs})
            image, problem = None, None
            if not isinstance(question, str) or not question.strip():
                problem = "question_missing"
            elif answer is not None and not isinstance(answer, str | int | float):
                problem = f"answer_not_text:{type(answer).__name__}"
            elif refs and not all(isinstance(r, str) for r in refs):
                problem = "images_not_paths"
            elif refs:
                ref = refs[0]
                path = ref if storage.is_url(ref) or ref.startswith("/") else storage.join(folder, ref)
                try:
                    image = storage.read_bytes(path)
                except Exception as exc:  # noqa: BLE001 - missing file, unreachable URL: the row records it
                    problem = f"image_unreadable:{ref}: {type(exc).__name__}"
            columns = {"answer": None if answer is None else str(answer),
                       "domain": str(domain) if domain is not None else None}
            yield from out.add(sid, source, image, question if isinstance(question, str) else None, meta, problem,
                               columns)
