"""Sources as plug-ins: input planning (driver side) and partition reading (worker side).

A source cuts its input into parts (the unit of parallelism and resume) and reads a part into record batches.
Sources register under the entry-point group `vlmdata.sources` (like operators), so another package adds its own;
a recipe names one in `reader.format` (or `auto` picks by what each input is), with the source's own options in
`reader.options`. Built in: folder, webdataset, parquet, prompts, html, text, count.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib import import_module
from typing import Annotated, Any, ClassVar, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines import storage
from pipelines.plugins import import_path, load_group
from pipelines.schema import make_key, record_schema


def _pillow_has(module: str) -> bool:
    """Whether Pillow was built with an optional codec (`PIL.features.check` without importing PIL.Image here)."""
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except ImportError:
        return False


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff") + (
    (".avif",) if _pillow_has("PIL._avif") else ())
SOURCE_ENTRY_POINTS = "vlmdata.sources"


class InputError(ValueError):
    """An input the readers cannot use; the message names the file and what to do."""


class ReaderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = Field(
        "auto", description="Source plug-in (folder, webdataset, parquet, prompts, html, text, count, or a registered "
        "one); auto picks by what each input is (`count:N` inputs are the count source)."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="The source's own options (see `vlmdata ops`).")
    limit: int | None = Field(None, ge=1, description="Read only the first N samples of the inputs (in planning order; "
                              "sources whose parts list their samples: folders, HTML, text, Parquet, prompts, count).")
    dataset: str | None = Field(None, description="Dataset name recorded on every row; default: the input's name.")
    part_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="Samples per partition, at least 1 (the unit of parallelism and resume; a tar is one "
        "partition). auto: from the input size and the engine's parallelism, so every core has work to the end "
        "(64..4096 per part).")
    batch_size: int = Field(64, ge=1, description="Rows per Arrow batch handed to operators (bounds worker memory).")
    image_column: str | None = Field(None, description="Parquet column with image bytes; default: first of image/jpg/png/img.")
    text_column: str | None = Field(None, description="Parquet column with the caption; default: first of text/caption/txt.")
    id_column: str | None = Field(None, description="Parquet column that identifies a row (default: the row number).")
    fingerprint: Literal["content", "stat"] = Field(
        "content",
        description="What identifies an input for resume: a hash of its bytes (content) or its paths and sizes (stat, "
        "cheaper on huge inputs). A rerun reuses finished work only when this and the recipe are unchanged.",
    )


class Part(BaseModel):
    """One input partition: the unit of parallelism, of shard naming and of resume."""

    model_config = ConfigDict(frozen=True)

    id: int
    format: str  # the source plug-in that reads it
    root: str  # the input the user named; source ids are relative to it
    dataset: str
    path: str  # folder, tar or parquet file
    items: list[list[str | None]] = Field(default_factory=list)  # folder: [stem, image, txt, json]; html/text: [file]
    row_start: int = 0  # parquet: rows [row_start, row_end)
    row_end: int = 0
    input: str = ""  # the input as the user named it (several parts may share it)
    size_hint: int = 0  # bytes of input behind this part
    content_sha1: str | None = None  # hash of the bytes behind this part (reader.fingerprint = content)


class SourceOptions(BaseModel):
    """Base of a source's own options (`reader.options`): unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Source:
    """A source plug-in. Subclasses set `name`, optionally `Options` and `columns` (typed fields it adds to the
    base record), and implement `plan` and `read`; `detect` lets `format: auto` pick it."""

    name: ClassVar[str]
    Options: ClassVar[type[SourceOptions]] = SourceOptions
    columns: ClassVar[tuple[pa.Field, ...]] = ()

    def detect(self, path: str) -> bool:
        """Whether `path` is this source's kind of input (for `format: auto`); the built-ins decide by content."""
        return False

    def plan(self, root: str, dataset: str, config: ReaderConfig, first_id: int) -> Iterator[Part]:
        raise NotImplementedError

    def read(self, part: Part, config: ReaderConfig, out: BatchBuilder) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def files(self, part: Part) -> list[str]:
        """The files behind `part` (for the content fingerprint): its listed items, else its path."""
        if part.items:
            return [storage.join(part.root, item[0]) for item in part.items if item and item[0]]
        return [part.path] if part.path else []

    def options(self, config: ReaderConfig) -> SourceOptions:
        try:
            return self.Options.model_validate(config.options)
        except ValidationError as exc:
            raise InputError(f"reader.options for source {self.name!r}: {exc}") from exc


