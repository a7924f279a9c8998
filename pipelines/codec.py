"""The one WebDataset sample codec: an Arrow row ⇄ `{key}.jpg|png`, `{key}.txt`, `{key}.json` (+ sidecar values),
the deterministic tar writer, and the tar reader (webdataset's key rule; cut or corrupt archives reported)."""

from __future__ import annotations

import bz2
import functools
import gzip
import io
import json
import lzma
import math
import re
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any

import pyarrow as pa

from pipelines import storage
from pipelines.columns import is_working, sidecar_of
from pipelines.schema import ENGINE_COLUMNS

BLOCK = 512
READ_BUFFER = 1 << 20
FIXED_MTIME = 0  # same samples → byte-identical tars
OWNER = "vlmdata"
# Members of one sample may be interleaved with those of up to this many other samples (`tar cf x.tar *.png *.txt`
# over a few files); a key that comes back later than that is reported and starts a new sample.
GROUP_WINDOW = 16
READ_ERRORS = (EOFError, zlib.error, lzma.LZMAError, OSError, ValueError)
_NOT_IN_JSON = frozenset({"image", "text", "meta"}) | ENGINE_COLUMNS
_REGULAR = (b"0", b"\0", b"7")
_NOT_REGULAR = {b"1": "hard link", b"2": "symbolic link", b"3": "character device", b"4": "block device",
                b"5": "folder", b"6": "named pipe", b"S": "sparse file"}  # what TarSamples passes over
_ZERO_BLOCK = bytes(BLOCK)
_META_MEMBER = re.compile(r"__[^/]*__($|/)")  # webdataset skips these (`__index__` …)


class SampleDecodeError(ValueError):
    """A sample's `.json` is not JSON or its `.txt` is not UTF-8."""

    def __init__(self, key: str, member: str, detail: str) -> None:
        super().__init__(f"sample {key!r}: {member} {detail}")
        self.key, self.member = key, member


class ShardReadError(OSError):
    """A tar that could not be read to its end: every complete sample before the fault was still yielded."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"{url}: {detail}")
        self.url, self.detail = url, detail


# ---------------------------------------------------------------- row → sample


def _jsonable(value: Any, structured: bool) -> Any:
    """`value` as valid JSON: non-finite floats become null; in Arrow structs (`structured`) null members go."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _jsonable(v, structured) for k, v in value.items() if not (structured and v is None)}
    if isinstance(value, list | tuple):
        return [_jsonable(v, structured) for v in value]
    return value


def encode_json(fields: Mapping[str, Any]) -> bytes:
    """A sample's `.json` bytes: UTF-8, keys sorted, NaN/inf as null (valid JSON for every reader)."""
    return json.dumps(_jsonable(dict(fields), False), ensure_ascii=False, sort_keys=True, allow_nan=False).encode()


def sidecar_schemas(schema: pa.Schema) -> dict[str, pa.Schema]:
    """The Parquet schema of each sidecar the record schema names: `key`, then its columns in schema order."""
    out: dict[str, list[pa.Field]] = {}
    for field in schema:
        name = sidecar_of(field)
        if name is not None:
            out.setdefault(name, [pa.field("key", pa.string())]).append(field.remove_metadata())
    return {name: pa.schema(fields) for name, fields in out.items()}


