"""Read a WebDataset tar once, front to back, from a path or any fsspec URL; group members into samples and
notice a truncated or corrupt archive (cut member, missing end-of-archive blocks, bad header) instead of stopping
silently. A small ustar/pax/GNU header parser: it does less than `tarfile` per member, so scanning is cheaper."""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from collections.abc import Iterator
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

BLOCK = 512
READ_BUFFER = 1 << 20
READ_ERRORS = (EOFError, zlib.error, lzma.LZMAError, OSError, ValueError)
_REGULAR = (b"0", b"\0", b"7")
_ZERO_BLOCK = bytes(BLOCK)


def open_url(url: str) -> IO[bytes]:
    """A binary stream: the plain file for local paths (fastest), fsspec's file for any other URL; gzip, bz2 and
    xz archives are decompressed on the fly."""
    fs, path = fsspec.core.url_to_fs(url)
    if isinstance(fs, LocalFileSystem):
        raw: IO[bytes] = open(path, "rb", buffering=READ_BUFFER)  # noqa: SIM115 - the caller closes it
    else:
        raw = fs.open(path, "rb", block_size=READ_BUFFER)
    magic = raw.read(6)
    raw.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    if magic.startswith(b"\xfd7zXZ"):
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    return raw


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


class TarSamples:
    """Iterate `{"__key__", ext: bytes, …}` samples; afterwards `error` says why the archive ended early, if it did,
    and `nbytes` how many bytes of member data were read."""

    def __init__(self, stream: IO[bytes], limit: int | None = None):
        self.stream, self.limit = stream, limit
        self.error: str | None = None
        self.nbytes = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        read = self.stream.read
        current: dict[str, Any] | None = None
        emitted = offset = 0
        long_name: bytes | None = None
        pax: dict[bytes, bytes] = {}
        try:
            while True:
                header = read(BLOCK)
                if len(header) < BLOCK:
                    if offset == 0 and not header:
                        self.error = "empty file"
                    else:
                        self.error = f"truncated: the archive ends at byte {offset + len(header)} without its end-of-archive blocks"
                    break
                if header == _ZERO_BLOCK:
                    break  # end of archive
                if not _checksum_ok(header):
                    self.error = "not a tar archive" if offset == 0 else f"corrupt header at byte {offset}"
                    break
                kind = header[156:157]
                size = int(pax[b"size"]) if b"size" in pax and kind in _REGULAR else _number(header[124:136])
                padded = -(-size // BLOCK) * BLOCK
                offset += BLOCK + padded
                if kind in _REGULAR or kind in (b"x", b"L"):
                    data = read(size)
                    if len(data) < size:
                        self.error = f"truncated: a member is cut at byte {offset - padded + len(data)}"
                        current = None  # this sample lost a member: it is not a sample that was read
                        break
                    if padded > size:
                        read(padded - size)
                else:
                    if padded and len(read(padded)) < padded:
                        self.error = f"truncated: the archive is cut inside a member at byte {offset}"
                        break
                    long_name = None
                    pax = {}
                    continue
                if kind == b"x":
                    pax = _pax(data)
                    continue
                if kind == b"L":
                    long_name = data.rstrip(b"\0")
                    continue
                if b"path" in pax:
                    raw_name = pax[b"path"]
                elif long_name is not None:
                    raw_name = long_name
                else:
                    raw_name = header[:100].split(b"\0", 1)[0]
                    if header[257:262] == b"ustar" and header[345] != 0:
                        raw_name = header[345:500].split(b"\0", 1)[0] + b"/" + raw_name
                long_name = None
                pax = {}
                name = raw_name.decode("utf-8", "surrogateescape")
                # webdataset's rule: the key is everything up to the first dot of the file name.
                dot = name.find(".", name.rfind("/") + 1)
                if dot < 0:
                    continue
                key, ext = name[:dot], name[dot + 1 :]
                if current is not None and current["__key__"] != key:
                    yield current
                    emitted += 1
                    current = None
                    if self.limit is not None and emitted >= self.limit:
                        return
                self.nbytes += size
                if current is None:
                    current = {"__key__": key}
                current[ext] = data
        except READ_ERRORS as exc:
            self.error = f"truncated or corrupt: {type(exc).__name__}: {exc}"
            current = None
        if current is not None and (self.limit is None or emitted < self.limit):
            yield current