class ModuleSource(Source):
    """A built-in source whose plan/read live as functions in a module (the three original readers)."""

    def __init__(self, name: str, module: str, columns: tuple[pa.Field, ...] = (),
                 options: type[SourceOptions] = SourceOptions):
        self.name, self._module, self.columns = name, module, columns  # type: ignore[misc]
        self.Options = options  # type: ignore[misc]

    def plan(self, root: str, dataset: str, config: ReaderConfig, first_id: int) -> Iterator[Part]:
        return import_module(self._module).plan(root, dataset, config, first_id)

    def read(self, part: Part, config: ReaderConfig, out: BatchBuilder) -> Iterator[pa.RecordBatch]:
        return import_module(self._module).read(part, config, out)

    def files(self, part: Part) -> list[str]:
        module = import_module(self._module)
        return module.files(part) if hasattr(module, "files") else super().files(part)


@cache
def sources() -> dict[str, Source]:
    """Every registered source by name (entry points `vlmdata.sources`); a broken plug-in is reported by name."""
    return {name: obj() if isinstance(obj, type) else obj for name, obj in load_group(SOURCE_ENTRY_POINTS, "source").items()}


def get_source(name: str) -> Source:
    """A registered source, or any Source subclass by import path (`package.module:Class`)."""
    if ":" in name and not name.startswith("count:"):
        try:
            obj = import_path(name, "source")
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        return obj() if isinstance(obj, type) else obj
    if name in BUILTIN_SOURCES:  # no entry-point scan in every engine worker for the built-ins
        return getattr(import_module("pipelines.readers.builtin"), name.upper())
    known = sources()
    if name not in known:
        raise InputError(f"unknown source {name!r}; known sources: {', '.join(sorted(known)) or 'none'}")
    return known[name]


