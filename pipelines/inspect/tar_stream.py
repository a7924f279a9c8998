"""Read a WebDataset tar once, front to back, from a path or any fsspec URL; group members into samples and
notice a truncated archive (no end-of-archive marker, or a member cut short) instead of stopping silently."""

from __future__ import annotations

import re
import tarfile
import zlib
from collections.abc import Iterator
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

READ_BUFFER = 1 << 20
# webdataset's rule: the key is everything up to the first dot of the file name.
_KEY_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


def open_url(url: str) -> IO[bytes]:
    """A binary stream: the plain file for local paths (fastest), fsspec's file for any other URL."""
    fs, path = fsspec.core.url_to_fs(url)
    if isinstance(fs, LocalFileSystem):
        return open(path, "rb", buffering=READ_BUFFER)  # noqa: SIM115 - the caller closes it
    return fs.open(path, "rb", block_size=READ_BUFFER)


class _TarInfo(tarfile.TarInfo):
    """Records on the archive whether the end-of-archive zero block was reached (tarfile hides it)."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.EOFHeaderError:
            tarfile_.clean_end = True  # type: ignore[attr-defined]
            raise


class TarSamples:
    """Iterate `{"__key__", ext: bytes, …}` samples; afterwards `error` says why the archive ended early, if it did,
    and `nbytes` how many bytes of member data were read."""

    def __init__(self, stream: IO[bytes], limit: int | None = None):
        self.stream, self.limit = stream, limit
        self.error: str | None = None
        self.nbytes = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        current: dict[str, Any] | None = None
        emitted = 0
        try:
            archive = tarfile.open(fileobj=self.stream, mode="r|*", tarinfo=_TarInfo)
            archive.clean_end = False  # type: ignore[attr-defined]
            for member in archive:
                if not member.isfile():
                    continue
                match = _KEY_EXT.match(member.name)
                if not match:
                    continue
                key, ext = match.groups()
                if current is not None and current["__key__"] != key:
                    yield current
                    emitted += 1
                    current = None
                    if self.limit is not None and emitted >= self.limit:
                        return
                extracted = archive.extractfile(member)
                assert extracted is not None
                data = extracted.read()
                self.nbytes += len(data)
                if current is None:
                    current = {"__key__": key}
                current[ext] = data
                archive.members = []  # tarfile keeps every header in stream mode; memory stays flat without them
            if not archive.clean_end:  # type: ignore[attr-defined]
                self.error = "truncated: the archive ends without its end-of-archive blocks"
        except READ_ERRORS as exc:
            self.error = f"truncated or corrupt: {type(exc).__name__}: {exc}"
            current = None  # a member of this sample was cut short: it is not a sample that was read
        if current is not None and (self.limit is None or emitted < self.limit):
            yield current
