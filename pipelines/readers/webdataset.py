"""WebDataset reader: tars as img2dataset writes them (`key.jpg|png`, `key.txt`, `key.json`), one partition per tar."""

from __future__ import annotations

import json
import re
import tarfile
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa

from pipelines import storage
from pipelines.readers.base import IMAGE_EXTENSIONS, decode_caption

if TYPE_CHECKING:
    from pipelines.readers.base import BatchBuilder, Part, ReaderConfig

# webdataset's convention: the sample key is everything up to the first dot of the basename.
_KEY_EXT = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")
_IMAGE_EXTS = tuple(e.lstrip(".") for e in IMAGE_EXTENSIONS)


def plan(root: str, dataset: str, config: ReaderConfig, first_id: int) -> Iterator[Part]:
    from pipelines.readers.base import Part

    if storage.isdir(root):
        tars = [(storage.join(root, rel), size) for rel, size in storage.walk_files(root) if rel.endswith(".tar")]
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
    key: str | None = None
    files: dict[str, bytes] = {}
    try:
        with storage.open_file(part.path) as raw, tarfile.open(fileobj=raw, mode="r|*") as tf:
            for member in tf:
                if not member.isfile():
                    continue
                m = _KEY_EXT.match(member.name)
                if not m:
                    continue
                mkey, ext = m.group(1), m.group(2).lower()
                if mkey != key and key is not None:
                    yield from out.add(*_sample_row(rel, part.path, key, files))
                    files = {}
                key = mkey
                f = tf.extractfile(member)
                files[ext] = f.read() if f else b""
            end = tf.offset
        if key is not None:
            yield from out.add(*_sample_row(rel, part.path, key, files))
        else:
            yield from out.add(f"{rel}::", part.path, None, None, None, "tar_empty")
        if storage.getsize(part.path) < end + 2 * tarfile.BLOCKSIZE and not part.path.endswith((".gz", ".tgz")):
            # Cut exactly at a member boundary: tarfile sees a clean end, but the end-of-archive blocks are missing.
            yield from out.add(f"{rel}::<rest>", part.path, None, None, None, "tar_broken:no end-of-archive marker (truncated?)")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        detail = str(exc).strip() or exc.__class__.__name__
        if key is not None:
            yield from out.add(f"{rel}::{key}", f"{part.path}::{key}", None, None, None, f"tar_truncated:{detail}")
        # The rest of the tar cannot be read: one row stands for it so the loss is visible.
        yield from out.add(f"{rel}::<rest>", part.path, None, None, None, f"tar_broken:{detail}")