class BatchBuilder:
    """Accumulates read rows and emits record batches of the base + control schema (+ the source's columns)."""

    def __init__(self, part: Part, batch_size: int, columns: tuple[pa.Field, ...] = ()):
        self.part = part
        self.schema = record_schema(columns)
        self.batch_size = batch_size
        self.rows: list[dict[str, Any]] = []
        self.ord = 0

    def add(
        self,
        source_id: str,
        source: str,
        image: bytes | None,
        text: str | None,
        meta: dict[str, Any] | None = None,
        error: str | None = None,
        columns: Mapping[str, Any] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        self.rows.append(
            {
                **(columns or {}),
                "key": make_key(self.part.dataset, source_id),
                "image": None if error else image,
                "text": text,
                "source": source,
                "dataset": self.part.dataset,
                "meta": json_meta(meta),
                "part": self.part.id,
                "ord": self.ord,
                "keep": error is None,
                "error": error is not None,
                "stage": "read" if error else None,
                "reason": error,
            }
        )
        self.ord += 1
        if len(self.rows) >= self.batch_size:
            yield self.flush()

    def flush(self) -> pa.RecordBatch:
        batch = pa.RecordBatch.from_pylist(self.rows, schema=self.schema)
        self.rows = []
        return batch

    def finish(self) -> Iterator[pa.RecordBatch]:
        if self.rows:
            yield self.flush()


def json_meta(meta: Mapping[str, Any] | None) -> str:
    """`meta` as the JSON text the record carries: any value a source meets becomes JSON-safe (bytes as base64,
    dates and decimals as strings, NaN as null), so an unusual extra column never fails a run."""
    return json.dumps(_json_safe(meta or {}), ensure_ascii=False, sort_keys=True, allow_nan=False)


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _json_safe(value.tolist())
    if hasattr(value, "isoformat"):  # datetime, date, time
        return value.isoformat()
    return str(value)  # Decimal, UUID, timedelta, …


def decode_caption(raw: bytes | None) -> tuple[str | None, str | None]:
    """(text, error reason) of caption bytes: UTF-8 strictly, a BOM tolerated."""
    if raw is None:
        return None, "caption_missing"
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        return None, f"caption_not_utf8:byte {exc.start}"


def input_name(path: str) -> str:
    return storage.basename(path).split(".")[0] or "input"


def _spelled(root: str) -> str:
    """An input's path as the user spelled it, made absolute (links not followed: two links to one folder are two
    inputs with two names, whose keys differ): what tells inputs apart and what dataset names are cut from."""
    if root.startswith("count:"):
        return "count:"
    local = storage.local_path(root)
    return os.path.abspath(local) if local is not None else root.rstrip("/")


def dataset_names(inputs: list[str], config: ReaderConfig) -> list[str]:
    """Each input's dataset name (the `dataset` column; half of every key): its base name up to the first dot, or
    `reader.dataset`. Inputs that share a base name (two folders called `data`) are named by as many trailing path
    components as tell them apart (`a/data`, `b/data`), so their keys never collide; an input given twice (the same
    path, however spelled) is an error: every key would collide, and exact dedup could not tell the copies apart."""
    seen: dict[str, int] = {}
    for i, root in enumerate(inputs):
        first = seen.setdefault(_spelled(root), i)
        if first != i:
            same = inputs[first]
            what = "count:N is given more than once" if root.startswith("count:") else f"{root} is given twice"
            raise InputError(f"{what}{'' if same == root else f' (also as {same})'}: pass each input once")
    if config.dataset:
        return [config.dataset] * len(inputs)
    names = [input_name(root) for root in inputs]
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name, []).append(i)
    for clash in groups.values():
        if len(clash) < 2:
            continue
        paths = [_spelled(inputs[i]).split("://")[-1].strip("/").split("/") for i in clash]
        for depth in range(1, max(map(len, paths)) + 1):
            tails = ["/".join(parts[-depth:]) for parts in paths]
            if len(set(tails)) == len(tails):
                break
        for i, tail in zip(clash, tails, strict=True):
            names[i] = tail
    return names


TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
TEXT_SUFFIXES = (".txt", ".md", ".rst")
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
PROMPT_SUFFIXES = (".jsonl", ".json")
BUILTIN_SOURCES = ("folder", "webdataset", "parquet", "prompts", "html", "text", "count")


@cache
def _pillow_extensions() -> frozenset[str]:
    """Extensions (".ico", ".psd", …) of every format Pillow can open, IMAGE_EXTENSIONS or not."""
    from PIL import Image

    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def unsupported_image(name: str) -> bool:
    """An image by its extension as Pillow sees it, but not one the readers take (not in IMAGE_EXTENSIONS): a
    caption beside it is told why its image was not read, rather than `image_missing`."""
    ext = os.path.splitext(name)[1].lower()
    return bool(ext) and ext not in IMAGE_EXTENSIONS and ext in _pillow_extensions()


def _kind(name: str) -> str | None:
    low = name.lower()
    if low.endswith(IMAGE_EXTENSIONS):
        return "image"
    if low.endswith(TAR_SUFFIXES):
        return "tar"
    if low.endswith(".parquet"):
        return "parquet"
    if low.endswith(".jsonl"):
        return "jsonl"
    if low.endswith(HTML_SUFFIXES):
        return "html"
    if low.endswith(TEXT_SUFFIXES):
        return "text"
    return None