def sample_from_row(row: Mapping[str, Any], schema: pa.Schema) -> tuple[dict[str, bytes], dict[str, dict[str, Any]]]:
    """A kept row as an img2dataset-style sample, and its sidecar values by sidecar name.

    Image (`png` when `image_format` says so, else `jpg`; none for text-only rows), caption `.txt`, and every other
    column in `.json` except engine, working and sidecar columns: `meta` as an object, `caption` = `text`, structured
    columns as JSON structures without their null members, null columns left out.
    """
    fields: dict[str, Any] = {}
    sidecars: dict[str, dict[str, Any]] = {}
    for field in schema:
        name = field.name
        if name in _NOT_IN_JSON or is_working(field):
            continue
        value = row.get(name)
        side = sidecar_of(field)
        if side is not None:
            sidecars.setdefault(side, {})[name] = value
            continue
        if value is None:
            continue
        if isinstance(value, bytes | bytearray):
            raise TypeError(f"column {name!r} holds bytes: declare it working(...) or sidecar(...), a .json cannot hold it")
        fields[name] = _jsonable(value, pa.types.is_nested(field.type))
    if row.get("text") is not None:
        fields["caption"] = row["text"]
    fields["meta"] = json.loads(row["meta"]) if row.get("meta") else {}
    sample: dict[str, bytes] = {"__key__": row["key"]}
    if row.get("image") is not None:
        sample["png" if row.get("image_format") == "png" else "jpg"] = row["image"]
    sample["txt"] = (row.get("text") or "").encode()
    sample["json"] = encode_json(fields)
    return sample, {k: v for k, v in sidecars.items() if any(x is not None for x in v.values())}


def decode_sample(sample: Mapping[str, Any]) -> dict[str, Any]:
    """`sample` with `.json` parsed and `.txt` decoded (UTF-8); other members stay bytes.

    Raises `SampleDecodeError` for a `.json` that is not JSON or a `.txt` that is not UTF-8.
    """
    key = str(sample.get("__key__", ""))
    out = dict(sample)
    if "json" in sample:
        try:
            out["json"] = json.loads(sample["json"])
        except (ValueError, UnicodeDecodeError) as exc:
            raise SampleDecodeError(key, "json", f"is not JSON: {exc}") from None
    if "txt" in sample:
        try:
            out["txt"] = sample["txt"].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SampleDecodeError(key, "txt", f"is not UTF-8: {exc}") from None
    return out


# ---------------------------------------------------------------- writer


