"""HTML pages: a folder of `.html` files, one file, or a text file listing URLs (one per line); one row per page
with no image and no text, `meta.url` = the page's URL (file:// for local files)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
from pydantic import Field

from pipelines import storage
from pipelines.readers.base import HTML_SUFFIXES, Part, Source, SourceOptions, _url_list

if TYPE_CHECKING:
    from pipelines.readers.base import BatchBuilder, ReaderConfig


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
            lines = storage.read_bytes(root).decode("utf-8", "replace").splitlines()
            urls = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
            items = [[None, url] for url in urls]
        else:
            items, base = [], root
        for i, start in enumerate(range(0, len(items), opts.pages_per_part)):
            yield Part(id=first_id + i, format=self.name, root=base, dataset=dataset, path=root,
                       items=items[start : start + opts.pages_per_part])

    def files(self, part: Part) -> list[str]:
        listed = [storage.join(part.root, rel) for rel, _ in part.items if rel]
        return listed or [part.path]

    def read(self, part: Part, config: ReaderConfig, out: BatchBuilder) -> Iterator[pa.RecordBatch]:
        for rel, url in part.items:
            if rel is not None:
                path = storage.join(part.root, rel)
                yield from out.add(rel, path, None, None, {"url": _file_url(path)})
            else:
                assert url is not None
                yield from out.add(url, url, None, None, {"url": url})