def _parquet_kind(path: str) -> str:
    """prompts for a prompt set (a `question` column), else parquet (images and captions)."""
    import pyarrow.parquet as pq

    try:
        with storage.open_file(path) as f:
            names = pq.ParquetFile(f).schema_arrow.names
    except Exception:  # noqa: BLE001 - the parquet source reports an unreadable file with its reason
        return "parquet"
    return "prompts" if "question" in names else "parquet"


def _url_list(path: str) -> bool:
    """A list of pages: a text file whose first non-empty, non-comment line is a URL and at least half of whose
    such lines are (the first 64 KB decide; the html source makes each other line a `not_a_url` error row)."""
    from pipelines.readers.html import is_url_line, url_list_lines

    limit = 1 << 16
    try:
        with storage.open_file(path) as f:
            raw = f.read(limit + 1)
    except OSError:
        return False
    head = raw[:limit].decode("utf-8", "replace")
    if len(raw) > limit and "\n" in head:
        head = head.rsplit("\n", 1)[0]  # the line the cut went through is not judged
    lines = url_list_lines(head)
    urls = sum(map(is_url_line, lines))
    return bool(lines) and is_url_line(lines[0]) and 2 * urls >= len(lines)


def _has_local_image(path: str) -> bool:
    """Whether a local folder holds a regular image file anywhere below it, stopping at the first one found (a
    subset of what `storage.walk_files` lists, so the answer agrees with a full listing whenever it is True)."""
    local = storage.local_path(path)
    if local is None:
        return False
    for folder, _, names in os.walk(local):
        for name in names:
            if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, name)):
                return True
    return False


def detect_format(path: str) -> str:
    """The source for an input, by what its files are (a stray file of another kind does not flip it): images
    win (img2dataset's `files` layout has .txt/.json/.parquet beside them), then tars, Parquet, JSONL prompt sets,
    HTML pages, text. Registered plug-in sources are asked first."""
    if path.startswith("count:"):
        return "count"
    for name, source in sources().items():
        if name not in BUILTIN_SOURCES and source.detect(path):
            return name
    if storage.isdir(path):
        if _has_local_image(path):
            return "folder"  # images win: no need to list the rest of a large folder (planning lists it once)
        kinds: dict[str, list[str]] = {}
        for rel, _ in storage.walk_files(path):
            kind = _kind(rel)
            if kind:
                kinds.setdefault(kind, []).append(rel)
        if "image" in kinds:
            return "folder"
        if "tar" in kinds:
            return "webdataset"
        if "parquet" in kinds:
            return _parquet_kind(storage.join(path, sorted(kinds["parquet"])[0]))
        if "jsonl" in kinds:
            return "prompts"
        if "html" in kinds:
            return "html"
        if "text" in kinds:
            return "text"
        raise InputError(f"{path}: a folder with no images, tars, Parquet, JSONL, HTML or text files; "
                         "pass one of those (or set reader.format)")
    kind = _kind(path)
    if kind == "tar":
        return "webdataset"
    if kind == "parquet":
        return _parquet_kind(path)
    if kind == "jsonl" or path.lower().endswith(".json"):
        return "prompts"
    if kind == "html":
        return "html"
    if kind == "text":
        return "html" if _url_list(path) else "text"
    raise InputError(
        f"{path}: not a folder of images with .txt captions, a WebDataset .tar, a .parquet, a .jsonl prompt set, "
        "HTML pages, a text corpus or count:N; pass one of those (or set reader.format)"
    )