def member_bytes(sample: Mapping[str, Any]) -> int:
    """Bytes a sample takes in a tar: a header block per member plus the data padded to blocks."""
    return sum(BLOCK + -(-len(v) // BLOCK) * BLOCK for k, v in sample.items() if not k.startswith("__"))


def _tarfile_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, FIXED_MTIME, 0o444
    info.uname = info.gname = OWNER
    return info.tobuf(tarfile.USTAR_FORMAT, tarfile.ENCODING, "surrogateescape")


# every field but name, size and checksum is the same in each member's header; the checksum field reads as 8 spaces
_EMPTY_HEADER = _tarfile_header("", 0)
_TEMPLATE = _EMPTY_HEADER[:148] + b" " * 8 + _EMPTY_HEADER[156:]


def _header(name: str, size: int) -> bytes:
    """`tarfile`'s USTAR header of a member (`_tarfile_header`), byte for byte. An ASCII name of at most 100 bytes
    and a size below 8 GiB (every member a curation writes) patch the name, size and checksum fields of a template
    (5 µs); anything else asks `tarfile` (38 µs), which splits long names into prefix and name or refuses them."""
    if size >= 8**11 or len(name) > 100 or not name.isascii():
        return _tarfile_header(name, size)
    header = bytearray(_TEMPLATE)
    header[: len(name)] = name.encode("ascii")
    header[124:136] = b"%011o\0" % size
    # the checksum: the sum of the header's bytes with its own field read as 8 spaces, as 6 octal digits, NUL, space
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


class TarWriter:
    """Writes samples as webdataset does (`{key}.{ext}` members, extensions sorted) with fixed metadata.

    The archive is the one `tarfile.open(fileobj=stream, mode="w|", format=USTAR_FORMAT)` writes, byte for byte
    (stdlib `TarInfo.tobuf` headers, data padded to 512-byte blocks, two zero blocks and zeros up to a multiple of
    `tarfile.RECORDSIZE` at the end), written straight to `stream`: tarfile's stream mode pushes every member through
    a Python buffer that it re-slices per 10 kB record, which copies a 100 kB image about ten times. Not webdataset's
    TarWriter: importing webdataset imports torch, which would add ~650 MB and a second of start-up to every engine
    worker that writes shards.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.offset = 0
        self.closed = False

    def write(self, sample: Mapping[str, bytes | str]) -> None:
        key = sample["__key__"]
        if not isinstance(key, str) or not key or "." in key.rsplit("/", 1)[-1]:
            raise ValueError(f"sample key {key!r}: readers split `key.ext` at the first dot of the name, so a key "
                             "must be a non-empty string without a dot after its last '/'")
        members = []
        for ext in sorted(k for k in sample if not k.startswith("__")):
            data = sample[ext]
            data = data.encode() if isinstance(data, str) else data
            # every header is built before anything is written: a name tarfile refuses fails the whole sample
            members.append((_header(f"{key}.{ext}", len(data)), data))
        for header, data in members:
            pad = -len(data) % BLOCK
            self.stream.write(header)
            self.stream.write(data)
            if pad:
                self.stream.write(_ZERO_BLOCK[:pad])
            self.offset += len(header) + len(data) + pad

    def close(self) -> None:
        """The end-of-archive blocks, then zeros up to a whole record (as tarfile does)."""
        if self.closed:
            return
        self.closed = True
        self.offset += 2 * BLOCK
        self.stream.write(bytes(2 * BLOCK + -self.offset % tarfile.RECORDSIZE))

    def __enter__(self) -> TarWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- reader


class _Owning(io.BufferedReader):
    """A decompressing stream that also closes the file under it."""

    def __init__(self, inner: IO[bytes], raw: IO[bytes]) -> None:
        super().__init__(inner, READ_BUFFER)  # type: ignore[arg-type]
        self._under = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._under.close()


def decompressed(raw: IO[bytes]) -> IO[bytes]:
    """`raw`, or a stream that decompresses it when it starts like a gzip, bz2 or xz file; closing it closes `raw`."""
    if raw.seekable():
        magic = raw.read(6)
        raw.seek(0)
    else:
        raw = raw if hasattr(raw, "peek") else io.BufferedReader(raw, READ_BUFFER)  # type: ignore[arg-type]
        magic = raw.peek(6)[:6]  # type: ignore[attr-defined]
    if magic.startswith(b"\x1f\x8b"):
        return _Owning(gzip.GzipFile(fileobj=raw), raw)  # type: ignore[arg-type]
    if magic.startswith(b"BZh"):
        return _Owning(bz2.BZ2File(raw), raw)  # type: ignore[arg-type]
    if magic.startswith(b"\xfd7zXZ"):
        return _Owning(lzma.LZMAFile(raw), raw)  # type: ignore[arg-type]
    return raw


def open_url(url: str) -> IO[bytes]:
    """A binary stream of a shard: the plain file for local paths (fastest), fsspec's file for any other URL;
    gzip, bz2 and xz archives are decompressed on the fly."""
    local = storage.local_path(url)
    if local is None:
        return decompressed(storage.open_file(url))
    return decompressed(open(local, "rb", buffering=READ_BUFFER))  # noqa: SIM115 - the caller closes it


def _number(field: bytes) -> int:
    """A header number: NUL/space-terminated octal, or GNU base-256 for large values."""
    if field and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        return -(256 ** (len(field) - 1) - value) if field[0] == 0xFF else value
    field = field.split(b"\0", 1)[0].strip()
    return int(field, 8) if field else 0


def _checksum_ok(header: bytes) -> bool:
    try:
        stored = _number(header[148:156])
    except ValueError:
        return False
    unsigned = sum(header) - sum(header[148:156]) + 8 * 32
    if stored == unsigned:
        return True
    # Some old writers summed signed bytes.
    return stored == unsigned - 256 * sum(1 for b in header[:148] + header[156:] if b > 127)


def _pax(data: bytes) -> dict[bytes, bytes]:
    """Records of a pax extended header: b"LEN key=value\\n" …"""
    out, pos = {}, 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        out[key] = value
        pos += length
    return out


def split_name(name: str) -> tuple[str, str] | None:
    """webdataset's rule: (key, extension) split at the first dot of the file name; None when it has none."""
    slash = name.rfind("/") + 1
    dot = name.find(".", slash + 1)  # a name starting with a dot has no key
    if dot < 0:
        return None
    return name[:dot], name[dot + 1 :].lower()


class _Cut(Exception):
    """A member whose data the archive does not hold in full."""

    def __init__(self, key: str | None, detail: str) -> None:
        self.key, self.detail = key, detail


class TarSamples:
    """Iterate `{"__key__", ext: bytes, …}` samples of one tar stream, read once front to back.

    Members are grouped by key (webdataset's rule), also when a few samples' members are interleaved. Afterwards
    `error` says why the archive ended early (None when it was read to its end-of-archive blocks), `lost` names the
    sample left out because a member of it was cut, `problems` lists odd but readable things (a duplicate member,
    a key that comes back too late), and `nbytes` counts the member data read. Every sample that was complete
    before a fault is yielded. What was passed over is noted for a reader that accounts for every member:
    `skipped` (name, kind) of links, devices and folders, `duplicates` (key, extension, name) of second members of
    one name, and `headers`, the member headers read (none: the file was no tar at all).
    """

    def __init__(self, stream: IO[bytes], limit: int | None = None, window: int = GROUP_WINDOW) -> None:
        self.stream, self.limit, self.window = stream, limit, window
        self.error: str | None = None
        self.lost: str | None = None
        self.problems: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        self.duplicates: list[tuple[str, str, str]] = []
        self.headers = 0
        self.nbytes = 0

    def _members(self) -> Iterator[tuple[str, bytes]]:
        """(name, data) of every regular file; sets `error` and stops at the end or at a fault."""
        read = self.stream.read
        offset = 0
        long_name: bytes | None = None
        pax: dict[bytes, bytes] = {}
        while True:
            header = read(BLOCK)
            if len(header) < BLOCK:
                if offset == 0 and not header:
                    self.error = "empty file"
                else:
                    self.error = f"truncated: the archive ends at byte {offset + len(header)} without its end-of-archive blocks"
                return
            if header == _ZERO_BLOCK:
                return  # end of archive
            if not _checksum_ok(header):
                self.error = "not a tar archive" if offset == 0 else f"corrupt header at byte {offset}"
                return
            self.headers += 1
            kind = header[156:157]
            key: str | None = None
            size = int(pax[b"size"]) if b"size" in pax and kind in _REGULAR else _number(header[124:136])
            padded = -(-size // BLOCK) * BLOCK
            offset += BLOCK + padded
            if kind not in _REGULAR and kind not in (b"x", b"L"):
                what = _NOT_REGULAR.get(kind, f"member type {kind!r}")
                self.skipped.append((self._name(header, pax, long_name).decode("utf-8", "surrogateescape"), what))
                if padded and len(read(padded)) < padded:
                    self.error = f"truncated: the archive is cut inside a member at byte {offset}"
                    return
                long_name, pax = None, {}
                continue
            if kind in _REGULAR:
                name = self._name(header, pax, long_name).decode("utf-8", "surrogateescape")
                long_name, pax = None, {}
                parts = split_name(name)
                key = parts[0] if parts else None
            try:
                data = read(size)
            except READ_ERRORS as exc:
                raise _Cut(key, f"truncated or corrupt: {type(exc).__name__}: {exc}") from None
            if len(data) < size:
                raise _Cut(key, f"truncated: a member is cut at byte {offset - padded + len(data)}")
            if padded > size:
                read(padded - size)
            if kind == b"x":
                pax = _pax(data)
            elif kind == b"L":
                long_name = data.rstrip(b"\0")
            else:
                yield name, data

    @staticmethod
    def _name(header: bytes, pax: dict[bytes, bytes], long_name: bytes | None) -> bytes:
        if b"path" in pax:
            return pax[b"path"]
        if long_name is not None:
            return long_name
        name = header[:100].split(b"\0", 1)[0]
        if header[257:262] == b"ustar" and header[345] != 0:
            name = header[345:500].split(b"\0", 1)[0] + b"/" + name
        return name

    def __iter__(self) -> Iterator[dict[str, Any]]:
        pending: dict[str, dict[str, Any]] = {}  # open samples, oldest first
        done: set[str] = set()
        emitted = 0

        def room() -> bool:
            return self.limit is None or emitted < self.limit

        try:
            for name, data in self._members():
                parts = split_name(name)
                if parts is None or _META_MEMBER.match(name.rsplit("/", 1)[-1]):
                    continue
                key, ext = parts
                sample = pending.get(key)
                if sample is None:
                    if key in done:
                        self.problems.append(f"{name}: its key came back after {self.window} other samples; "
                                             "read as a new sample")
                    sample = pending[key] = {"__key__": key}
                    while len(pending) > self.window:
                        oldest = next(iter(pending))
                        done.add(oldest)
                        yield pending.pop(oldest)
                        emitted += 1
                        if not room():
                            return
                if ext in sample:
                    self.problems.append(f"{name}: a second {ext!r} member of the sample; the first is kept")
                    self.duplicates.append((key, ext, name))
                    continue
                sample[ext] = data
                self.nbytes += len(data)
        except _Cut as cut:
            self.error = cut.detail
            if cut.key is not None:
                self.lost = cut.key
                pending.pop(cut.key, None)  # it lost a member: not a sample that was read
        except READ_ERRORS as exc:
            self.error = f"truncated or corrupt: {type(exc).__name__}: {exc}"
        for sample in pending.values():
            if not room():
                return
            yield sample
            emitted += 1


def iter_samples(stream: IO[bytes], url: str = "", limit: int | None = None) -> Iterator[dict[str, Any]]:
    """The samples of one tar stream (each with `__url__` when `url` is given), then `ShardReadError` if the archive
    was cut or corrupt: every complete sample before the fault has been yielded by then."""
    reader = TarSamples(stream, limit=limit)
    for sample in reader:
        if url:
            sample["__url__"] = url
        yield sample
    if reader.error:
        raise ShardReadError(url or "<stream>", reader.error + (f" (sample {reader.lost!r} lost)" if reader.lost else ""))


def reraise(exn: Exception) -> bool:
    """The default handler: stop on the first fault."""
    raise exn


def tarfile_samples(
    src: Iterable[str | Mapping[str, Any]], handler: Callable[[Exception], bool] = reraise
) -> Iterator[dict[str, Any]]:
    """Samples of every shard `src` names (URLs, or webdataset's `{"url": …}` dicts): a drop-in for
    `webdataset.tarfile_samples` in a `wds.DataPipeline`. A shard that cannot be opened or read to its end is passed
    to `handler` (as webdataset does: True goes on with the next shard, False stops, raising propagates) after its
    complete samples."""
    for item in src:
        url = item if isinstance(item, str) else str(item["url"])
        try:
            with open_url(url) as stream:
                yield from iter_samples(stream, url)
        except (ShardReadError, *READ_ERRORS) as exn:
            if not handler(exn if isinstance(exn, ShardReadError) else ShardReadError(url, f"{type(exn).__name__}: {exn}")):
                return


def tarfile_to_samples(handler: Callable[[Exception], bool] = reraise) -> Callable[[Iterable[Any]], Iterator[dict[str, Any]]]:
    """`tarfile_samples` as a pipeline stage, like `webdataset.tarfile_to_samples(handler=…)`."""
    return functools.partial(tarfile_samples, handler=handler)
