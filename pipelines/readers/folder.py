"""Folder reader: images with same-stem `.txt` captions (and optional `.json` metadata), as img2dataset's folder output."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa
from pydantic import Field

from pipelines import storage
from pipelines.readers.base import IMAGE_EXTENSIONS, SourceOptions, decode_caption, unsupported_image

if TYPE_CHECKING:
    from pipelines.readers.base import BatchBuilder, Part, ReaderConfig


class FolderOptions(SourceOptions):
    captions: bool = Field(True, description="Each image needs a same-stem .txt caption (curation); false: images "
                           "without one are read with no text (for generators that make their own, e.g. scene OCR).")


def plan(root: str, dataset: str, config: ReaderConfig, first_id: int) -> Iterator[Part]:
    from pipelines.readers.base import Part

    samples: dict[str, list[str | None]] = {}
    others: dict[str, str] = {}  # stem → an image file of a kind the readers do not take (x.ico)
    sizes = 0
    for rel, size in storage.walk_files(root):
        stem, ext = os.path.splitext(rel)
        ext = ext.lower()
        slot = 1 if ext in IMAGE_EXTENSIONS else 2 if ext == ".txt" else 3 if ext == ".json" else None
        if slot is None:
            if unsupported_image(rel):
                others.setdefault(stem, rel)
            continue
        entry = samples.setdefault(stem, [stem, None, None, None])
        if slot == 1 and entry[1] is not None:
            # Two images share a stem (a.jpg, a.png): each is its own sample, captioned by the shared .txt.
            entry = samples.setdefault(rel, [rel, None, None, None])
        entry[slot] = rel
        sizes += size
    # Named pipes, sockets, devices, dangling links, links to folders: never read (a pipe would hang the run); each
    # gets its own error row. One named like a stem that has no image (`x` beside `x.txt`) stands in its image slot.
    for rel in storage.walk_special(root):
        entry = samples.setdefault(rel, [rel, rel, None, None])
        if entry[1] is None:
            entry[1] = rel
        elif entry[1] != rel:
            samples[rel + "/"] = [rel, rel, None, None]  # beside a stem with an image (`x.jpg`): a row of its own
    # A caption whose image has an extension the readers do not take (`x.ico`, `x.psd`) is told so, not image_missing.
    for stem, entry in samples.items():
        if entry[1] is None and stem in others:
            entry[1] = others[stem]
    # Second images of a stem borrow the stem's caption and metadata.
    for key, entry in samples.items():
        stem = os.path.splitext(key)[0]
        if key != stem and stem in samples:
            entry[2] = entry[2] or samples[stem][2]
            entry[3] = entry[3] or samples[stem][3]
    ordered = [samples[k] for k in sorted(samples)]
    n_parts = max(1, -(-len(ordered) // config.part_size))
    for i in range(n_parts):
        chunk = ordered[i * config.part_size : (i + 1) * config.part_size]
        if chunk:
            yield Part(
                id=first_id + i, format="folder", root=root, dataset=dataset, path=root,
                items=chunk, size_hint=sizes // n_parts,
            )


def files(part: Part) -> list[str]:
    return [storage.join(part.root, rel) for item in part.items for rel in item[1:] if rel]


def read(part: Part, config: ReaderConfig, out: BatchBuilder) -> Iterator[pa.RecordBatch]:
    for stem, image_rel, txt_rel, json_rel in part.items:
        assert stem is not None
        source_rel = image_rel or txt_rel or json_rel or stem
        source = storage.join(part.root, source_rel)
        error = None
        image = text = None
        meta: dict = {}
        try:
            if image_rel is None:
                error = "image_missing"
            elif not storage.is_regular(storage.join(part.root, image_rel)):
                yield from out.add(source_rel, source, None, None, None,
                                   storage.not_regular_reason(storage.join(part.root, image_rel)))
                continue
            elif not image_rel.lower().endswith(IMAGE_EXTENSIONS):
                error = f"image_extension_unsupported:{os.path.basename(image_rel)}"
            else:
                image = storage.read_bytes(storage.join(part.root, image_rel))
            raw = storage.read_bytes(storage.join(part.root, txt_rel)) if txt_rel else None
            text, caption_error = decode_caption(raw)
            if caption_error == "caption_missing" and not config.options.get("captions", True):
                caption_error = None
            error = error or caption_error
            if json_rel:
                try:
                    loaded = json.loads(storage.read_bytes(storage.join(part.root, json_rel)))
                    meta = loaded if isinstance(loaded, dict) else {"json": loaded}
                except (ValueError, UnicodeDecodeError) as exc:
                    error = error or f"meta_not_json:{exc.__class__.__name__}"
        except OSError as exc:
            error = f"read_failed:{exc.strerror or exc}"
        yield from out.add(source_rel, source, image, text, meta, error)