def check_inputs(inputs: list[str], config: ReaderConfig) -> None:
    """Cheap up-front check (before any engine starts): every input exists and has a readable format."""
    if not inputs:
        raise InputError("no input given: pass at least one folder, .tar, .parquet, .jsonl, HTML pages or count:N")
    if config.format != "auto":
        get_source(config.format).options(config)
    for root in inputs:
        if root.startswith("count:") or (config.format == "count"):
            _count_of(root)
            continue
        if config.format not in ("auto", *BUILTIN_SOURCES) and get_source(config.format).detect(root):
            continue  # a plug-in's own kind of input (not a path)
        try:
            found = storage.exists(root)
        except Exception as exc:  # noqa: BLE001 - an unknown protocol, missing credentials, an unreachable host
            raise InputError(f"{root}: cannot be opened ({exc})") from exc
        if not found:
            raise InputError(f"{root}: no such file or folder")
        if config.format == "auto":
            get_source(detect_format(root)).options(config)


def _count_of(root: str) -> int:
    text = root.removeprefix("count:")
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"{root}: use count:N with N ≥ 1 (N numbered seeds for a procedural generator)")
    return int(text)


def source_of(root: str, config: ReaderConfig) -> str:
    return config.format if config.format != "auto" else detect_format(root)


def source_fields(formats: list[str]) -> tuple[pa.Field, ...]:
    """The columns the given sources add to the base record, in a stable order (first declaration wins)."""
    fields: dict[str, pa.Field] = {}
    for name in dict.fromkeys(formats):
        for f in get_source(name).columns:
            fields.setdefault(f.name, f)
    return tuple(fields.values())


AUTO_UNIT = 64  # part_size auto: inputs are planned in units of this many samples, then grouped
AUTO_MAX = 4096
PARTS_PER_WORKER = 4  # enough parts that no core idles at the end, few enough that per-part costs stay small


def plan_parts(inputs: list[str], config: ReaderConfig, parallelism: int = 2) -> list[Part]:
    """List every input partition, in a deterministic order, without reading sample data. With `part_size: auto`,
    parts are sized from the input and `parallelism` (the engine's cores)."""
    check_inputs(inputs, config)
    auto = config.part_size == "auto"
    planning = config.model_copy(update={"part_size": AUTO_UNIT}) if auto else config
    parts: list[Part] = []
    for root, dataset in zip(inputs, dataset_names(inputs, config), strict=True):
        fmt = source_of(root, config)
        for part in get_source(fmt).plan(root, dataset, planning, len(parts)):
            parts.append(part.model_copy(update={"input": root}))
    if auto and parts:
        parts = _group(parts, parallelism)
    if not parts:
        raise InputError(f"no samples found in {', '.join(inputs)}")
    if config.limit is not None:
        parts = _first(parts, config.limit)
    if config.fingerprint == "content":
        # Each file is hashed once, even when several parts read it (Parquet row ranges).
        files = sorted({path for part in parts for path in get_source(part.format).files(part)})
        digests = _hash_files(files)
        parts = [_with_content_hash(part, digests) for part in parts]
    return parts


def _samples(part: Part) -> int | None:
    if part.items:
        return len(part.items)
    if part.row_end > part.row_start:
        return part.row_end - part.row_start
    return None  # a tar: unknown until read


