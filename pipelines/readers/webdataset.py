"""WebDataset reader: tars as img2dataset writes them (`key.jpg|png`, `key.txt`, `key.json`), one partition per tar."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa

from pipelines import storage
from pipelines.codec import READ_ERRORS, TarSamples, decompressed, split_name
from pipelines.readers.base import IMAGE_EXTENSIONS, TAR_SUFFIXES, decode_caption, unsupported_image

if TYPE_CHECKING:
    from pipelines.readers.base import BatchBuilder, Part, ReaderConfig

_IMAGE_EXTS = tuple(e.lstrip(".") for e in IMAGE_EXTENSIONS)


def plan(root: str, dataset: str, config: ReaderConfig, first_id: int) -> Iterator[Part]:
    from pipelines.readers.base import Part

    if storage.isdir(root):
        tars = [(storage.join(root, rel), size) for rel, size in storage.walk_files(root)
                if rel.lower().endswith(TAR_SUFFIXES)]
        # A pipe or dangling link named like a tar, a link to a folder: a part each, read as one error row.
        tars += [(path, 0) for path in storage.walk_unreadable(root, lambda p: p.lower().endswith(TAR_SUFFIXES))]
        base = root
    else:
        tars, base = [(root, storage.getsize(root))], storage.dirname(root)
    for i, (tar, size) in enumerate(tars):
        yield Part(id=first_id + i, format="webdataset", root=base, dataset=dataset, path=tar, size_hint=size)


def _sample_row(rel: str, tar: str, key: str, files: dict[str, bytes], skipped: list[tuple[str, str, str]],
                nth: int) -> tuple:
    image_ext = next((e for e in _IMAGE_EXTS if e in files), None)
    member = f"{key}.{image_ext}" if image_ext else None
    error = None
    if image_ext is None:
        error = "image_missing"
        link = next((s for s in skipped if s[1] in _IMAGE_EXTS), None)
        other = next((e for e in files if "." not in e and unsupported_image(f"x.{e}")), None)
        if link is not None:  # a link or device named KEY.jpg: TarSamples never reads one
            member, error = link[0], f"not_a_regular_member:{link[0]} ({link[2]})"
        elif other is not None:  # KEY.ico, KEY.psd: an image, but of a kind the readers do not take
            member = f"{key}.{other}"
            error = f"image_extension_unsupported:{member}"
    text, caption_error = decode_caption(files.get("txt"))
    link = next((s for s in skipped if s[1] == "txt"), None)
    if caption_error == "caption_missing" and link is not None:
        caption_error = f"not_a_regular_member:{link[0]} ({link[2]})"
    error = error or caption_error
    meta: dict = {}
    if "json" in files:
        try:
            loaded = json.loads(files["json"])
            meta = loaded if isinstance(loaded, dict) else {"json": loaded}
        except (ValueError, UnicodeDecodeError) as exc:
            error = error or f"meta_not_json:{exc.__class__.__name__}"
    if member is None:  # a member the tar holds (a sample of only KEY.json, or of KEY.a.jpg: extension a.jpg)
        member = f"{key}.{'txt' if 'txt' in files else next(iter(files), 'txt')}"
    image = files.get(image_ext) if image_ext else None
    # A key that came back after TarSamples' window is read as a new sample: a source id of its own (`KEY.2`; a
    # key never ends in `.N`: it stops at the first dot of the file name).
    source_id = f"{rel}::{key}" if nth == 1 else f"{rel}::{key}.{nth}"
    return source_id, f"{tar}::{member}", image, text, meta, error


def _index_skipped(entries: list[tuple[str, str]], into: dict[str, list[tuple[str, str, str]]]) -> None:
    """Add members TarSamples passed over (links, devices, folders) to `into` by key: (name, extension, kind)."""
    for name, what in entries:
        name = name.rstrip("/") if what == "folder" else name  # `KEY.jpg/`: a folder named like an image
        parts = split_name(name)
        if parts is not None:
            into.setdefault(parts[0], []).append((name, parts[1], what))


def _unread(rel: str, tar: str, reader: TarSamples, samples: dict[str, int],
            skipped_by_key: dict[str, list[tuple[str, str, str]]]) -> Iterator[tuple]:
    """Rows for what the tar holds but TarSamples did not yield: a second sample under the names of an earlier one
    (only the first member of a name is kept), and links or devices with no regular member beside them."""
    extra: dict[str, dict[str, int]] = {}  # key → extension → members of that name after the first
    for key, ext, _ in reader.duplicates:
        extra.setdefault(key, {}).setdefault(ext, 0)
        extra[key][ext] += 1
    for key, exts in extra.items():
        first = samples.get(key, 0)
        for nth in range(first + 1, first + max(exts.values()) + 1):
            names = [f"{key}.{ext}" for ext, n in exts.items() if n >= nth - first]
            yield (f"{rel}::{key}.{nth}", f"{tar}::{names[0]}", None, None, None,
                   f"duplicate_member:{', '.join(names)}")
    for key, skipped in skipped_by_key.items():
        members = [s for s in skipped if s[2] != "folder"]  # a folder entry is structure, not a sample
        if key not in samples and members:
            name, _, what = members[0]
            yield (f"{rel}::{key}", f"{tar}::{name}", None, None, None, f"not_a_regular_member:{name} ({what})")


def _not_a_tar(path: str, compressed: bool, size: int) -> str:
    if not compressed and path.lower().endswith((".gz", ".tgz")):
        return f"not a gzip file, nor a tar archive ({size} bytes)"
    return f"not a tar archive ({size} bytes, less than one tar header)"


def read(part: Part, config: ReaderConfig, out: BatchBuilder) -> Iterator[pa.RecordBatch]:
    rel = storage.relpath(part.path, part.root)
    if not storage.is_regular(part.path):  # never opened: a pipe would hang the run
        yield from out.add(f"{rel}::", part.path, None, None, None, storage.not_regular_reason(part.path))
        return
    count = 0
    samples: dict[str, int] = {}  # key → samples yielded under it
    skipped: dict[str, list[tuple[str, str, str]]] = {}  # key → members TarSamples passed over, indexed as they come
    indexed = 0  # how many of reader.skipped are in `skipped`
    try:
        raw = storage.open_file(part.path)
        with decompressed(raw) as stream:
            reader = TarSamples(stream)
            for sample in reader:
                key = sample.pop("__key__")
                count += 1
                samples[key] = samples.get(key, 0) + 1
                _index_skipped(reader.skipped[indexed:], skipped)
                indexed = len(reader.skipped)
                yield from out.add(*_sample_row(rel, part.path, key, sample, skipped.get(key, []), samples[key]))
            compressed = stream is not raw
    except READ_ERRORS as exc:
        yield from out.add(f"{rel}::<rest>", part.path, None, None, None, f"tar_broken:{str(exc).strip() or type(exc).__name__}")
        return
    if reader.lost is not None:
        samples[reader.lost] = samples.get(reader.lost, 0) + 1  # its row follows
    unread = 0
    _index_skipped(reader.skipped[indexed:], skipped)
    for row in _unread(rel, part.path, reader, samples, skipped):
        unread += 1
        yield from out.add(*row)
    if reader.lost is not None:
        yield from out.add(f"{rel}::{reader.lost}", f"{part.path}::{reader.lost}", None, None, None,
                           f"tar_truncated:{reader.error}")
    if reader.error is not None and reader.error != "empty file":
        # The rest of the tar cannot be read: one row stands for it so the loss is visible.
        error = reader.error
        if not reader.headers and error.startswith("truncated: the archive ends at byte"):  # not even one header
            error = _not_a_tar(part.path, compressed, storage.getsize(part.path))
        yield from out.add(f"{rel}::<rest>", part.path, None, None, None, f"tar_broken:{error}")
    elif not count and not unread:
        yield from out.add(f"{rel}::", part.path, None, None, None, "tar_empty")
