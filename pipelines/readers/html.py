"""HTML pages: a folder of `.html` files, one file, or a text file listing URLs (one per line); one row per page
with no image and no text, `meta.url` = the page's URL (file:// for local files) and, for a local file,
`meta.root` = the real path of the folder it was read from (the input folder, or the file's own folder when one
file was given): the folder whose files the page may load when rendered.

A URL list: a text file whose first non-empty, non-comment (`#`) line is an http(s):// or file:// URL and at least
half of whose such lines are (`is_url_line`; the first 64 KB decide). Each other line of it becomes an error row
(`not_a_url`) while the URLs are read as pages."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
from pydantic import Field

from pipelines import storage
from pipelines.readers.base import HTML_SUFFIXES, Part, Source, SourceOptions, _url_list

if TYPE_CHECKING:
    from pipelines.readers.base import BatchBuilder, ReaderConfig


_URL_LINE = re.compile(r"(?i)(https?|file)://\S+")


def is_url_line(line: str) -> bool:
    """Whether a (stripped) line of a URL list is a page URL: http(s):// or file://, no spaces."""
    return _URL_LINE.fullmatch(line) is not None


def url_list_lines(text: str) -> list[str]:
    """The lines of a URL list that name a page or should have: stripped, neither empty nor a # comment."""
    return [ln for ln in (raw.strip() for raw in text.splitlines()) if ln and not ln.startswith("#")]


class HtmlOptions(SourceOptions):
    pages_per_part: int = Field(32, ge=1, description="Pages per part (the unit of parallelism and resume).")


def _file_url(path: str) -> str:
    return path if storage.is_url(path) else Path(path).resolve().as_uri()


class HtmlSource(Source):
    name = "html"
    Options = HtmlOptions

    def plan(self, root: str, dataset: str, config: ReaderConfig, first_id: int) -> Iterator[Part]:
        opts = self.options(config)
        if storage.isdir(root):
            base = root
            pages = sorted(rel for rel, _ in storage.walk_files(root) if rel.lower().endswith(HTML_SUFFIXES))
            items = [[rel, None] for rel in pages]
        elif root.lower().endswith(HTML_SUFFIXES):
            base, items = storage.dirname(root), [[storage.basename(root), None]]
        elif _url_list(root):
            base = storage.dirname(root)
            lines = url_list_lines(storage.read_bytes(root).decode("utf-8", "replace"))
            items = [[None, ln] if is_url_line(ln) else [None, ln, "not_a_url"] for ln in lines]
        else:
            items, base = [], root
        for i, start in enumerate(range(0, len(items), opts.pages_per_part)):
            yield Part(id=first_id + i, format=self.name, root=base, dataset=dataset, path=root,
                       items=items[start : start + opts.pages_per_part])

    def files(self, part: Part) -> list[str]:
        listed = [storage.join(part.root, item[0]) for item in part.items if item[0]]
        return listed or [part.path]

    def read(self, part: Part, config: ReaderConfig, out: BatchBuilder) -> Iterator[pa.RecordBatch]:
        local_root = storage.local_path(part.root)
        root = os.path.realpath(local_root) if local_root is not None else None
        for rel, url, *error in part.items:
            if rel is not None:
                path = storage.join(part.root, rel)
                meta = {"url": _file_url(path), **({"root": root} if root is not None else {})}
                yield from out.add(rel, path, None, None, meta)
            elif error:  # a line of a URL list that is not a URL
                assert url is not None
                yield from out.add(url, url, None, None, None, error=error[0])
            else:
                assert url is not None
                yield from out.add(url, url, None, None, {"url": url})