def _group(units: list[Part], parallelism: int) -> list[Part]:
    """Consecutive unit parts of the same input and file merged into about PARTS_PER_WORKER parts per worker, as
    equal as the units allow (between AUTO_UNIT and AUTO_MAX samples; tars stay one part each). The count is a
    multiple of the workers where the units allow it, and parts are cut at equal shares of the samples, so the
    workers finish together: no trailing small part that one core runs while the others idle."""
    total = sum(_samples(p) or 0 for p in units)
    sized = sum(1 for p in units if _samples(p))
    workers = max(1, parallelism)
    n = max(workers * PARTS_PER_WORKER, -(-total // AUTO_MAX))
    n = max(1, min(-(-n // workers) * workers, sized))
    out: list[Part] = []
    share, done = -1, 0  # the share of the samples (0..n-1) the last part was cut for; samples planned so far
    for unit in units:
        count = _samples(unit)
        last = out[-1] if out else None
        target = done * n // total if count is not None and total else -1  # the share this unit starts in
        mergeable = (last is not None and count is not None and target == share
                     and (_samples(last) or 0) + count <= AUTO_MAX
                     and (last.input, last.format, last.path, last.root, last.dataset)
                     == (unit.input, unit.format, unit.path, unit.root, unit.dataset)
                     and (bool(last.items) == bool(unit.items))
                     and (unit.items or last.row_end == unit.row_start))
        if mergeable:
            assert last is not None
            if unit.items:
                out[-1] = last.model_copy(update={"items": last.items + unit.items,
                                                  "size_hint": last.size_hint + unit.size_hint})
            else:
                out[-1] = last.model_copy(update={"row_end": unit.row_end, "size_hint": last.size_hint + unit.size_hint})
        else:
            out.append(unit.model_copy(update={"id": len(out)}))
            share = target
        done += count or 0
    return out


def _first(parts: list[Part], limit: int) -> list[Part]:
    """The parts cut to their first `limit` samples (parts that list items or row ranges; a tar is kept whole)."""
    out, left = [], limit
    for part in parts:
        if left <= 0:
            break
        if part.items:
            part = part.model_copy(update={"items": part.items[:left]})
            left -= len(part.items)
        elif part.row_end > part.row_start:
            part = part.model_copy(update={"row_end": min(part.row_end, part.row_start + left)})
            left -= part.row_end - part.row_start
        out.append(part)
    return out


HASH_THREADS = 8  # threads for remote files: they overlap the reads' latency


def _hash_threads(files: list[str]) -> int:
    """Threads to hash `files` on. Local files: one per core. Hashing releases the GIL, but every file also takes it
    for a stat, an open and a read; more threads than cores then queue on the GIL and starve the thread that starts
    the engine meanwhile (8 threads over 6,000 small local files: 1.5 s of CPU against 0.6 s on one, and runs 1-1.5 s
    slower on 2 cores)."""
    if all(storage.local_path(f) is not None for f in files):
        return max(1, min(os.cpu_count() or 1, len(files)))
    return max(1, min(HASH_THREADS, len(files)))


def _hash_files(files: list[str]) -> dict[str, str]:
    """`_file_sha1` of every file, on threads that each take a contiguous slice (one task per thread, not one
    per file: per-file futures cost more than hashing a 100-kB image)."""
    n = _hash_threads(files)
    slices = [files[i * len(files) // n:(i + 1) * len(files) // n] for i in range(n)]
    with ThreadPoolExecutor(max_workers=n) as pool:
        hashed = [h for chunk in pool.map(lambda chunk: [_file_sha1(f) for f in chunk], slices) for h in chunk]
    return dict(zip(files, hashed, strict=True))


def _file_sha1(path: str) -> str:
    """Hash of a file's bytes, streamed: memory stays flat."""
    if not storage.is_regular(path):
        return "not-a-regular-file"  # a pipe or device: never read (it could block forever)
    local = storage.local_path(path)
    if local is not None:
        # A local file: hashlib reads it in C without the GIL (the planning driver hashes every input file).
        with open(local, "rb") as f:
            return hashlib.file_digest(f, "sha1").hexdigest()
    digest = hashlib.sha1()
    with storage.open_file(path) as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _with_content_hash(part: Part, digests: dict[str, str]) -> Part:
    """The part with a hash of every file it reads (names relative to its input, and contents)."""
    digest = hashlib.sha1()
    for path in get_source(part.format).files(part):
        digest.update(f"{storage.relpath(path, part.root)}\0{digests[path]}\0".encode())
    return part.model_copy(update={"content_sha1": digest.hexdigest()})


def read_part(part: Part, config: ReaderConfig) -> Iterator[pa.RecordBatch]:
    """Every sample of `part` as record batches; broken samples come out as error rows, never exceptions."""
    source = get_source(part.format)
    builder = BatchBuilder(part, config.batch_size, source.columns)
    yield from source.read(part, config, builder)
    yield from builder.finish()
