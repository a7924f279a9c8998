"""Plain-text corpora: `.txt`/`.md`/`.rst` files (or a folder of them; `suffixes` widens the set, e.g. `.tex` for
ocr-academic) cut into rows by paragraph, line or file. A file that gives no row is one error row, never nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
from pydantic import Field, field_validator

from pipelines import storage
from pipelines.readers.base import TEXT_SUFFIXES, Part, Source, SourceOptions, decode_caption

if TYPE_CHECKING:
    from pipelines.readers.base import BatchBuilder, ReaderConfig


class TextOptions(SourceOptions):
    unit: Literal["paragraph", "line", "file"] = Field("paragraph", description="What one row is.")
    min_chars: int = Field(1, ge=1, description="Units shorter than this (after stripping) are skipped.")
    files_per_part: int = Field(64, ge=1, description="Files per part (the unit of parallelism and resume).")
    suffixes: tuple[str, ...] = Field(
        TEXT_SUFFIXES, min_length=1, description="File endings read from a folder (any case); a file given as the "
        "input itself is read whatever its ending. Auto-detection only knows .txt/.md/.rst: a recipe that reads "
        "others (ocr-academic: .tex) sets reader.format: text.")

    @field_validator("suffixes")
    @classmethod
    def _dotted(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not s.startswith(".") or len(s) < 2 for s in value):
            raise ValueError(f"suffixes must each start with a dot, like .txt (got {list(value)})")
        return tuple(s.lower() for s in value)


def _files(root: str, suffixes: tuple[str, ...] = TEXT_SUFFIXES) -> list[str]:
    if storage.isdir(root):
        return sorted(rel for rel, _ in storage.walk_files(root) if rel.lower().endswith(suffixes))
    return [storage.basename(root)]


def split_units(text: str, unit: str) -> list[str]:
    if unit == "file":
        return [text]
    if unit == "line":
        return text.splitlines()
    paragraphs, current = [], []
    for line in text.splitlines():
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return paragraphs


class TextSource(Source):
    name = "text"
    Options = TextOptions

    def plan(self, root: str, dataset: str, config: ReaderConfig, first_id: int) -> Iterator[Part]:
        opts = self.options(config)
        base = root if storage.isdir(root) else storage.dirname(root)
        files = _files(root, opts.suffixes)
        for i, start in enumerate(range(0, len(files), opts.files_per_part)):
            chunk = files[start : start + opts.files_per_part]
            yield Part(id=first_id + i, format=self.name, root=base, dataset=dataset, path=root,
                       items=[[rel] for rel in chunk])

    def read(self, part: Part, config: ReaderConfig, out: BatchBuilder) -> Iterator[pa.RecordBatch]:
        opts = self.options(config)
        for (rel,) in part.items:
            assert rel is not None
            path = storage.join(part.root, rel)
            try:
                text, error = decode_caption(storage.read_bytes(path))
            except OSError as exc:
                text, error = None, f"read_failed:{exc.strerror or exc}"
            if error:
                yield from out.add(rel, path, None, None, None, error)
                continue
            assert text is not None
            units = [(i, unit.strip()) for i, unit in enumerate(split_units(text, opts.unit))
                     if len(unit.strip()) >= opts.min_chars]
            if not units:  # the file is in the ledger with why it gave nothing
                why = "empty_file" if not text.strip() else f"text_too_short:min_chars={opts.min_chars}"
                yield from out.add(rel, path, None, None, None, why)
            for i, unit in units:
                yield from out.add(f"{rel}#{opts.unit}={i}", f"{path}#{opts.unit}={i}", None, unit)
