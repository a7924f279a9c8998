"""WebDataset reader: tars as img2dataset writes them (`key.jpg|png`, `key.txt`, `key.json`), one partition per tar."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa

from pipelines import storage
from pipelines.codec import READ_ERRORS, TarSamples, decompressed
from pipelines.readers.base import IMAGE_EXTENSIONS, decode_caption

if TYPE_CHECKING:
    from pipelines.readers.base import BatchBuilder, Part, ReaderConfig

_IMAGE_EXTS = tuple(e.lstrip(".") for e in IMAGE_EXTENSIONS)


def plan(root: str, dataset: str, config: ReaderConfig, first_id: int) -> Iterator[Part]:
    from pipelines.readers.base import Part

    if storage.isdir(root):
        tars = [(storage.join(root, rel), size) for rel, size in storage.walk_files(root)
                if rel.lower().endswith((".tar", ".tar.gz", ".tgz"))]
        base = root
    else:
        tars, base = [(root, storage.getsize(root))], storage.dirname(root)
    for i, (tar, size) in enumerate(tars):
        yield Part(id=first_id + i, format="webdataset", root=base, dataset=dataset, path=tar, size_hint=size)


def _sample_row(rel: str, tar: str, key: str, files: dict[str, bytes]) -> tuple:
    image_ext = next((e for e in _IMAGE_EXTS if e in files), None)
    error = None if image_ext else "image_missing"
    text, caption_error = decode_caption(files.get("txt"))
    error = error or caption_error
    meta: dict = {}
    if "json" in files:
        try:
            loaded = json.loads(files["json"])
            meta = loaded if isinstance(loaded, dict) else {"json": loaded}
        except (ValueError, UnicodeDecodeError) as exc:
            error = error or f"meta_not_json:{exc.__class__.__name__}"
    member = f"{key}.{image_ext or 'txt'}"
    image = files.get(image_ext) if image_ext else None
    return f"{rel}::{key}", f"{tar}::{member}", image, text, meta, error


def read(part: Part, config: ReaderConfig, out: BatchBuilder) -> Iterator[pa.RecordBatch]:
    rel = storage.relpath(part.path, part.root)
    count = 0
    try:
        with decompressed(storage.open_file(part.path)) as stream:
            reader = TarSamples(stream)
            for sample in reader:
                key = sample.pop("__key__")
                count += 1
                yield from out.add(*_sample_row(rel, part.path, key, sample))
    except READ_ERRORS as exc:
        yield from out.add(f"{rel}::<rest>", part.path, None, None, None, f"tar_broken:{str(exc).strip() or type(exc).__name__}")
        return
    if reader.lost is not None:
        yield from out.add(f"{rel}::{reader.lost}", f"{part.path}::{reader.lost}", None, None, None,
                           f"tar_truncated:{reader.error}")
    if reader.error is not None and reader.error != "empty file":
        # The rest of the tar cannot be read: one row stands for it so the loss is visible.
        yield from out.add(f"{rel}::<rest>", part.path, None, None, None, f"tar_broken:{reader.error}")
    elif not count:
        yield from out.add(f"{rel}::", part.path, None, None, None, "tar_empty")
